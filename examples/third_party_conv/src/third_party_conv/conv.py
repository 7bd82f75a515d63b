"""A conv2d written its own way: one einsum over a strided view of sliding windows.

It has torch.nn.functional.conv2d's signature and never calls it. The padded input is
viewed (no copy) as (N, groups, C/g, P, Q, R, S) windows with ``as_strided``, and a single
einsum contracts channels and taps against the weight. Autograd works through both.

It does not depend on convbench: ``convbench_capabilities`` is a plain dict that
convbench reads if present. convbench's front end validates arguments and resolves
``padding="same"``/``"valid"`` and unbatched input before calling, so this function only
handles int or (int, int) stride, padding and dilation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Strided-window einsum conv2d (cross-correlation, as PyTorch's)."""
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    x = F.pad(input, (pw, pw, ph, ph)).contiguous()
    n, c, h, w = x.shape
    k, cg, r, s = weight.shape
    p = (h - dh * (r - 1) - 1) // sh + 1
    q = (w - dw * (s - 1) - 1) // sw + 1
    sn, sc, sy, sx = x.stride()
    # windows[n, g, c, i, j, u, v] = x[n, g*C/g + c, i*sh + u*dh, j*sw + v*dw]
    windows = x.as_strided((n, groups, cg, p, q, r, s),
                           (sn, cg * sc, sc, sh * sy, sw * sx, dh * sy, dw * sx))
    taps = weight.reshape(groups, k // groups, cg, r, s)
    out = torch.einsum("ngcijuv,gkcuv->ngkij", windows, taps).reshape(n, k, p, q)
    return out if bias is None else out + bias.view(1, k, 1, 1)


# Read by convbench (if installed); every key is optional. Features are those of
# impls.registry.FEATURES that this function implements.
conv2d.convbench_capabilities = {
    "devices": ("cpu", "cuda"),
    "dtypes": ("float32", "float64"),
    "features": ("stride", "padding", "dilation", "groups", "bias", "autograd"),
    "description": "einsum over a strided window view (example third-party package)",
}
