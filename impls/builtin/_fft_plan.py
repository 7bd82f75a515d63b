"""The plan of the ``fft`` backend: output geometry, tile sizes, and its memory model.

Why a module of its own: the plan is the one decision the FFT backend makes per problem
(how to cut the output into tiles, which transform length), and both the transforms
(impls/builtin/fft.py) and the memory budget (``workspace``) must agree on it.

What it must not do: transform anything; it only counts.
"""

from __future__ import annotations

from functools import lru_cache

import scipy.fft as sfft

from impls.builtin import _weight_cache

# Per-spectrum-value costs (ns, measured on 2 cores), used only to rank tile sizes: a kernel
# (a base plus a part that grows with its Rs rows, see _kernel_spectra), an input or output
# tile transform with its copies, and one complex multiply-add of the contraction, which
# runs at GEMV speed until many tiles share each kernel spectrum.
_KERNEL_NS, _KERNEL_ROW_NS, _TILE_NS, _MAC_NS, _MAC_FEW_ROWS_NS = 3.0, 0.2, 9.0, 0.06, 0.5
#: A forward call's kernel spectra are kept for the next call with the same weight when they
#: take at most _KEPT_MAX_BYTES (a quarter of what the weight cache holds): then they count
#: at _KEPT_SHARE of their cost, which favours larger tiles (13x13, 64 channels: 5.2 -> 3.9
#: ms; 27x27: 4.4 -> 2.8 ms, measured). Larger spectra are recomputed every call.
_KEPT_SHARE, _KEPT_MAX_BYTES = 0.1, _weight_cache.MAX_BYTES // 4


def workspace(input_shape, weight_shape, stride, padding, dilation, groups, itemsize):
    """Bytes a forward call allocates beyond its inputs, and what they are (a model, see
    impls.memory_budget): the largest of its three phases, each with what is alive then.

    Spectra are complex (2 x itemsize), Lh x (Lw/2+1) values per tile and channel:
    kernels F*K*C/g*phases, input tiles F*N*tiles*C*phases, products F*N*tiles*K. The
    inverse transforms may copy (scipy keeps overwrite_x as a hint), so twice the product.
    """
    (n, c), (k, cg) = input_shape[:2], weight_shape[:2]
    pads = (2 * padding[0], 2 * padding[1])
    stride = effective_stride(input_shape, weight_shape, stride, pads, dilation)
    (p, q), (u, v), (rs, ss), plan = geometry(input_shape, weight_shape, stride, pads,
                                                dilation, groups, kept=True)
    if plan is None:
        return n * k * p * q * itemsize, "the output"
    (lh, th, nth), (lw, tw, ntw) = plan
    phases, half, tiles = len(u) * len(v), lw // 2 + 1, n * nth * ntw
    real, cplx = itemsize, 2 * itemsize
    dilated = k * cg * rs * stride[0] * ss * stride[1] * real
    kernels = lh * half * k * cg * phases * cplx
    build = 2 * dilated + 2 * rs * half * k * cg * phases * cplx + kernels
    inputs = lh * half * tiles * c * phases * cplx
    padded = (nth - 1) * th + lh, (ntw - 1) * tw + lw
    split = padded[0] * stride[0] * padded[1] * stride[1] * n * c * real
    product = lh * half * tiles * k * cplx
    stitched = 2 * tiles * k * th * lw * real
    need = n * k * p * q * real + max(build, kernels + split + 2 * inputs,
                                      kernels + inputs + 2 * product + stitched)
    return need, (f"its padded spectra ({lh}x{half} complex per tile and channel: kernels, "
                  f"input tiles, products) and the output")


def effective_stride(x_shape, w_shape, stride, pad_total, dilation) -> tuple[int, int]:
    """The stride to compute with: the given one, except along an axis with a single output
    position, where it is cut down to the span the kernel can start in (any stride from
    there on gives that one position). Why: the phase split pads its buffers up to a whole
    stride, so a stride far beyond the image (3000 on 8x8) cost ~320 MB, and ~10,000 was
    refused by the memory budget where F.conv2d returns a 1x1 output."""
    return tuple(min(st, max(1, size + pad - d * (k - 1)))
                 for size, pad, k, d, st in zip(x_shape[2:], pad_total, w_shape[2:],
                                                dilation, stride))


def geometry(x_shape, w_shape, stride, pad_total, dilation, groups, kept=False):
    """Output size, stride phases the kernel uses, phase-domain kernel size and the plan
    (None for an empty batch or zero channels: nothing to transform). ``kept``: the kernel
    spectra may be kept between calls (a forward call's weight), see _plan."""
    n, _, h, wd = x_shape
    k, cg, r, s = w_shape
    (sh, sw), (dh, dw) = stride, dilation
    p = (h + pad_total[0] - dh * (r - 1) - 1) // sh + 1
    q = (wd + pad_total[1] - dw * (s - 1) - 1) // sw + 1
    phases = (_used_phases(r, dh, sh), _used_phases(s, dw, sw))
    rs, ss = -(-(dh * (r - 1) + 1) // sh), -(-(dw * (s - 1) + 1) // sw)
    plan = _plan(n, groups, cg * len(phases[0]) * len(phases[1]), k // groups, (p, q),
                 (rs, ss), kept) if n and cg else None
    return (p, q), phases, (rs, ss), plan


def _used_phases(r: int, d: int, st: int) -> list[int]:
    """The stride phases (offsets mod st) that hold at least one kernel tap."""
    return sorted({(i * d) % st for i in range(r)})


@lru_cache(maxsize=256)
def _plan(n: int, g: int, cgp: int, kg: int, out_hw: tuple[int, int],
          kernel_hw: tuple[int, int], kept: bool = False) -> tuple[tuple[int, int, int], ...]:
    """(transform length L, tile T, tile count) per axis, minimising the cost model.

    Per axis the candidates come from cutting the output into 1, 2, ... tiles and rounding
    T+R-1 up to a fast length (then growing T to fill it). ``kept``: kernel spectra small
    enough to be kept between calls count at _KEPT_SHARE of their cost. Cached: sweeps
    repeat shapes.
    """
    axes = []
    for size, taps in zip(out_hw, kernel_hw):
        found = {}
        for m in range(1, min(size, 64) + 1):
            length = sfft.next_fast_len(-(-size // m) + taps - 1, real=True)
            tile = length - taps + 1
            found[length] = (length, tile, -(-size // tile))
        axes.append(list(found.values()))

    def cost(ah, aw):
        spectrum = ah[0] * (aw[0] // 2 + 1)
        tiles = n * ah[2] * aw[2]
        kernel = _KERNEL_NS + _KERNEL_ROW_NS * kernel_hw[0]
        if kept and spectrum * g * cgp * kg * 8 <= _KEPT_MAX_BYTES:  # complex64 bytes
            kernel *= _KEPT_SHARE
        mac = _MAC_NS + _MAC_FEW_ROWS_NS / tiles
        per_value = g * (cgp * kg * kernel + tiles * (cgp + kg) * _TILE_NS + tiles * cgp * kg * mac)
        return spectrum * per_value

    return min(((ah, aw) for ah in axes[0] for aw in axes[1]), key=lambda a: cost(*a))
