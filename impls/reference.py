"""The float64 ground truth: a direct convolution in NumPy that never calls torch's conv.

Why independent: a reference that calls the code it checks proves nothing. This one is
written from the definition, out[n, k, p, q] = bias[k] + sum over c, r, s of
x[n, g*C/g + c, p*sh + r*dh - pt, q*sw + s*dw - pl] * w[k, c, r, s], with one NumPy
contraction per kernel tap (R*S of them) so it stays fast enough for the whole case table.
It resolves "same"/"valid" padding itself (PyTorch's rule: the odd extra row/column goes at
the bottom/right) rather than borrowing the front end's, so a front-end bug cannot hide.
Integer-valued data gives exact sums in float64, so exact mode compares bit for bit.

The gradients (:func:`reference_conv2d_backward`) come from the same definition, read
backwards over the same tap loop: each tap's output-gradient contraction is scatter-added
into the input-gradient window that tap read, and the weight gradient of a tap is that
window contracted with the output gradient over N, P, Q. No autograd, no transposed conv.
"""

from __future__ import annotations

import numpy as np


def pair(value) -> tuple[int, int]:
    """An int or a one/two-element sequence as (int, int), as F.conv2d reads it."""
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[-1]))


def resolve_padding(padding, kernel, dilation) -> tuple[tuple[int, int], tuple[int, int]]:
    """((top, bottom), (left, right)) for an int, a pair, "valid" or "same"."""
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        sides = []
        for k, d in zip(kernel, dilation):
            total = d * (k - 1)
            sides.append((total // 2, total - total // 2))
        return sides[0], sides[1]
    ph, pw = pair(padding)
    return (ph, ph), (pw, pw)


def _grouped(x, w, stride, padding, dilation, groups):
    """The zero-padded input as (N, g, C/g, Hp, Wp) and the weight as (g, K/g, C/g, R, S),
    in float64, with stride and dilation pairs and the (top, left) padding."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    stride, dilation = pair(stride), pair(dilation)
    (pt, pb), (pl, pr) = resolve_padding(padding, (r, s), dilation)
    xp = np.zeros((n, c, h + pt + pb, wd + pl + pr))
    xp[:, :, pt:pt + h, pl:pl + wd] = x
    xg = xp.reshape(n, groups, cg, *xp.shape[2:])
    wg = w.reshape(groups, k // groups, cg, r, s)
    return xg, wg, stride, dilation, (pt, pl)


def reference_conv2d(x, w, bias=None, stride=1, padding=0, dilation=1, groups=1) -> np.ndarray:
    """Forward conv2d in float64 with F.conv2d's arguments; x is 4-D (N, C, H, W)."""
    xg, wg, (sh, sw), (dh, dw), _ = _grouped(x, w, stride, padding, dilation, groups)
    n, _, _, hp, wp = xg.shape
    k, r, s = w.shape[0], w.shape[2], w.shape[3]
    p = (hp - dh * (r - 1) - 1) // sh + 1
    q = (wp - dw * (s - 1) - 1) // sw + 1
    out = np.zeros((n, groups, k // groups, p, q))
    for i in range(r):
        for j in range(s):
            window = xg[:, :, :, i * dh: i * dh + sh * (p - 1) + 1: sh,
                        j * dw: j * dw + sw * (q - 1) + 1: sw]
            out += np.einsum("ngcpq,gkc->ngkpq", window, wg[:, :, :, i, j])
    out = out.reshape(n, k, p, q)
    if bias is not None:
        out += np.asarray(bias, dtype=np.float64).reshape(1, k, 1, 1)
    return out


def reference_conv2d_backward(x, w, grad_out, stride=1, padding=0, dilation=1, groups=1, *,
                              output_mask=(True, True, True)):
    """(grad_input, grad_weight, grad_bias) in float64 for ``grad_out`` = dLoss/dOutput.

    From the forward's definition: output[n, g, k, p, q] takes window_ij[n, g, c, p, q] *
    w[g, k, c, i, j] for every tap (i, j), where window_ij is the strided slice of the padded
    input that tap reads. So per tap, grad_out contracted over k is added into that same slice
    of the padded input's gradient (which is then cropped), and grad_out contracted with the
    slice over n, p, q is the weight gradient of the tap. grad_bias sums grad_out over N, P, Q.
    ``output_mask`` (as aten's convolution_backward) skips gradients not asked for: None.
    """
    grad_out = np.asarray(grad_out, dtype=np.float64)
    xg, wg, (sh, sw), (dh, dw), (pt, pl) = _grouped(x, w, stride, padding, dilation, groups)
    n, c, h, wd = np.shape(x)
    k, cg, r, s = np.shape(w)
    hp, wp = xg.shape[3:]
    p, q = grad_out.shape[2:]
    go = grad_out.reshape(n, groups, k // groups, p, q)
    grad_xg = np.zeros_like(xg)
    grad_wg = np.zeros_like(wg)
    # einsum's own loops, not matmul: BLAS threads slow it 50x when the cores are shared.
    for i in range(r):
        for j in range(s):
            tap = (slice(None),) * 3 + (slice(i * dh, i * dh + sh * (p - 1) + 1, sh),
                                        slice(j * dw, j * dw + sw * (q - 1) + 1, sw))
            if output_mask[0]:
                grad_xg[tap] += np.einsum("ngkpq,gkc->ngcpq", go, wg[:, :, :, i, j])
            if output_mask[1]:
                grad_wg[:, :, :, i, j] = np.einsum("ngcpq,ngkpq->gkc", xg[tap], go)
    grad_x = grad_xg.reshape(n, c, hp, wp)[:, :, pt:pt + h, pl:pl + wd]
    return (grad_x if output_mask[0] else None,
            grad_wg.reshape(k, cg, r, s) if output_mask[1] else None,
            grad_out.sum(axis=(0, 2, 3)) if output_mask[2] else None)
