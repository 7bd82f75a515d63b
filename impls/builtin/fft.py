"""``fft``: conv2d as a product in the frequency domain (scipy.fft), for large kernels.

Why it exists: a direct or GEMM convolution costs C/g*R*S multiply-adds per output; here
each input tile and each kernel is transformed once, the channels are contracted per
frequency (one batched complex GEMM), and each output tile is transformed back once, so
the cost barely grows with R*S. It wins for big kernels at stride 1 and loses for 3x3.

How: overlap-save. The output is cut into tiles; a tile of T outputs needs T+R-1 inputs,
and a cyclic correlation of that length L (a fast FFT size) gives its T outputs exactly.
A small cost model (impls/builtin/_fft_plan.py) picks the tile: one transform of the whole
image would make K*C/g kernel spectra of H*W/2 values each, which dominate with many
channels; smaller tiles shrink them and turn the contraction into a real GEMM, at the price
of the R-1 overlap. A layer's kernel spectra are kept between inference calls (as Winograd
keeps its kernel transform), so the model counts them at a fraction of their cost.
Stride s is a polyphase split (space-to-depth): input and kernel are cut into s_h*s_w
phases, which become extra channels of a stride-1 correlation, so no output is computed
only to be thrown away; phases the kernel never touches (1x1 stride 2) are dropped.
Dilation inserts zeros into the kernel: one longer transform, simpler than splitting the
output into dilation phases.

Gradients (an explicit torch.autograd.Function, as SciPy is invisible to autograd) are
two more correlations through the same machinery, never torch's convolution:
backward-data is the output gradient, strided apart by zeros, correlated with the flipped
kernel (in and out channels swapped) and padded to give exactly the input's size;
backward-weights correlates the padded input with the output gradient as the "kernel",
images as the contracted channels, its stride and dilation swapped. A call that needs no
gradient never enters the Function, and one that does saves only what its backward reads
(the weight for the data gradient, the input for the weight gradient).

What it must not do: claim exactness (float32 runs in complex64; its error model is
"fft"), hide a NaN or Inf (a non-finite value spreads over its tile's outputs, an Inf may
come out as NaN, but it never vanishes), or support double backward (impls.builtin._first_order).
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft
import torch
from numpy.lib.stride_tricks import sliding_window_view

from impls.builtin import _scratch, _weight_cache
from impls.builtin._fft_plan import effective_stride, geometry, workspace
from impls.builtin._first_order import first_order
from impls.registry import register_backend


@register_backend(
    name="fft",
    devices=("cpu",),
    dtypes=(torch.float32, torch.float64),
    features=frozenset({"stride", "padding", "dilation", "groups", "bias", "autograd"}),
    exact=False,
    error_model="fft",
    workspace=workspace,
    description="scipy.fft overlap-save: tiles and kernels transformed once, channels "
                "contracted per frequency by one batched complex GEMM",
)
def fft_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Forward conv2d (cross-correlation) through real FFTs; float32 stays in complex64.

    A derivative in forward mode is refused, not dropped: NumPy returned the value alone,
    its tangent None (forward_ad), or could not read torch.func's wrapped tensors."""
    if _scratch.forward_mode(input, weight, bias):
        raise NotImplementedError("fft has no forward-mode derivative (forward_ad, torch.func "
                                  "jvp, vmap, grad): it computes in NumPy and SciPy, which "
                                  "they cannot see into; use another backend there")
    if _scratch.tracked(input, weight, bias):
        return _FFTConv2d.apply(input, weight, bias, stride, padding, dilation, groups)
    return _forward(input, weight, bias, stride, padding, dilation, groups, keep=weight)


def _forward(input, weight, bias, stride, padding, dilation, groups, keep):
    """``keep``: the weight whose kernel spectra may be kept between calls (inference), or
    None. Either way the plan is the one that assumes they are kept."""
    x = _numpy(input)
    (ph, pw) = padding
    out = _correlate2d(x, _numpy(weight), stride, ((ph, ph), (pw, pw)), dilation,
                       groups, kept=True, keep=keep)
    if bias is not None:
        out += _numpy(bias).reshape(1, -1, 1, 1)
    return torch.from_numpy(out)


def _numpy(t: torch.Tensor):
    """``t`` as a NumPy array; a lazily negated view (``z.conj().imag``) is resolved first,
    since NumPy has no negative bit and .numpy() refuses it."""
    return t.detach().resolve_neg().numpy()


