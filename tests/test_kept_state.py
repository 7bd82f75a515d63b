"""What backends keep between calls (impls/builtin/_scratch.py, _weight_cache.py) never
changes a result: outputs do not alias kept memory, a weight written in place or freed is
not served stale, autograd gets a fresh graph, and two threads do not share scratch."""

from __future__ import annotations

import gc
import threading

import pytest
import torch
import torch.nn.functional as F

import impls
from impls.builtin import _scratch, _weight_cache


def _close(a, b):
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.fixture
def keep_small(monkeypatch):
    """Keep scratch however small, so that these small cases use the kept buffers."""
    monkeypatch.setattr(_scratch, "MIN_KEEP_BYTES", 0)
    yield
    _scratch.release()


@pytest.mark.parametrize("batch, size", [(1, 12), (3, 12), (3, 5)])  # per image / folded
def test_unfold_outputs_do_not_alias_its_scratch(batch, size, keep_small):
    x, w, b = torch.randn(batch, 4, size, size), torch.randn(6, 4, 3, 3), torch.randn(6)
    first = impls.conv2d(x, w, b, padding=1, backend="unfold")
    kept = first.clone()
    impls.conv2d(torch.randn_like(x), torch.randn_like(w), b, padding=1, backend="unfold")
    assert torch.equal(first, kept)
    _close(first, F.conv2d(x, w, b, padding=1))


@pytest.mark.parametrize("batch, groups, bias", [(5, 1, True), (4, 2, False), (3, 1, False)])
def test_unfold_in_chunks_of_images(batch, groups, bias, monkeypatch):
    """Images in chunks (one copy and one GEMM each) give what one GEMM over all gives, with
    and without kept scratch; autograd still gets its gradients (one chunk then)."""
    from impls.builtin import unfold

    monkeypatch.setattr(unfold, "CHUNK_BYTES", 2 * 4 * 9 * 4 * 23 * 23)  # 2 images a chunk
    assert unfold.images_per_chunk(batch, 4 * 9 * 4 * 23 * 23) == 2
    x, w = torch.randn(batch, 4, 25, 25), torch.randn(6, 4 // groups, 3, 3)
    b = torch.randn(6) if bias else None
    expected = F.conv2d(x, w, b, groups=groups)
    for min_keep in (0, 2**40):
        monkeypatch.setattr(_scratch, "MIN_KEEP_BYTES", min_keep)
        _close(impls.conv2d(x, w, b, groups=groups, backend="unfold"), expected)
    _scratch.release()
    w.requires_grad_()
    impls.conv2d(x, w, b, groups=groups, backend="unfold").sum().backward()
    w_ref = w.detach().clone().requires_grad_()
    F.conv2d(x, w_ref, b, groups=groups).sum().backward()
    _close(w.grad, w_ref.grad)


@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("batch, groups, bias", [(5, 1, True), (4, 2, False), (3, 1, True)])
def test_winograd_in_chunks_of_images(m, batch, groups, bias, monkeypatch):
    """Images in chunks (each its own tiles, transforms and GEMMs) give what one chunk
    gives: every chunk reads its own images and writes its own outputs. The case table's
    largest 3x3 problem fits F(4x4)'s chunk whole, so the split is forced here."""
    from impls.builtin import winograd

    x, w = torch.randn(batch, 4, 10, 11), torch.randn(6, 4 // groups, 3, 3)
    b = torch.randn(6) if bias else None
    tiles = winograd.ceil_div(10, m) * winograd.ceil_div(11, m)  # padding 1: 10x11 out
    monkeypatch.setattr(winograd, "_CHUNK_ELEMENTS", 2 * tiles * (m + 2) ** 2 * 6)
    _close(impls.conv2d(x, w, b, padding=1, groups=groups, backend=f"winograd-f{m}"),
           F.conv2d(x, w, b, padding=1, groups=groups))


def test_images_per_chunk_splits_evenly():
    from impls.builtin.unfold import CHUNK_BYTES, images_per_chunk

    assert images_per_chunk(1, 10 * CHUNK_BYTES) == 1
    assert images_per_chunk(8, CHUNK_BYTES // 2) == 2
    assert images_per_chunk(8, CHUNK_BYTES // 3) == 3  # 3+3+2, not 3+3+1+1
    assert images_per_chunk(8, CHUNK_BYTES // 100) == 8
    assert images_per_chunk(0, 1) == 1


def test_scratch_is_lent_to_one_caller_at_a_time(keep_small):
    like = torch.empty(1)
    with _scratch.Scratch(like, [(8,)]) as (a,), _scratch.Scratch(like, [(8,)]) as (b,):
        assert a is not None and b is None  # the second caller allocates its own


def test_scratch_is_kept_only_where_allowed(keep_small):
    like = torch.empty(1)
    with _scratch.Scratch(like, [(8,)]) as (a,):
        pass
    with _scratch.Scratch(like, [(8,)]) as (b,):
        assert b.data_ptr() == a.data_ptr()  # kept
    with _scratch.Scratch(like, [(8,)], keep=False) as (c,):  # e.g. autograd records
        assert c is None
    with _scratch.Scratch(like, [(2**30,)]) as (d,):  # over KEEP_BYTES
        assert d is None


def test_unfold_from_two_threads(keep_small):
    x, w = torch.randn(2, 8, 10, 10), torch.randn(8, 8, 3, 3)
    expected, errors = F.conv2d(x, w, padding=1), []

    def work():
        for _ in range(20):
            out = impls.conv2d(x, w, padding=1, backend="unfold")
            if not torch.allclose(out, expected, rtol=1e-4, atol=1e-4):
                errors.append("wrong result")

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("name", ["winograd-f2", "winograd-f4", "winograd-f4x1", "fft"])
def test_weight_written_in_place_is_not_served_stale(name):
    x, w = torch.randn(2, 4, 9, 9), torch.randn(5, 4, 3, 3)
    _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))
    with torch.no_grad():
        w.mul_(-2)  # bumps the version counter
    _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))
    w[0].zero_()  # through a view: the same counter
    _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))


