"""Tensors derived from a weight (Winograd's kernel transform), kept while the weight stays
the same, as oneDNN and cuDNN-based frameworks keep their reordered weights for inference.

Why: inference calls a layer with the same weight again and again, and a transform of it
can cost as much as the convolution (F(4x4, 3x3) on 512 channels: 36*K*C values, 38 MB,
rewritten every call). Computed once per weight and version, it costs nothing after.

When an entry is valid: same storage (weakly referenced: a freed weight's entries go with
it), offset, shape, strides, dtype and device, and the same version counter, which every
in-place write bumps (``w.add_(1)``, ``w.copy_(...)``, an optimizer step, under no_grad too).
Never cached: a weight autograd records (the result must carry the graph) and
inference-mode tensors (they have no version counter).

What it must not do: return a stale tensor, grow without bound (MAX_BYTES in all, least
recently used out first), or hand out a tensor a caller may write to: entries are read-only
by contract.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

import torch

#: The most memory all entries together may hold: the Winograd F(4x4) transforms of
#: ResNet-50's 16 3x3 convolutions need 183 MB.
MAX_BYTES = 256 << 20

_lock = threading.Lock()
_entries: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (storage ref, version, tensor)
_dead: list[tuple] = []  # keys whose storage was freed; purged under the lock
_held = [0]  # bytes in _entries


def derived(weight: torch.Tensor, tag, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()``, or its kept result for this weight and ``tag`` if still valid."""
    if not cacheable(weight):
        return compute()
    storage = weight.untyped_storage()
    key = (tag, id(storage), weight.storage_offset(), tuple(weight.shape), weight.stride(),
           weight.dtype, weight.device)
    with _lock:
        _purge()
        entry = _entries.get(key)
        if entry is not None and entry[0]() is storage and entry[1] == weight._version:
            _entries.move_to_end(key)
            return entry[2]
    value = compute()
    ref = weakref.ref(storage, lambda _, key=key: _dead.append(key))
    with _lock:
        _drop(key)
        _entries[key] = (ref, weight._version, value)
        _held[0] += _nbytes(value)
        while _held[0] > MAX_BYTES and len(_entries) > 1:
            _drop(next(iter(_entries)))
    return value


def cacheable(weight: torch.Tensor) -> bool:
    """Whether a result derived from ``weight`` may be kept (see the module docstring)."""
    if weight.is_inference():
        return False
    return not (torch.is_grad_enabled() and weight.requires_grad)


def clear() -> None:
    with _lock:
        for key in list(_entries):
            _drop(key)


def _purge() -> None:
    """Drop entries whose storage was freed. Called under the lock; the weakref callback
    only appends (it may run inside a garbage collection while the lock is held)."""
    while _dead:
        _drop(_dead.pop())


def _drop(key) -> None:
    entry = _entries.pop(key, None)
    if entry is not None:
        _held[0] -= _nbytes(entry[2])


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
