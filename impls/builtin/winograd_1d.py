"""``winograd-f4x1``: Winograd F(4x1, 3x3), the transform down the columns only.

Why it exists: F(4x4, 3x3) (impls.builtin.winograd) does 4x fewer multiplies than direct,
but its tiles hold 36/16 = 2.25x the image and every transform pass moves them; where a
layer has few channels on a large image (ResNet-50's 64@56x56), those passes cost what
oneDNN takes for the whole convolution, and F(4x4) runs at ~0.75x of it. F(4x1) transforms
only along the image's height, 6 rows for every 4 output rows (1.5x the image), and does
the width directly: the three kernel columns are three GEMMs that read the same
transformed rows shifted by 0, 1 and 2 pixels, which a strided view gives for free. Half
the multiplies of direct, two passes less than F(4x4), no tile gather across the width: on
64@56x56 at batch 8 it ran 0.88x of torch where F(4x4) ran 0.76x (one targets run on
2026-11-27; 0.96-0.97x against 0.78-0.86x paired by hand), still short of torch: its
GEMMs, twice F(4x4)'s work, take half its time. Where channels are many the GEMMs
dominate and F(4x4)'s halved GEMM work wins (128@28x28 and deeper): each variant is the
better one somewhere, and ``auto`` picks per shape from a sweep that measured both.

How, per chunk of images (as impls.builtin.winograd, ~16 MB of transformed rows):

1. Rows: D[i, c, n, t, x] = input[n, c, 4t + i - pad, x - pad], zero outside, for the 6
   rows i of each 4-row tile t; whole image rows are copied, so each copy moves runs of W
   values (the padded width Wp = W + 2*pad, two more than the output's Q).
2. V = B^T D: one GEMM over the 6 rows of every tile, channel and column.
3. For each transform position i (and group): M_i = sum_s U_{i,s} V_i[shifted by s], with
   U_{i,s} = (G g[:, :, :, s])_i the kernel column s transformed down its rows: three
   (K/g x C/g) @ (C/g x N*T*Wp) GEMMs into one product, the last two accumulating in place.
   Reading column x + s of a row of Wp columns wraps into the next row for x >= Q; those
   two columns per row are computed and dropped. Each (position, group) block of V ends
   in two spare zeros, so the shifted views stay inside it.
4. Y = A^T M: the output rows of every tile, then one copy into NCHW that moves whole
   output rows. The bias rides on the position of the point 1 (its A^T column is all
   ones), as in F(4x4).

Error: of F(4x4)'s kind (global scale, worst where the transforms or equal products
dominate), with constants fitted the same way (model "winograd-f4x1", impls.tolerances):
on normal data its worst was about F(4x4)'s (24 against 21-35 in the model's units); its
worst coherent case, all-ones data at C/g = 4096, was twice F(4x4)'s worst (61 against
29): three GEMMs each sum 4096 equal inexact products.

What it must not do: take a problem outside the method (``accepts`` is F(4x4)'s: 3x3,
stride 1, dilation 1), claim exactness, or serve a stale kernel transform (kept per weight
and version by impls.builtin._weight_cache, as in F(4x4)). Everything is differentiable
torch ops, the in-place accumulation included, so autograd works.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from impls.builtin import _weight_cache
from impls.builtin._plain import plain
from impls.builtin.winograd import POINTS, accepts, ceil_div, chunk_step, exact_matrices
from impls.registry import FEATURES, register_backend

#: Output rows per tile: F(4, 3) down the columns.
M = 4
#: Kernel columns, done directly as shifted GEMMs.
TAPS = 3
#: Elements of the largest per-chunk buffer (transformed rows or products): ~16 MB in
#: fp32. 64@56x56 then runs all 8 images of a batch in one chunk, which measured faster
#: than 4 or 2 (larger GEMMs); the buffers are 1.5x the images, not F(4x4)'s 2.25x.
_CHUNK_ELEMENTS = 1 << 22
#: Spare zeros after each (position, group) block of V: the shifted views read this far.
_SPARE = TAPS - 1


@lru_cache(maxsize=32)
def _matrices(dtype: torch.dtype, device: torch.device):
    """A^T, G, B^T of F(4, 3) in ``dtype``, each entry rounded once from the exact value."""
    with plain(device):  # kept for the process: made outside any caller's mode
        return tuple(mat.to(dtype=dtype, device=device) for mat in exact_matrices(M))


def _grid(input_shape, padding):
    """(output rows P, output columns Q, tiles down T, padded width Wp)."""
    h, w = input_shape[2:]
    p, q = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    return p, q, ceil_div(p, M), w + 2 * padding[1]


def _images_per_chunk(input_shape, weight_shape, padding) -> int:
    """Images whose transformed rows (or products, if K > C) fill about _CHUNK_ELEMENTS;
    equal chunks, as in F(4x4)."""
    n, c = input_shape[:2]
    _, _, tiles, wp = _grid(input_shape, padding)
    per_image = (M + 2) * max(c, weight_shape[0]) * tiles * wp
    return chunk_step(n, max(1, _CHUNK_ELEMENTS // max(per_image, 1)))


def _winograd_rows(input, weight, bias, padding, groups):
    """F(4x1, 3x3) of NCHW ``input``: see the module docstring for the four steps."""
    a_t, g, b_t = _matrices(input.dtype, input.device)
    n, c = input.shape[:2]
    k, cg = weight.shape[:2]
    alpha = M + 2
    p, q, tiles, wp = _grid(input.shape, padding)
    # (taps, alpha*g, K/g, C/g): each kernel column transformed down its rows, kept per
    # weight and version as in F(4x4).
    u = _weight_cache.derived(weight, ("winograd-rows", M, groups), lambda: torch.einsum(
        "ir,kcrs->sikc", g, weight).reshape(TAPS, alpha * groups, k // groups, cg))
    out = input.new_empty(n, k, tiles, M, q)
    step = _images_per_chunk(input.shape, weight.shape, padding)
    for start in range(0, n, step):
        images = input[start:start + step]
        rows = images.shape[0] * tiles * wp
        d = _gather_rows(images, padding, groups, tiles, wp)
        v = (b_t @ d.view(alpha, -1)).view(alpha * groups, cg * rows + _SPARE)
        del d  # free before the products (the memory model counts it so)
        shifted = [v.as_strided((alpha * groups, cg, rows), (cg * rows + _SPARE, rows, 1),
                                v.storage_offset() + s) for s in range(TAPS)]
        prod = _contract(u, shifted)  # (alpha*g, K/g, rows)
        del v, shifted
        if bias is not None:
            prod.view(alpha, k, rows)[POINTS[M].index(1)] += bias.view(k, 1)
        y = (a_t @ prod.view(alpha, -1)).view(M, k, -1, tiles, wp)
        del prod
        out[start:start + step] = y.permute(2, 1, 3, 0, 4)[..., :q]
        del y
    out = out.view(n, k, tiles * M, q)
    return out[:, :, :p].contiguous() if p % M else out  # a copy only when a tile overhangs


def _contract(u, shifted):
    """sum over kernel columns s of u[s] @ shifted[s], the last two added in place.
    Depthwise (C/g = 1): a length-1 contraction is a product. In place, autocast casts
    nothing: the operands follow the first product's dtype (no-ops outside autocast)."""
    if u.shape[-1] == 1:
        prod = u[0] * shifted[0]
        for s in range(1, TAPS):
            prod.addcmul_(u[s], shifted[s])
        return prod
    prod = torch.bmm(u[0], shifted[0])
    for s in range(1, TAPS):
        prod.baddbmm_(u[s].to(prod.dtype), shifted[s].to(prod.dtype))
    return prod