class _FFTConv2d(torch.autograd.Function):
    """fft_conv2d with gradients for input, weight and bias, all computed by FFT."""

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        need_input, need_weight = ctx.needs_input_grad[:2]
        # Keep only what backward reads: the data gradient needs the weight, the weight
        # gradient the input; nothing else outlives the forward.
        ctx.save_for_backward(input if need_weight else None, weight if need_input else None)
        ctx.shapes = (input.shape, weight.shape)
        ctx.conv = (stride, padding, dilation, groups)
        # The same plan as inference (so the same values, and one memory model), but
        # nothing kept: a weight autograd differentiates may be written through .data
        # (gradcheck does), which no version counter sees.
        return _forward(input, weight, bias, stride, padding, dilation, groups, keep=None)

    @staticmethod
    @first_order
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        (input_shape, weight_shape), conv = ctx.shapes, ctx.conv
        go = _numpy(grad_out)
        grad_input = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_input = torch.from_numpy(
                _data_gradient(go, _numpy(weight), input_shape[2:], *conv))
        if ctx.needs_input_grad[1]:
            grad_weight = torch.from_numpy(
                _weight_gradient(_numpy(input), go, weight_shape, *conv))
        if ctx.needs_input_grad[2]:
            grad_bias = grad_out.sum(dim=(0, 2, 3))
        return grad_input, grad_weight, grad_bias, None, None, None, None