@pytest.mark.parametrize("name", ["winograd-f2", "winograd-f4", "winograd-f4x1", "fft"])
def test_weight_written_behind_the_version_counter_is_not_served_stale(name):
    """Writes through .data or NumPy bump no version counter: the kept sample catches a
    rewrite of the whole weight (an init, a legacy optimizer step, an EMA copy)."""
    x, w = torch.randn(2, 4, 9, 9), torch.randn(5, 4, 3, 3)
    _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))
    w.data.mul_(-2)
    _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))
    w.numpy()[...] = torch.randn(5, 4, 3, 3).numpy()
    _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))
    big = torch.randn(64, 4, 3, 3)  # more elements than the sample: the last one counts too
    _close(impls.conv2d(x, big, padding=1, backend=name), F.conv2d(x, big, padding=1))
    big.data[-1, -1, -1, -1] += 1
    _close(impls.conv2d(x, big, padding=1, backend=name), F.conv2d(x, big, padding=1))


@pytest.mark.parametrize("name", ["winograd-f2", "winograd-f4", "winograd-f4x1", "fft"])
def test_views_that_differ_only_in_sign_bit_are_kept_apart(name):
    """z.imag and z.conj().imag share storage, offset and strides; one is negated lazily."""
    x, z = torch.randn(1, 4, 9, 9, dtype=torch.float64), torch.randn(5, 4, 3, 3,
                                                                     dtype=torch.complex128)
    for w in (z.imag, z.conj().imag, z.imag):
        _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))


def test_keeping_can_be_turned_off(monkeypatch):
    monkeypatch.setattr(_weight_cache, "ENABLED", False)
    calls = []
    w = torch.randn(5, 4, 3, 3)
    for _ in range(2):
        _weight_cache.derived(w, "off", lambda: calls.append(1) or torch.zeros(1))
    assert len(calls) == 2


def test_freed_weight_leaves_the_cache():
    _weight_cache.clear()
    w = torch.randn(5, 4, 3, 3)
    impls.conv2d(torch.randn(1, 4, 6, 6), w, padding=1, backend="winograd-f4")
    assert len(_weight_cache._entries) == 1
    del w
    gc.collect()
    _weight_cache.derived(torch.randn(1), "other", lambda: torch.zeros(1))  # purges
    assert [k[0] for k in _weight_cache._entries] == ["other"]