def _gather_rows(images, padding, groups: int, tiles: int, wp: int):
    """(alpha, g, C/g*N*T*Wp + _SPARE): row i of every 4-row tile t, input row 4t + i - ph,
    as whole padded rows, zero outside the image; one strided copy per i, each moving rows
    of W values. The spare zeros end each (position, group) block (see _winograd_rows)."""
    nc, c, h, w = images.shape
    (ph, pw), alpha = padding, M + 2
    rows = nc * tiles * wp
    d = images.new_empty(alpha, groups, c // groups * rows + _SPARE)
    d[:, :, -_SPARE:].zero_()
    grid = d[:, :, :-_SPARE].view(alpha, groups, c // groups, nc, tiles, wp)
    grid[..., :pw].zero_()
    grid[..., pw + w:].zero_()
    source = images.transpose(0, 1).unflatten(0, (groups, c // groups))  # (g, C/g, N, H, W)
    for i in range(alpha):
        first = max(0, ceil_div(ph - i, M))  # first tile whose row i is inside the image
        end = min(tiles, (h - 1 + ph - i) // M + 1)
        grid[i, :, :, :, :first].zero_()
        grid[i, :, :, :, max(first, end):].zero_()
        if end > first:
            top = M * first + i - ph
            grid[i, ..., first:end, pw:pw + w] = source[
                ..., top:top + M * (end - first - 1) + 1:M, :]
    return d


def workspace(input_shape, weight_shape, stride, padding, dilation, groups, itemsize):
    """Bytes a call allocates beyond its inputs (see impls.memory_budget): the kernel
    transform U, the tiled output, and the larger of its cropped copy and one chunk's
    gathered rows D, transformed rows V, products M and output rows Y, as _winograd_rows
    frees them."""
    (n, c), k, cg = input_shape[:2], weight_shape[0], weight_shape[1]
    p, q, tiles, wp = _grid(input_shape, padding)
    step = _images_per_chunk(input_shape, weight_shape, padding)
    chunks = ceil_div(n, step) if n else 0
    rows = min(step, n) * tiles * wp
    alpha = M + 2
    d = v = alpha * (c * rows + groups * _SPARE)
    prod, y = alpha * k * rows, M * k * rows
    chunk = max(d + v, v + prod, prod + y)
    if chunks > 1:  # a freed buffer is reused only by one that fits (as in F(4x4))
        chunk += max(prod, v)
    tiled = n * k * tiles * M * q
    cropped = n * k * p * q if p % M else 0
    # The cropped copy is made after the last chunk's buffers are freed.
    need = (TAPS * alpha * k * cg + tiled + max(cropped, chunk)) * itemsize
    return need, "its transformed rows and kernels (6 positions x channels) and the output"


@register_backend(
    name="winograd-f4x1",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64),
    exact=False,
    error_model="winograd-f4x1",
    features=FEATURES - {"stride", "dilation"},
    accepts=accepts,
    workspace=workspace,
    description="Winograd F(4x1, 3x3): the transform down the columns only, the kernel "
                "columns as three shifted GEMMs per position",
)
def winograd_f4x1(input, weight, bias, stride, padding, dilation, groups):
    return _winograd_rows(input, weight, bias, padding, groups)
