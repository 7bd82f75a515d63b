"""Scratch memory that a CPU backend reuses from call to call, like cuDNN's workspace.

Why: a GEMM-based convolution writes large temporaries (unfold's column buffer is ~9x the
input for 3x3) and reads them once. Freshly allocated, each call pays for touching new
memory: glibc serves blocks this large as fresh mmaps, so every page faults and is zeroed
by the kernel (unfold on ResNet-50's 64@56x56 at batch 8: 0.25x of torch's speed with
fresh buffers, 0.5x with reused ones, 1 thread). oneDNN keeps its scratchpad between
primitives for the same reason.

How: one buffer for the process, grown to the largest request up to KEEP_BYTES, lent to
one call at a time. A call that finds it lent (another thread), asks for more than
KEEP_BYTES, runs on another device (CUDA's caching allocator already reuses blocks), or is
recorded by autograd (which would save the temporaries for backward) gets new tensors.

What it must not do: let anything a backend returns alias the buffer (the lender's
contract: use the parts inside the ``with`` only), or hold more than KEEP_BYTES. Its cost:
memory stays allocated after the first call, so a peak-memory measurement of a later call
does not see it; ``release()`` gives it back (e.g. before measuring a first call).
"""

from __future__ import annotations

import contextlib
import math
import threading

import torch

#: The most memory kept between calls: ResNet-50's largest 3x3 layer at batch 8 needs
#: 65 MB (58 MB of unfold's columns). Larger requests get new memory each call.
KEEP_BYTES = 128 << 20
#: Parts start on 64-byte boundaries, for the vector loads of copies and GEMMs.
ALIGN_BYTES = 64

_lock = threading.Lock()
_buffer: torch.Tensor | None = None


@contextlib.contextmanager
def scratch(like: torch.Tensor, shapes, keep: bool = True):
    """Uninitialised tensors of ``like``'s dtype and device, one per shape (None stays
    None), carved from the kept buffer where possible, else new."""
    global _buffer
    itemsize = like.element_size()
    align = max(1, ALIGN_BYTES // itemsize)
    sizes = [0 if s is None else math.prod(s) for s in shapes]
    spans = [-(-n // align) * align for n in sizes]
    nbytes = sum(spans) * itemsize
    if not keep or like.device.type != "cpu" or nbytes > KEEP_BYTES \
            or not _lock.acquire(blocking=False):
        yield [None if s is None else like.new_empty(s) for s in shapes]
        return
    try:
        if _buffer is None or _buffer.numel() < nbytes:
            _buffer = None  # the old one goes before the new one comes
            _buffer = torch.empty(nbytes, dtype=torch.uint8)
        flat = _buffer[:nbytes].view(like.dtype)
        offsets = [sum(spans[:i]) for i in range(len(spans))]
        yield [None if s is None else flat[o:o + n].view(s)
               for s, o, n in zip(shapes, offsets, sizes)]
    finally:
        _lock.release()


def release() -> None:
    """Give the kept buffer back (the next call allocates it anew)."""
    global _buffer
    with _lock:
        _buffer = None


def tracked(*tensors) -> bool:
    """Whether autograd records a call on these tensors (and may save its temporaries)."""
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)
