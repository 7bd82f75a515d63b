"""The Triton kernels behind the ``triton`` backend's gradients: data, weight and bias.

Like impls/builtin/_triton_kernels.py (read its docstring first), this module imports Triton
at load and is imported only lazily by impls/builtin/triton_conv.py, which owns every launch
decision (layouts, grids, the split-K factor, precision). Nothing here calls torch's conv.
All tensors arrive channels_last, so channels are the unit-stride axis; accumulation is fp32.

Data gradient (``conv2d_dgrad_kernel``), a transposed conv as an implicit GEMM per group:
    M = input pixels, N_gemm = C/g input channels, K_gemm = K/g*R*S ordered (r, s, k).
Input row h receives output row p through tap r when h + pad - r*dil = p*stride. With
stride > 1 most (pixel, tap) pairs fail that divisibility, so instead of masking them lane by
lane the pixels are split into stride_h*stride_w phases (h % stride, w % stride), one phase
per program (CUTLASS's strided dgrad): within a phase divisibility depends on the tap only,
so a program visits just the valid taps, r = r0, r0 + step_r, ..., and the reduction
shrinks by the stride product (4x on a stride-2 layer; a 1x1 stride-2 layer leaves 3 of 4
phases with no tap at all: those tiles store zeros). Stride 1 is one phase with every tap.
The FLAT_K choice is the forward's: a loop over (tap, k block), or flattened (tap, k) when
K/g is small (depthwise).

Weight gradient (``conv2d_wgrad_kernel``), per group:
    M = K/g output channels, N_gemm = C/g*R*S columns ordered (r, s, c), K_gemm = N*P*Q.
A column's (r, s, c) is fixed per program, so its div/mod is paid once, not per step. The
reduction over pixels is long (100k on a ResNet stage-1 layer at batch 32) while the output
is small (64 x 576 there: 5 tiles), so it is split: program_id(2) takes CHUNK pixels and
writes an fp32 partial to a workspace [split, K, columns]; ``wgrad_reduce_kernel`` then sums
the partials in split order and casts. Chosen over fp32 atomics because it is deterministic
(the same bits on every run, which a correctness harness wants, and the autotuner may rerun
a launch freely), at the price of the workspace, which the launcher caps.

Bias gradient (``bias_partial_kernel``): per split, a column sum of the output gradient over
the same CHUNK of pixels, written to one extra workspace column, so the same reduce pass
finishes both gradients.
"""

from __future__ import annotations

import triton
import triton.language as tl

from impls.builtin._triton_kernels import (
    GPU_CONFIGS,
    INTERPRET,
    _triton_configs,
    autotuned,
    grouped_tile,
)

#: Data gradient: the forward's GEMM shape (pixels x channels x channels*taps), so its tiles.
DGRAD_GPU_CONFIGS = GPU_CONFIGS
#: Weight gradient: (BLOCK_M over K/g, BLOCK_N over C/g*R*S, BLOCK_K over pixels, warps,
#: stages). Shared memory per stage is again (BLOCK_M + BLOCK_N) * BLOCK_K * itemsize.
WGRAD_GPU_CONFIGS = (
    (128, 128, 32, 4, 4),   # K/g >= 128 (ResNet stages 2-4)
    (128, 128, 64, 8, 3),   # the same with half the loop trips (2-byte dtypes)
    (64, 128, 32, 4, 4),    # K/g = 64 (ResNet stage 1)
    (128, 64, 32, 4, 4),    # few columns: 1x1 layers with C/g = 64
    (64, 64, 64, 4, 3),     # small layers
    (32, 32, 64, 2, 4),     # grouped
    (16, 16, 128, 2, 3),    # depthwise: K/g = 1 row, C/g*R*S = 9 columns
)
#: Under the interpreter one tile each, as for the forward: tests cross every edge of it.
DGRAD_INTERPRETER_CONFIGS = ((64, 32, 32, 1, 1),)
WGRAD_INTERPRETER_CONFIGS = ((32, 64, 64, 1, 1),)
#: Fixed tiles of the memory-bound passes (no dot): pixels x channels, and elements.
BIAS_BLOCK_P, BIAS_BLOCK_C = 64, 32
REDUCE_BLOCK = 512
#: Largest BLOCK_K of the weight kernel: split chunks are multiples of it.
MAX_WGRAD_BLOCK_K = max(cfg[2] for cfg in WGRAD_GPU_CONFIGS + WGRAD_INTERPRETER_CONFIGS)


