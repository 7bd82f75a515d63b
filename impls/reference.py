"""The float64 ground truth: a direct convolution in NumPy that never calls torch's conv.

Why independent: a reference that calls the code it checks proves nothing. This one is
written from the definition, out[n, k, p, q] = bias[k] + sum over c, r, s of
x[n, g*C/g + c, p*sh + r*dh - ph, q*sw + s*dw - pw] * w[k, c, r, s], with one NumPy
contraction per kernel tap (R*S of them) so it stays fast enough for the whole case table.
Integer-valued data gives exact sums in float64, so exact mode compares bit for bit.
"""

from __future__ import annotations

import numpy as np


def reference_conv2d(x, w, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                     groups=1) -> np.ndarray:
    """Forward conv2d in float64 over normalised arguments (4-D x, int pairs, symmetric pad)."""
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    n, c, h, wd = x.shape
    k, cg, r, s = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    p = (h + 2 * ph - dh * (r - 1) - 1) // sh + 1
    q = (wd + 2 * pw - dw * (s - 1) - 1) // sw + 1
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    xg = xp.reshape(n, groups, cg, h + 2 * ph, wd + 2 * pw)
    wg = w.reshape(groups, k // groups, cg, r, s)
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