def test_fft_keeps_a_weights_spectra_for_inference_only(monkeypatch):
    """The second inference call with the same weight does not transform it again; a call
    autograd records neither reads nor fills the cache (gradcheck writes through .data)."""
    from impls.builtin import fft

    _weight_cache.clear()
    calls = []
    original = fft._kernel_spectra
    monkeypatch.setattr(fft, "_kernel_spectra", lambda *a: calls.append(1) or original(*a))
    x, w = torch.randn(1, 4, 20, 20), torch.randn(6, 4, 9, 9)
    first = impls.conv2d(x, w, padding=4, backend="fft")
    second = impls.conv2d(x, w, padding=4, backend="fft")
    assert len(calls) == 1 and torch.equal(first, second)
    tracked = w.clone().requires_grad_()
    out = impls.conv2d(x, tracked, padding=4, backend="fft")
    assert len(calls) == 2 and len(_weight_cache._entries) == 1
    assert torch.equal(out.detach(), first)  # the same plan either way
    _weight_cache.clear()


def test_autograd_gets_the_weight_gradient():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        impls.conv2d(x, w, padding=1, backend="winograd-f2")  # may be kept: no graph needed
    impls.conv2d(x, w, padding=1, backend="winograd-f2").sum().backward()
    w_ref = w.detach().clone().requires_grad_()
    F.conv2d(x, w_ref, padding=1).sum().backward()
    _close(w.grad, w_ref.grad)


def test_the_cache_is_bounded(monkeypatch):
    _weight_cache.clear()
    monkeypatch.setattr(_weight_cache, "MAX_BYTES", 100)
    weights = [torch.randn(4) for _ in range(5)]
    for i, w in enumerate(weights):
        _weight_cache.derived(w, i, lambda: torch.zeros(10))  # 40 bytes each
    assert [k[0] for k in _weight_cache._entries] == [3, 4]
    _weight_cache.clear()


@pytest.fixture
def fresh_state(keep_small):
    """Nothing kept yet, as in a new process: the first call makes what is kept."""
    from impls.builtin import winograd, winograd_1d

    caches = (winograd._transforms, winograd_1d._matrices, _weight_cache._sample_index)
    for cache in caches:
        cache.cache_clear()
    _weight_cache.clear()
    _scratch.release()
    yield
    for cache in caches:
        cache.cache_clear()
    _weight_cache.clear()


@pytest.mark.parametrize("name", ["winograd-f2", "winograd-f4", "winograd-f4x1", "fft", "unfold"])
def test_what_inference_mode_made_serves_later_training(name, fresh_state):
    """Validation under inference_mode before training (Lightning's sanity check) used to
    leave inference tensors kept (Winograd's matrices, a weight's transform, unfold's
    scratch), and every later call autograd records, or no_grad writes, failed."""
    x, w = torch.randn(2, 4, 9, 9), torch.randn(6, 4, 3, 3)
    with torch.inference_mode():
        impls.conv2d(x, w, padding=1, backend=name)
    with torch.no_grad():
        _close(impls.conv2d(x, w, padding=1, backend=name), F.conv2d(x, w, padding=1))
    xg = x.clone().requires_grad_()
    impls.conv2d(xg, w, padding=1, backend=name).sum().backward()  # a frozen weight
    xt = x.clone().requires_grad_()
    F.conv2d(xt, w, padding=1).sum().backward()
    _close(xg.grad, xt.grad)


@pytest.mark.parametrize("name", ["winograd-f2", "winograd-f4", "winograd-f4x1", "fft"])
def test_what_autocast_made_serves_later_float32_calls(name, fresh_state):
    """A backend called directly under autocast computes its kept transform outside it: the
    entry is keyed by the weight's dtype and must be in it (a bfloat16 transform kept for a
    float32 weight made the next float32 call fail on mixed dtypes)."""
    x, w = torch.randn(2, 4, 9, 9), torch.randn(6, 4, 3, 3)
    fn = impls.get_backend(name).fn
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        fn(x, w, None, (1, 1), (1, 1), (1, 1), 1)
    _close(fn(x, w, None, (1, 1), (1, 1), (1, 1), 1), F.conv2d(x, w, padding=1))