@triton.jit
def conv2d_dgrad_kernel(
    dy_ptr, w_ptr, dx_ptr,
    N, H, W, P, Q, CG, KG, HP, WP,
    sdn, sdk, sdp, sdq,
    swk, swc, swr, sws,
    sxn, sxc, sxh, sxw,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, step_r, step_s,
    R: tl.constexpr, S: tl.constexpr,
    INPUT_PRECISION: tl.constexpr, FLAT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """One BLOCK_M x BLOCK_N tile of the input gradient: pixels of one stride phase."""
    num_pid_m = tl.cdiv(N * HP * WP, BLOCK_M)  # the largest phase, (0, 0), sizes the grid
    num_pid_n = tl.cdiv(CG, BLOCK_N)
    tiles = num_pid_m * num_pid_n
    phase = tl.program_id(0) // tiles
    pid = tl.program_id(0) % tiles
    g = tl.program_id(1)
    pid_m, pid_n = grouped_tile(pid, num_pid_m, num_pid_n, GROUP_M)

    # This phase's pixels: h = ph + i*stride_h, w = pw + j*stride_w.
    ph = phase // stride_w
    pw = phase % stride_w
    hp = tl.cdiv(H - ph, stride_h)
    wp = tl.cdiv(W - pw, stride_w)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < N * hp * wp
    mask_n = offs_n < CG
    hp = max(hp, 1)  # an empty phase (H < stride) has every lane masked; avoid x / 0
    wp = max(wp, 1)
    j = offs_m % wp
    i = (offs_m // wp) % hp
    n = offs_m // (hp * wp)
    # First valid tap of the phase; valid taps repeat every step_r = stride/gcd(stride, dil),
    # so if there is one, there is one below step_r. R (none) when the phase has no tap.
    r0 = R
    for t in range(0, step_r):
        r0 = min(r0, tl.where((ph + pad_h - t * dil_h) % stride_h == 0, t, R))
    s0 = S
    for t in range(0, step_s):
        s0 = min(s0, tl.where((pw + pad_w - t * dil_w) % stride_w == 0, t, S))
    n_r = tl.cdiv(R - r0, step_r)
    n_s = tl.cdiv(S - s0, step_s)

    dy_rows = dy_ptr + n.to(tl.int64) * sdn + g * KG * sdk
    w_cols = w_ptr + g * KG * swk + offs_n * swc
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if FLAT_K:
        k_total = n_r * n_s * KG
        for k0 in range(0, k_total, BLOCK_K):
            kk = k0 + offs_k
            k = kk % KG
            tap = kk // KG
            r = r0 + (tap // n_s) * step_r
            s = s0 + (tap % n_s) * step_s
            mask_k = kk < k_total
            # Exact divisions for every unmasked lane (the phase guarantees it).
            p = i[:, None] + ((ph + pad_h - r * dil_h) // stride_h)[None, :]
            q = j[:, None] + ((pw + pad_w - s * dil_w) // stride_w)[None, :]
            inside = (p >= 0) & (p < P) & (q >= 0) & (q < Q)
            a = tl.load(dy_rows[:, None] + p * sdp + q * sdq + (k * sdk)[None, :],
                        mask=mask_m[:, None] & mask_k[None, :] & inside, other=0.0)
            b = tl.load(w_cols[None, :] + (k * swk + r * swr + s * sws)[:, None],
                        mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    else:
        k_blocks = tl.cdiv(KG, BLOCK_K)
        for step in range(0, n_r * n_s * k_blocks):
            tap = step // k_blocks
            k = (step % k_blocks) * BLOCK_K + offs_k
            r = r0 + (tap // n_s) * step_r
            s = s0 + (tap % n_s) * step_s
            p = i + (ph + pad_h - r * dil_h) // stride_h
            q = j + (pw + pad_w - s * dil_w) // stride_w
            inside = mask_m & (p >= 0) & (p < P) & (q >= 0) & (q < Q)
            mask_k = k < KG
            a = tl.load((dy_rows + p * sdp + q * sdq)[:, None] + (k * sdk)[None, :],
                        mask=inside[:, None] & mask_k[None, :], other=0.0)
            b = tl.load(w_cols[None, :] + (k * swk + r * swr + s * sws)[:, None],
                        mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    dx_rows = dx_ptr + n.to(tl.int64) * sxn + (ph + i * stride_h) * sxh + (pw + j * stride_w) * sxw
    tl.store(dx_rows[:, None] + ((g * CG + offs_n) * sxc)[None, :],
             acc.to(dx_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def conv2d_wgrad_kernel(
    x_ptr, dy_ptr, ws_ptr,
    NPQ, CHUNK, H, W, P, Q, CG, KG, COLS, WS_COLS, WS_SPLIT,
    sxn, sxc, sxh, sxw,
    sdn, sdk, sdp, sdq,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    R: tl.constexpr, S: tl.constexpr, INPUT_PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """One BLOCK_M x BLOCK_N fp32 partial of the weight gradient over one pixel chunk."""
    g = tl.program_id(1)
    split = tl.program_id(2)
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(KG, BLOCK_M), tl.cdiv(COLS, BLOCK_N),
                                GROUP_M)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < KG
    mask_n = offs_n < COLS
    # Column -> (r, s, c), once per program; the tap's offset into the input window.
    c = offs_n % CG
    rs = offs_n // CG
    dh = (rs // S) * dil_h
    dw = (rs % S) * dil_w
    x_cols = x_ptr + (g * CG + c) * sxc + dh * sxh + dw * sxw
    dy_rows = dy_ptr + (g * KG + offs_m) * sdk

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    start = split * CHUNK
    end = min(start + CHUNK, NPQ)
    for k0 in range(start, end, BLOCK_K):
        pix = k0 + offs_k
        mask_k = pix < end
        q = pix % Q
        p = (pix // Q) % P
        n = (pix // (P * Q)).to(tl.int64)
        a = tl.load(dy_rows[:, None] + (n * sdn + p * sdp + q * sdq)[None, :],
                    mask=mask_m[:, None] & mask_k[None, :], other=0.0)
        h = (p * stride_h - pad_h)[:, None] + dh[None, :]
        w = (q * stride_w - pad_w)[:, None] + dw[None, :]
        inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
        x_rows = n * sxn + (p * stride_h - pad_h) * sxh + (q * stride_w - pad_w) * sxw
        b = tl.load(x_cols[None, :] + x_rows[:, None],
                    mask=mask_k[:, None] & mask_n[None, :] & inside, other=0.0)
        acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    ws = ws_ptr + split.to(tl.int64) * WS_SPLIT + (g * KG + offs_m) * WS_COLS
    tl.store(ws[:, None] + offs_n[None, :], acc, mask=mask_m[:, None] & mask_n[None, :])


@triton.jit
def bias_partial_kernel(dy_ptr, ws_ptr, NPQ, CHUNK, K, P, Q, sdn, sdk, sdp, sdq,
                        COL, WS_COLS, WS_SPLIT,
                        BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """Sum of the output gradient over one pixel chunk, for BLOCK_C channels, into column COL."""
    offs_c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    split = tl.program_id(1)
    mask_c = offs_c < K
    acc = tl.zeros((BLOCK_C,), dtype=tl.float32)
    start = split * CHUNK
    end = min(start + CHUNK, NPQ)
    for p0 in range(start, end, BLOCK_P):
        pix = p0 + tl.arange(0, BLOCK_P)
        q = pix % Q
        p = (pix // Q) % P
        n = (pix // (P * Q)).to(tl.int64)
        tile = tl.load(dy_ptr + (n * sdn + p * sdp + q * sdq)[:, None] + (offs_c * sdk)[None, :],
                       mask=(pix < end)[:, None] & mask_c[None, :], other=0.0)
        acc += tl.sum(tile.to(tl.float32), axis=0)
    tl.store(ws_ptr + split.to(tl.int64) * WS_SPLIT + offs_c * WS_COLS + COL, acc, mask=mask_c)


@triton.jit
def wgrad_reduce_kernel(ws_ptr, gw_ptr, gb_ptr, SPLIT, K, COLS, WS_COLS, CG, S,
                        swk, swc, swr, sws, BLOCK: tl.constexpr):
    """Sum the split partials in split order (deterministic); cast; scatter to the weight
    gradient's layout (columns < COLS) and to the bias gradient (column COLS, if any)."""
    e = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    total = K * WS_COLS
    mask = e < total
    acc = tl.zeros((BLOCK,), dtype=tl.float32)
    partial = ws_ptr + e
    for _ in range(0, SPLIT):
        acc += tl.load(partial, mask=mask, other=0.0)
        partial += total  # a pointer step: no int32 product split * total to overflow
    row = e // WS_COLS
    col = e % WS_COLS
    c = col % CG
    rs = col // CG
    out = gw_ptr + row * swk + c * swc + (rs // S) * swr + (rs % S) * sws
    tl.store(out, acc.to(gw_ptr.dtype.element_ty), mask=mask & (col < COLS))
    tl.store(gb_ptr + row, acc.to(gb_ptr.dtype.element_ty), mask=mask & (col == COLS))


_KEY = ["CG", "KG", "H", "W", "R", "S", "stride_h", "stride_w", "dil_h", "dil_w"]
conv2d_dgrad = autotuned(
    conv2d_dgrad_kernel,
    _triton_configs(DGRAD_INTERPRETER_CONFIGS if INTERPRET else DGRAD_GPU_CONFIGS),
    key=["N", *_KEY])
conv2d_wgrad = autotuned(
    conv2d_wgrad_kernel,
    _triton_configs(WGRAD_INTERPRETER_CONFIGS if INTERPRET else WGRAD_GPU_CONFIGS),
    key=["NPQ", "CHUNK", *_KEY])
