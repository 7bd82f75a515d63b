"""Tensors derived from a weight (Winograd's kernel transform), kept while the weight stays
the same, as oneDNN and cuDNN-based frameworks keep their reordered weights for inference.

Why: inference calls a layer with the same weight again and again, and a transform of it
can cost as much as the convolution (F(4x4, 3x3) on 512 channels: 36*K*C values, 38 MB,
rewritten every call). Computed once per weight and version, it costs nothing after.

When an entry is valid: same storage (weakly referenced: a freed weight's entries go with
it), offset, shape, strides, dtype, device and negative/conjugate bits (``z.imag`` and
``z.conj().imag`` share everything else), and the same version counter, which every
in-place write bumps (``w.add_(1)``, ``w.copy_(...)``, an optimizer step, under no_grad too).
Never cached: a weight autograd records (the result must carry the graph) and
inference-mode tensors (they have no version counter).

Writes the version counter cannot see: through ``w.data`` (a fresh counter each time:
``m.weight.data.normal_()``, old optimizers' ``p.data.add_(...)``, EMA copies) or a NumPy
view. Each entry also keeps SAMPLE elements of the weight, spread evenly over it with the
first and last, and is valid only while they are unchanged: any rewrite of the whole
weight (an init, an optimizer step, a copy) is caught, for ~10 us a call. A full
comparison would be exact but costs a pass over the weight (~0.3-1 ms at 512 channels on
the 2-core machine, 5-15% of the layer). What stays possible: an untracked write that
changes only unsampled elements (``w.data[3, 1, 0, 2] = 7``); for code that writes weights
behind autograd's back like that, CONVBENCH_KEEP_WEIGHTS=0 turns keeping off.

What it must not do: return a stale tensor, grow without bound (MAX_BYTES in all, least
recently used out first), or hand out a tensor a caller may write to: entries are read-only
by contract.
"""

from __future__ import annotations

import math
import os
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from functools import lru_cache

import torch

from impls.builtin._plain import plain

#: The most memory all entries together may hold: the Winograd F(4x4) transforms of
#: ResNet-50's 16 3x3 convolutions need 183 MB.
MAX_BYTES = 256 << 20
#: Elements of the weight each entry keeps to catch writes its version counter missed.
SAMPLE = 64
#: CONVBENCH_KEEP_WEIGHTS=0: never keep anything (every call recomputes); read at import.
ENABLED = os.environ.get("CONVBENCH_KEEP_WEIGHTS", "1") != "0"

_lock = threading.Lock()
_entries: OrderedDict[tuple, tuple] = OrderedDict()  # key -> (storage ref, version, sample,
#                                                     tensor)
_dead: list[tuple] = []  # keys whose storage was freed; purged under the lock
_held = [0]  # bytes in _entries


def derived(weight: torch.Tensor, tag, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """``compute()``, or its kept result for this weight and ``tag`` if still valid."""
    if not cacheable(weight):
        return compute()
    storage = weight.untyped_storage()
    key = (tag, id(storage), weight.storage_offset(), tuple(weight.shape), weight.stride(),
           weight.dtype, weight.device, weight.is_neg(), weight.is_conj())
    sample = _sample(weight)
    with _lock:
        _purge()
        entry = _entries.get(key)
        if entry is not None and entry[0]() is storage and entry[1] == weight._version \
                and torch.equal(entry[2], sample):
            _entries.move_to_end(key)
            return entry[3]
    with plain(weight.device):  # an entry outlives this call's modes (see impls.builtin._plain)
        value = compute()
    ref = weakref.ref(storage, lambda _, key=key: _dead.append(key))
    with _lock:
        _drop(key)
        _entries[key] = (ref, weight._version, sample, value)
        _held[0] += _nbytes(value)
        while _held[0] > MAX_BYTES and len(_entries) > 1:
            _drop(next(iter(_entries)))
    return value


def cacheable(weight: torch.Tensor) -> bool:
    """Whether a result derived from ``weight`` may be kept (see the module docstring)."""
    if not ENABLED or weight.is_inference():
        return False
    return not (torch.is_grad_enabled() and weight.requires_grad)


def _sample(weight: torch.Tensor) -> torch.Tensor:
    """SAMPLE elements of ``weight`` (every one if it has fewer), first and last included,
    copied: the entry must see later writes as a difference, not share them. Gathered by
    index, never through a flattened copy: a channels_last weight would cost a pass."""
    w = weight.detach()
    with plain(w.device):
        if w.numel() <= SAMPLE:
            return w.clone()
        return w[_sample_index(tuple(w.shape), w.device)]


@lru_cache(maxsize=64)
def _sample_index(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Where the sample is taken, per dimension (made once per shape: this runs on every
    call)."""
    flat = torch.linspace(0, math.prod(shape) - 1, SAMPLE, device=device).long()
    return torch.unravel_index(flat, shape)


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
        _held[0] -= _nbytes(entry[3])


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()
