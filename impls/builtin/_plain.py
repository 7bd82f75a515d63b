"""Tensors a backend keeps from one call to the next must be plain tensors.

Why: what a backend keeps (Winograd's transform matrices, a weight's kernel transform or
spectra, unfold's scratch buffers) outlives the call that made it, and that call may run in
a mode that marks its tensors. Made inside ``torch.inference_mode()`` they are inference
tensors, and every later call that autograd records fails ("Inference tensors cannot be
saved for backward"), or writes into them outside the mode ("Inplace update to inference
tensor outside InferenceMode"): an evaluation under inference_mode, then training, broke.
Made under autocast they come out in its dtype, and a later float32 call mixes dtypes.
(A graph is not the concern here: impls.builtin._weight_cache keeps nothing autograd
records.)
"""

from __future__ import annotations

import contextlib

import torch


def plain(device: torch.device | str):
    """A context that makes tensors as no mode would: outside inference mode (and without
    autograd, which leaving it turns back on), outside autocast for ``device``'s type.
    Nothing to enter when neither is on: this runs on every call of a backend that keeps a
    weight's transform (entering the modes costs ~20 us, a few % of a small convolution).
    Autograd alone needs nothing: what is kept is never made from a tensor it records."""
    device_type = torch.device(device).type
    inference, autocast = torch.is_inference_mode_enabled(), torch.is_autocast_enabled(
        device_type)
    if not (inference or autocast):
        return contextlib.nullcontext()
    return _outside(device_type, inference, autocast)


@contextlib.contextmanager
def _outside(device_type: str, inference: bool, autocast: bool):
    with contextlib.ExitStack() as stack:
        if inference:
            stack.enter_context(torch.inference_mode(False))
            stack.enter_context(torch.no_grad())
        if autocast:
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield
