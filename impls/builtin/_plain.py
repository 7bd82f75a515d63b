"""Tensors a backend keeps from one call to the next must be plain tensors.

Why: what a backend keeps (Winograd's transform matrices, a weight's kernel transform or
spectra, unfold's scratch buffers) outlives the call that made it, and that call may run in
a mode that marks its tensors. Made inside ``torch.inference_mode()`` they are inference
tensors, and every later call that autograd records fails ("Inference tensors cannot be
saved for backward"), or writes into them outside the mode ("Inplace update to inference
tensor outside InferenceMode"): an evaluation under inference_mode, then training, broke.
Made under autocast they come out in its dtype, and a later float32 call mixes dtypes.
Made while autograd records they carry a graph.
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def plain(device: torch.device | str):
    """Make tensors here as no mode would: outside inference mode, without autograd,
    outside autocast for ``device``'s type."""
    device_type = torch.device(device).type
    with contextlib.ExitStack() as stack:
        stack.enter_context(torch.inference_mode(False))
        stack.enter_context(torch.no_grad())
        if torch.is_autocast_enabled(device_type):
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield
