"""``winograd-f2`` / ``winograd-f4``: Winograd F(m x m, 3x3) convolution (Lavin & Gray 2016).

Why it exists: a 3x3 stride-1 convolution computed tile by tile needs fewer multiplies in
a transformed basis. Each (m+2)x(m+2) input tile d and each kernel g are transformed,
V = B^T d B and U = G g G^T; the channels are contracted position by position, one GEMM
per transform position (of (m+2)^2) and group; then Y = A^T M A gives an m x m output tile.
F(2x2) does 2.25x fewer multiplies than direct, F(4x4) 4x; the price is rounding error that
grows with m, and the transforms, which are memory-bound copies and small GEMMs.

How: the transforms are GEMMs over every tile and channel at once. F(4x4)'s input
transform goes separably, a 6-point GEMM over the tile rows and one over the columns
(_separable); F(2x2)'s is one GEMM with kron(B^T, B^T), 16x16. Data run channels-last on
the way in (one transposing copy), because tiles gathered with C innermost copy in long
contiguous runs. Each position's GEMM is (K/g x C/g) @ (C/g x tiles), so the products come
out kernel-major, and the output transform, also separable (_output_tiles), leaves each
image row of the result contiguous: the last copy into NCHW moves whole rows. Partial edge
tiles come from padding the input up to whole tiles. The bias rides on the transform
position of the point 1, whose output-transform row is all ones: an add over 1/(m+2)^2 of
the product instead of a pass over the output. Points: F(2x2) uses 0, +-1, inf; F(4x4)
0, +-1, 1/2, -2, inf, which measured about 2x smaller fp32 error than the usual 0, +-1,
+-2, inf (as Barabasz et al. 2020 found).

Error (model names "winograd-f2", "winograd-f4"; u unit roundoff, xw = max|x| * max|w|,
L = C/g*9). A transform spreads rounding over its tile, so the scale is global (xw), as
for FFT. Measured on ~9,000 comparisons per variant (fp32 and fp64; normal, uniform,
all-ones, small-integer and 100+normal data; C/g 1..4096, images 4..23, padding 0..3,
groups 1 and 3, 1 and 2 threads, MKL on CPU), the error stayed below

    coherent data (exact mode):  u*|ref| + c * u * xw * L * sqrt(C/g),  c  = 3.9 (F2), 29 (F4)
    normal data (random mode):   u*|ref| + c' * u * xw * sqrt(L),       c' = 3.3 (F2), 35 (F4)

The worst cases are at C/g = 1 (depthwise), where the transforms' own rounding dominates;
the sqrt(C/g) is real: all-equal data sums C/g equal inexact products (F4 fp32: 4.3 L at
C/g = 1, 171 L at C/g = 256). F2 was exact on every small-integer input (its transforms
only make halves and quarters) but is not declared exact. Allowing 2x the worst measured
(c, c' = 8, 7 for F2 and 60, 70 for F4), the case table passes in both modes and dtypes
(worst error/bound 0.30; 0.20 since F4's transforms went separable, whose rounding the
constants above, measured with Kronecker transforms, still bound), as do the gradients
through autograd.

Speed against F.conv2d (oneDNN) on ResNet-50's 3x3 layers at batch 8, 2-core Xeon, with
the kernel transform kept, paired rounds (`python -m benchmarks targets`, three runs on
2026-11-26): F4 1.26-1.36x on 128@28x28, 1.08-1.21x on 256@14x14, 1.14-1.16x on 512@7x7,
F2 0.92-1.05x there; 0.73-0.78x (F4) and 0.54-0.63x (F2) on 64@56x56, where the transforms
(~6 passes over (m+2)^2/m^2 times the data) alone cost about what oneDNN takes for the
whole convolution. Two choices made the
deep layers: chunks of ~8 MB rather than 4 (F4 on 256@14x14 ran 4 images a chunk, now 8:
larger GEMMs), and the separable transforms with kernel-major products. Recomputing the
kernel transform every call (36*K*C values for F4, 38 MB at 512 channels) had cost the
deep layers up to half their speed (F4 on 512@7x7: 0.4x).

Where even F(4x4)'s transforms cost too much (few channels on a large image), F(4x1, 3x3)
transforms along one axis only: impls.builtin.winograd_1d, backend "winograd-f4x1".

What it must not do: take a problem outside the method (kernel not 3x3, stride or dilation
not 1): ``accepts`` refuses those with the reason, never a silent fallback to another
method. Nor claim exactness, nor serve a stale kernel transform: it is kept per weight and
version by impls.builtin._weight_cache, which recomputes it after any in-place write and
never keeps one autograd must differentiate. Everything is differentiable torch ops, so
autograd works.
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import torch

from impls.builtin import _weight_cache
from impls.builtin._plain import plain
from impls.registry import FEATURES, register_backend

#: Interpolation points (plus infinity) of F(m x m, 3x3), by output tile size m.
POINTS = {2: (0, 1, -1), 4: (0, 1, -1, Fraction(1, 2), -2)}
#: Tile size m from which the input transform runs separably (_separable) rather than as one
#: Kronecker GEMM: F(4x4)'s two 6-point passes measured 15% faster than its 36x36 GEMM on
#: 64@56x56 (3x fewer flops: 2 x 6 x 36 against 36 x 36 per column); F(2x2)'s 4-point
#: GEMMs are too small for MKL, its 16x16 Kronecker GEMM 1.9x faster than two passes.
SEPARABLE_FROM = 4
#: Elements of the largest per-chunk buffer (tiles x positions x channels): ~8 MB in fp32.
_CHUNK_ELEMENTS = 1 << 21
_METHOD = "Winograd here is F(m x m, 3x3) and F(4x1, 3x3): 3x3 kernels, stride 1, dilation 1 only"


def accepts(input_shape, weight_shape, stride, padding, dilation, groups) -> str:
    """Why this problem is outside F(m x m, 3x3), or "" when it is not."""
    reasons = []
    if tuple(weight_shape[2:]) != (3, 3):
        reasons.append(f"kernel {weight_shape[2]}x{weight_shape[3]}")
    if tuple(stride) != (1, 1):
        reasons.append(f"stride {stride[0]}x{stride[1]}")
    if tuple(dilation) != (1, 1):
        reasons.append(f"dilation {dilation[0]}x{dilation[1]}")
    return f"{', '.join(reasons)} ({_METHOD})" if reasons else ""


def toom_cook(m: int, points) -> tuple[list, list, list]:
    """Exact (A^T, G, B^T) of F(m, 3) at the finite ``points`` and infinity, as Fractions.

    Modified Toom-Cook: for a linear convolution s = C[(G g) * (H h)], H evaluates a
    degree m-1 polynomial at the points (the infinity row takes its leading coefficient), G
    does so for the kernel with the Lagrange denominators folded in, and C interpolates.
    Correlation is the transpose, y = H^T[(G g) * (C^T d)]: so A^T = H^T and B^T = C^T.
    """
    pts = [Fraction(p) for p in points]
    alpha = m + 2
    a_t = [[p**i for p in pts] + [Fraction(i == m - 1)] for i in range(m)]
    g = [[p**k / _prod(p - o for o in pts if o != p) for k in range(3)] for p in pts]
    g.append([Fraction(k == 2) for k in range(3)])
    b_t = []  # row j: coefficients of prod_{l != j}(x - p_l); last row: of prod_l(x - p_l)
    for skip in [*pts, None]:
        poly = [Fraction(1)]
        for o in pts:
            if o != skip:
                poly = [a - o * b for a, b in zip([Fraction(0), *poly], [*poly, Fraction(0)])]
        b_t.append(poly + [Fraction(0)] * (alpha - len(poly)))
    return a_t, g, b_t


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def chunk_step(n: int, fit: int) -> int:
    """Images per chunk when at most ``fit`` fit: equal chunks (a lone image in the last
    one is slow); 1 for an empty batch."""
    return ceil_div(n, ceil_div(n, fit)) if n else 1


def _prod(values) -> Fraction:
    out = Fraction(1)
    for v in values:
        out *= v
    return out


def exact_matrices(m: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """toom_cook's (A^T, G, B^T) at POINTS[m] in float64: the fractions rounded once."""
    return tuple(torch.tensor([[float(v) for v in row] for row in mat], dtype=torch.float64)
                 for mat in toom_cook(m, POINTS[m]))


@lru_cache(maxsize=32)
def _transforms(m: int, dtype: torch.dtype, device: torch.device):
    """A^T, kron(G, G), B^T, kron(B^T, B^T) in ``dtype``, and the bias position.

    Built in float64 from the exact fractions and rounded once, so each entry is the
    correctly rounded value (A^T and B^T are exact: their points are dyadic). Constants of
    the method, not state: cached per dtype/device.
    """
    with plain(device):  # kept for the process: made outside any caller's mode
        a_t, g, b_t = exact_matrices(m)
        mats = [mat.to(dtype=dtype, device=device)
                for mat in (a_t, torch.kron(g, g), b_t, torch.kron(b_t, b_t))]
    one = POINTS[m].index(1)
    return (*mats, one * (m + 2) + one)


def _winograd(m: int, input, weight, bias, padding, groups):
    """F(m x m, 3x3): transform tiles and kernels, one GEMM per position, transform back."""
    a_t, kron_g, b_t, kron_b, bias_position = _transforms(m, input.dtype, input.device)
    n, c, h, w = input.shape
    k, cg = weight.shape[:2]
    positions = (m + 2) ** 2
    p, q = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    grid = (ceil_div(p, m), ceil_div(q, m))  # tiles down and across; the last may overhang
    # (positions*g, K/g, C/g): the kernels' side of every position's GEMM, kept per weight
    # and version (impls.builtin._weight_cache) because inference reuses the weight.
    u = _weight_cache.derived(weight, ("winograd", m, groups), lambda: (
        kron_g @ weight.reshape(k * cg, 9).T).view(positions * groups, k // groups, cg))
    out = input.new_empty(n, k, grid[0], m, grid[1], m)
    # A few images at a time: the tiles, their transform and the product are each
    # (m+2)^2/m^2 times the images; in chunks of ~8 MB they stay in the last-level cache
    # and reuse freed memory (F(2x2) on 64@56x56, batch 8: 0.34x -> 0.57x of torch).
    step = _images_per_chunk(n, max(c, k), grid, positions)
    for start in range(0, n, step):
        images = input[start:start + step]
        gathered = _input_tiles(images, padding, groups, m, grid)
        v = kron_b @ gathered if m < SEPARABLE_FROM else _separable(b_t, gathered)
        del gathered  # free before the products (the memory model counts it so)
        v = v.view(positions * groups, -1, cg)  # (positions*g, tiles, C/g)
        # (K/g x C/g) @ (C/g x tiles) per position and group: products (positions, K,
        # tiles), which the output transform below turns into rows of NCHW. Depthwise: a
        # length-1 contraction is a product.
        contract = torch.mul if cg == 1 else torch.matmul
        prod = contract(u, v.transpose(1, 2)).view(positions, k, -1)
        if bias is not None:
            prod[bias_position] += bias.view(k, 1)
        _output_tiles(a_t, prod, out[start:start + step])
        del v, prod  # free before the next chunk's (the memory model counts one chunk's)
    out = out.view(n, k, grid[0] * m, grid[1] * m)
    return out[:, :, :p, :q].contiguous()  # a copy only when edge tiles overhang


def _images_per_chunk(n: int, channels: int, grid, positions: int) -> int:
    """Images per chunk: as many as keep the largest per-chunk buffer (tiles x positions x
    channels) within _CHUNK_ELEMENTS, in equal chunks."""
    return chunk_step(n, max(1, _CHUNK_ELEMENTS // (grid[0] * grid[1] * positions * channels)))


def _separable(b_t, data):
    """kron(B^T, B^T) @ data, for data (alpha*alpha, X), as two passes of alpha-point GEMMs:
    over the tile rows, then over the columns, batched per row. Neither copies: both read
    their operand as it lies."""
    alpha, x = b_t.shape[0], data.shape[1]
    # reshape, not view: for a lone tile per channel the gather can be a strided view
    half = (b_t @ data.reshape(alpha, alpha * x)).view(alpha, alpha, x)
    return torch.matmul(b_t, half).view(-1, x)


def _output_tiles(a_t, prod, out):
    """Y = A^T M A of every tile, written into ``out``, a chunk's (images, K, tile rows, m,
    tile columns, m): ``prod`` is (positions, K, tiles), tiles in (image, row, column)
    order. First over the position rows (one GEMM); then over the position columns with
    the tile columns as the rows of a transposed operand, so the result comes out
    (m, K, images, tile rows, tile columns, m): each image row a contiguous run, and the
    last copy into NCHW moves whole rows. Kronecker GEMM and a fully transposing copy
    instead: 25-40% slower on the ResNet-50 layers."""
    images, k, rows, m, cols, _ = out.shape
    alpha, x = a_t.shape[1], prod[0].numel()
    half = (a_t @ prod.view(alpha, alpha * x)).view(m, alpha, x)
    y = torch.matmul(half.transpose(1, 2), a_t.T)  # (m, K*tiles, m)
    out[:] = y.view(m, k, images, rows, cols, m).permute(2, 1, 3, 0, 4, 5)


def _input_tiles(input, padding, groups: int, m: int, grid):
    """Every (m+2)x(m+2) input tile, stride m, as a (positions, g*N*tiles*C/g) matrix.

    Channels-last: gathered with C innermost, each tile row is a contiguous run of C values
    (an NCHW gather copies runs of m+2 values and was 2-7x slower here). The one copy that
    goes channels-last also places the input inside its zero border (padding, and the
    overhang of the last tiles); only the border is zeroed, not the whole buffer.
    """
    n, c, h, w = input.shape
    (ph, pw), alpha = padding, m + 2
    padded = input.new_empty(n, grid[0] * m + 2, grid[1] * m + 2, c)
    padded[:, :ph].zero_()
    padded[:, ph + h:].zero_()
    padded[:, ph:ph + h, :pw].zero_()
    padded[:, ph:ph + h, pw + w:].zero_()
    padded[:, ph:ph + h, pw:pw + w] = input.permute(0, 2, 3, 1)
    windows = padded.view(*padded.shape[:3], groups, c // groups).unfold(1, alpha, m)
    windows = windows.unfold(2, alpha, m)  # (N, th, tw, g, C/g, alpha, alpha)
    return windows.permute(5, 6, 3, 0, 1, 2, 4).reshape(alpha * alpha, -1)


def workspace(m, input_shape, weight_shape, stride, padding, dilation, groups, itemsize):
    """Bytes a call of F(m x m, 3x3) allocates beyond its inputs (see impls.memory_budget):
    the kernel transform U, the tiled output, and the larger of its cropped copy and one
    chunk of images' padded input, transformed tiles V (and the half-way pass of
    _separable), products M and output tiles (and _output_tiles' half-way pass), as
    _winograd chunks."""
    (n, c, h, w), (k, cg) = input_shape, weight_shape[:2]
    positions = (m + 2) ** 2
    p, q = h + 2 * padding[0] - 2, w + 2 * padding[1] - 2
    grid = (ceil_div(p, m), ceil_div(q, m))
    step = _images_per_chunk(n, max(c, k), grid, positions)
    chunks = ceil_div(n, step)
    tiles = min(step, n) * grid[0] * grid[1]
    padded = tiles * (m + 2) ** 2 * c  # the chunk's input in its zero border, at most
    v, prod = positions * tiles * c, positions * tiles * k
    into = max(padded + v, 3 * v)  # gathered tiles, then half transformed, then V
    back = (m + 2) * m * tiles * k + m * m * tiles * k  # half transformed, then Y
    chunk = max(into, v + prod + back)  # one chunk at a time: _winograd frees each
    if chunks > 1:  # but a freed buffer is reused only by one that fits in it: measured
        chunk += max(prod, v)  # (F2, 4 chunks of 32->128 channels) up to one product more
    tiled = n * k * grid[0] * m * grid[1] * m
    cropped = n * k * p * q if p % m or q % m else 0
    # The cropped copy is made after the last chunk's buffers are freed.
    need = (positions * k * cg + tiled + max(cropped, chunk)) * itemsize
    return need, (f"its transformed tiles and kernels ({positions} positions x channels) "
                  "and the output")


def _register(m: int):
    @register_backend(
        name=f"winograd-f{m}",
        devices=("cpu", "cuda"),
        dtypes=(torch.float32, torch.float64),
        exact=False,
        error_model=f"winograd-f{m}",
        # Stride and dilation are outside the method whatever the kernel: declared as
        # features (what `python -m impls list` shows); the 3x3 kernel is accepts' to refuse.
        features=FEATURES - {"stride", "dilation"},
        accepts=accepts,
        workspace=lambda *problem: workspace(m, *problem),
        description=f"Winograd F({m}x{m}, 3x3): GEMM tile transforms, one batched GEMM "
                    f"over the {(m + 2) ** 2} transform positions",
    )
    def winograd_conv2d(input, weight, bias, stride, padding, dilation, groups):
        return _winograd(m, input, weight, bias, padding, groups)

    return winograd_conv2d


winograd_f2 = _register(2)
winograd_f4 = _register(4)