def _data_gradient(go, w, input_hw, stride, padding, dilation, groups):
    """dL/dinput: a full convolution of the output gradient with the kernel, by FFT.

    Input row y fed output row p through tap i where p*sh + i*dh = y + ph. With the output
    gradient spread out by the stride (zeros between rows) that is a correlation, dilation
    dh, with the kernel flipped, its in/out channels swapped per group, and dh*(R-1) - ph
    rows of padding on top (a crop where negative); the bottom padding makes it H rows.
    """
    n, k, p, q = go.shape
    _, cg, r, s = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if (sh, sw) != (1, 1):
        spread = np.zeros((n, k, sh * (p - 1) + 1, sw * (q - 1) + 1), dtype=go.dtype)
        spread[:, :, ::sh, ::sw] = go
        go = spread
    flipped = w.reshape(groups, k // groups, cg, r, s)[..., ::-1, ::-1]
    flipped = flipped.transpose(0, 2, 1, 3, 4).reshape(groups * cg, k // groups, r, s)
    top, left = dh * (r - 1) - ph, dw * (s - 1) - pw
    bottom = input_hw[0] + dh * (r - 1) - go.shape[2] - top
    right = input_hw[1] + dw * (s - 1) - go.shape[3] - left
    return _correlate2d(go, flipped, (1, 1), ((top, bottom), (left, right)), dilation, groups)


def _weight_gradient(x, go, weight_shape, stride, padding, dilation, groups):
    """dL/dweight: the padded input correlated with the output gradient, by FFT.

    grad_w[k, c, i, j] = sum over n, p, q of xpad[n, c, p*sh + i*dh, q*sw + j*dw] *
    go[n, k, p, q]: a correlation whose "kernel" is the output gradient (P x Q, dilated by
    the stride), whose output (R x S) steps by the dilation, and whose contracted channels
    are the images; the group's input channels become the batch. The bottom padding (a
    crop where negative) leaves exactly the rows that R x S outputs read.
    """
    n, c, h, wd = x.shape
    k, cg, r, s = weight_shape
    _, _, p, q = go.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    images = x.reshape(n, groups, cg, h, wd).transpose(2, 1, 0, 3, 4)
    images = images.reshape(cg, groups * n, h, wd)     # batch C/g, channels (g, N)
    kernels = go.transpose(1, 0, 2, 3)                  # (K, N, P, Q): K/g kernels per group
    bottom = dh * (r - 1) + sh * (p - 1) + 1 - h - ph
    right = dw * (s - 1) + sw * (q - 1) + 1 - wd - pw
    out = _correlate2d(images, kernels, dilation, ((ph, bottom), (pw, right)), stride, groups,
                       few_rows=True)
    return np.ascontiguousarray(out.transpose(1, 0, 2, 3))


def _correlate2d(x, w, stride, pads, dilation, groups, few_rows=False, kept=False,
                 keep=None):
    """The forward correlation without bias, padding ((top, bottom), (left, right)).

    Padding may differ per side and be negative (a crop), as the gradients need it.
    ``few_rows`` goes to :func:`_correlate`; ``kept`` plans as if the kernel spectra were
    kept (see _plan). ``keep``: the weight tensor ``w`` came from, when its kernel spectra
    are to be kept for the next call with the same weight and plan
    (impls.builtin._weight_cache: per storage and version, so an in-place write recomputes
    them). Inference reuses a layer's weight, and its spectra cost as much as the tiles'
    (13x13, 32 channels: 1.3 of 4.0 ms a call).
    """
    (pt, pb), (pl, pr) = pads
    x = x[:, :, max(0, -pt):, max(0, -pl):]
    pt, pl = max(0, pt), max(0, pl)
    n, (k, cg) = x.shape[0], w.shape[:2]
    stride = effective_stride(x.shape, w.shape, stride, (pt + pb, pl + pr), dilation)
    (p, q), (u_used, v_used), (rs, ss), plan = geometry(
        x.shape, w.shape, stride, (pt + pb, pl + pr), dilation, groups, kept)
    out = np.zeros((n, k, p, q), dtype=x.dtype)
    if n and cg:  # an empty batch or zero channels: nothing to transform
        def spectra_of_w():
            return _kernel_spectra(w, groups, dilation, stride, (u_used, v_used), plan,
                                   (rs, ss))

        spectra = spectra_of_w() if keep is None else _weight_cache.derived(
            keep, ("fft", stride, dilation, groups, plan),
            lambda: torch.from_numpy(spectra_of_w())).numpy()
        workers = _workers(plan, x.shape[1], n, len(u_used) * len(v_used), cg)
        tiles = _input_tiles(x, groups, (pt, pl), stride, (u_used, v_used), plan, workers)
        out[...] = _correlate(tiles, spectra, plan, n, (p, q), few_rows, workers)
    return out


def _kernel_spectra(w, groups, dilation, stride, phases, plan, kernel_hw):
    """conj(DFT) of every dilated, phase-split kernel, laid out (F, g, C/g*phases, K/g).

    Conjugate because conv2d is a correlation. The layout is the one the GEMM wants: a
    transpose of the large spectrum afterwards would cost more than computing it. Along
    the rows the kernel has only Rs non-zero entries out of Lh, so that transform is a
    (Lh x Rs) DFT-matrix product, one large GEMM, instead of Lh-point FFTs over zeros.
    """
    k, cg, r, s = w.shape
    (dh, dw), (sh, sw) = dilation, stride
    (lh, _, _), (lw, _, _) = plan
    rs, ss = kernel_hw                       # phase-domain kernel size: ceil(dilated / stride)
    # Dilate by placing the taps dh apart in zeros, then cut the rows/cols into stride phases.
    wz = np.zeros((groups, k // groups, cg, rs, sh, ss, sw), dtype=w.dtype)
    taps = wz.reshape(groups, k // groups, cg, rs * sh, ss * sw)
    taps[..., :dh * (r - 1) + 1:dh, :dw * (s - 1) + 1:dw] = w.reshape(taps.shape[:3] + (r, s))
    wz = _take(_take(wz, phases[0], 4), phases[1], 6)        # (g, Kg, Cg, Rs, u, Ss, v)
    wz = wz.transpose(3, 5, 0, 2, 4, 6, 1).reshape(rs, ss, groups, -1, k // groups)
    half = np.conj(sfft.rfft(wz, n=lw, axis=1, workers=torch.get_num_threads()))
    # exp(+2 pi i u r / Lh): the conjugate DFT; the angle is reduced mod Lh in integers.
    angle = np.outer(np.arange(lh), np.arange(rs)) % lh * (2 * np.pi / lh)
    dft = torch.from_numpy(np.exp(1j * angle).astype(half.dtype))
    spec = torch.matmul(dft, torch.from_numpy(half.reshape(rs, -1))).numpy()
    return spec.reshape(lh * half.shape[1], *half.shape[2:])


def _input_tiles(x, groups, padding, stride, phases, plan, workers=1):
    """DFT of every overlapping input tile, laid out (F, g, N*tiles, C/g*phases).

    ``padding`` is (top, left); the bottom and right need no zeros beyond the buffer's.
    """
    n, c, h, wd = x.shape
    (ph, pw), (sh, sw) = padding, stride
    (lh, th, nth), (lw, tw, ntw) = plan
    hq, wq = (nth - 1) * th + lh, (ntw - 1) * tw + lw     # phase-domain rows/cols read
    # Pad, crop and move space first in one copy: rows past hq*sh feed no output.
    xp = np.zeros((hq * sh, wq * sw, n, c), dtype=x.dtype)
    rows, cols = max(0, min(h, hq * sh - ph)), max(0, min(wd, wq * sw - pw))
    xp[ph:ph + rows, pw:pw + cols] = x[:, :, :rows, :cols].transpose(2, 3, 0, 1)
    xp = _take(_take(xp.reshape(hq, sh, wq, sw, n, groups, c // groups), phases[0], 1),
               phases[1], 3)
    # Overlapping tiles as a view; the first transform reads it in place (no tile copy).
    win = sliding_window_view(xp, (lh, lw), axis=(0, 2))[::th, :, ::tw]
    win = win.transpose(7, 8, 5, 4, 0, 2, 6, 1, 3)   # (Lh, Lw, g, N, nth, ntw, Cg, u, v)
    half = sfft.rfft(win, axis=1, workers=workers)
    spec = sfft.fft(half, axis=0, workers=workers, overwrite_x=True)
    return spec.reshape(lh * half.shape[1], groups, n * nth * ntw, -1)


def _correlate(tiles, spectra, plan, n, out_hw, few_rows=False, workers=1):
    """Contract channels per frequency, transform back, stitch the tiles into (N, K, P, Q).

    ``few_rows``: the tiles keep only a few of their Lh rows (the weight gradient's R x S
    outputs of an image-sized transform), so the inverse along the rows is a (T x Lh)
    DFT-matrix product, one GEMM, instead of Lh-point transforms whose rows are dropped.
    """
    (lh, th, nth), (lw, tw, ntw) = plan
    g, kg = spectra.shape[1], spectra.shape[3]
    if tiles.shape[-1] == 1:  # depthwise: a 1-long contraction is a broadcast product
        prod = tiles * spectra
    else:  # torch's batched GEMM is ~2x numpy's stacked matmul here, and uses its threads
        prod = torch.matmul(torch.from_numpy(tiles), torch.from_numpy(spectra)).numpy()
    prod = prod.reshape(lh, lw // 2 + 1, g, n, nth, ntw, kg)
    if few_rows:
        # exp(+2 pi i t u / Lh) / Lh for t < T: the first T rows of the inverse DFT.
        angle = np.outer(np.arange(th), np.arange(lh)) % lh * (2 * np.pi / lh)
        idft = torch.from_numpy((np.exp(1j * angle) / lh).astype(prod.dtype))
        rows = torch.matmul(idft, torch.from_numpy(prod.reshape(lh, -1))).numpy()
        rows = rows.reshape(th, *prod.shape[1:])
    else:
        rows = sfft.ifft(prod, axis=0, workers=workers, overwrite_x=True)[:th]
    # The last transform reads the tiles in output order, so its result needs no transpose.
    y = sfft.irfft(rows.transpose(3, 2, 6, 4, 0, 5, 1), n=lw, axis=-1, workers=workers)
    y = y[..., :tw].reshape(n, g * kg, nth * th, ntw * tw)
    return y[:, :, :out_hw[0], :out_hw[1]]


def _take(a, phases: list[int], axis: int):
    """The given stride phases of ``a`` along ``axis``; a view when all are used."""
    return a if len(phases) == a.shape[axis] else np.take(a, phases, axis=axis)


#: Tile-array elements from which scipy's FFT threads pay off next to torch's GEMM.
WORKERS_FROM = 1 << 20


def _workers(plan, channels: int, n: int, phases: int, cg: int) -> int:
    """scipy.fft's ``workers`` for a problem's tile transforms: torch's thread count (so a
    benchmark that pins torch to 2 threads pins these too), or 1 where the channels are
    contracted by torch's GEMM (C/g x phases > 1) and the tile array is below WORKERS_FROM
    elements. Measured on 2 cores over the large-kernel set and every grid shape from 5x5
    up: next to the GEMM, two FFT threads lost 5-15% on all but the largest problems
    (dense 31x31 on 128x128: 11% faster with them); depthwise, where no GEMM runs, they win
    up to 1.45x (RepLKNet's 31x31 on 56x56)."""
    (lh, _, nth), (lw, _, ntw) = plan
    threads = torch.get_num_threads()
    if cg * phases == 1 or lh * lw * nth * ntw * n * channels * phases >= WORKERS_FROM:
        return threads
    return 1
