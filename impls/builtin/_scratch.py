"""Scratch memory that a CPU backend reuses from call to call, like cuDNN's workspace.

Why: a GEMM-based convolution writes large temporaries (unfold's column buffer is ~9x the
input for 3x3) and reads them once. Freshly allocated, each call pays for touching new
memory: glibc serves blocks this large as fresh mmaps, so every page faults and is zeroed
by the kernel (unfold on ResNet-50's 64@56x56 at batch 8: 0.25x of torch's speed with
fresh buffers, 0.5x with reused ones, 1 thread). oneDNN keeps its scratchpad between
primitives for the same reason.

How: a few buffers for the process (one per part of a request), grown to the largest
request up to KEEP_BYTES in all, lent to one call at a time. A call that finds them lent
(another thread), asks for less than MIN_KEEP_BYTES or more than KEEP_BYTES, runs on
another device (CUDA's caching allocator already reuses blocks), or is recorded by autograd
(which would save the temporaries for backward) gets None, and allocates as usual.

What it must not do: let anything a backend returns alias the buffer (the lender's
contract: use the parts inside the ``with`` only), or hold more than KEEP_BYTES. Its cost:
memory stays allocated after the first call, so a peak-memory measurement of a later call
does not see it; ``release()`` gives it back (benchmarks.memory does, before measuring).
"""

from __future__ import annotations

import math
import threading

import torch
from torch.autograd import forward_ad

from impls.builtin._plain import plain

#: The most memory kept between calls: ResNet-50's largest 3x3 layer at batch 8 needs
#: 65 MB (58 MB of unfold's columns). Larger requests get new memory each call.
KEEP_BYTES = 128 << 20
#: Smaller requests get new memory too: glibc raises its mmap threshold to the size of
#: blocks freed, up to 32 MiB on 64-bit, so a block below that comes back from the heap,
#: already touched. Only larger ones fault every call (and keeping small ones was no
#: faster: unfold at batch 1 measured 3-5% slower with them kept).
MIN_KEEP_BYTES = 32 << 20
_lock = threading.Lock()
#: One kept buffer per part of a request (unfold: padded input, columns, product), each
#: in the dtype last asked for.
_buffers: list[torch.Tensor | None] = []


class Scratch:
    """Uninitialised views of the kept buffers, in ``like``'s dtype, one per shape; all
    None where nothing is kept (see the module docstring): the caller then allocates as
    it would without this module (a shape of None stays None either way).

    A class, not a generator context manager: this runs on every call of a backend."""

    def __init__(self, like: torch.Tensor, shapes, keep: bool = True):
        self.shapes, self.like, self.held = shapes, like, False
        numels = [0 if s is None else math.prod(s) for s in shapes]
        self.numels = numels
        nbytes = sum(numels) * like.element_size()
        if keep and like.device.type == "cpu" and MIN_KEEP_BYTES <= nbytes <= KEEP_BYTES:
            self.held = _lock.acquire(blocking=False)  # lent to another thread: not held

    def __enter__(self) -> list:
        if not self.held:
            return [None] * len(self.shapes)
        return _lend(self.like, self.shapes, self.numels)

    def __exit__(self, *exc) -> None:
        if self.held:
            self.held = False
            _lock.release()


def _lend(like, shapes, numels) -> list:
    """Views of the kept buffers (grown or replaced as needed), under the lock."""
    size = like.element_size()
    _buffers.extend([None] * (len(shapes) - len(_buffers)))
    kept = [0 if b is None else b.numel() * b.element_size() for b in _buffers]
    wanted = [n * size for n in numels]
    if sum(max(k, n) for k, n in zip(kept, wanted)) + sum(kept[len(wanted):]) > KEEP_BYTES:
        _buffers[:] = [None] * len(_buffers)  # this request alone fits KEEP_BYTES
    parts = []
    for i, (shape, n) in enumerate(zip(shapes, numels)):
        if shape is None:
            parts.append(None)
            continue
        buffer = _buffers[i]
        if buffer is None or buffer.dtype != like.dtype or buffer.numel() < n:
            _buffers[i] = None  # the old one goes before the new one comes
            with plain(like.device):  # kept beyond this call (impls.builtin._plain)
                _buffers[i] = torch.empty(n, dtype=like.dtype)
        parts.append(_buffers[i][:n].view(shape))
    return parts


def release() -> None:
    """Give the kept buffers back (the next call allocates them anew)."""
    with _lock:
        _buffers.clear()


def tracked(*tensors) -> bool:
    """Whether autograd records a call on these tensors (and may save its temporaries), or
    a derivative is carried through it in forward mode (forward_ad, torch.func): either
    way no kept buffer and no ``out=`` op, which have no derivative formulas (unfold's
    chunked ``bmm(out=)`` refused a jvp from batch 8 on)."""
    return (torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
            or forward_mode(*tensors))


def forward_mode(*tensors) -> bool:
    """Whether a derivative is carried through these tensors in forward mode, or a
    torch.func transform sees them: a forward_ad tangent on one, or functorch's wrapper
    (jvp, vmap, grad)."""
    tensors = [t for t in tensors if t is not None]
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)
    if any(wrapped(t) for t in tensors):
        return True
    return getattr(forward_ad, "_current_level", -1) >= 0 and any(
        forward_ad.unpack_dual(t).tangent is not None for t in tensors)
