"""The Triton kernel behind the ``triton`` backend: an implicit-GEMM forward conv2d.

Why a module of its own: ``triton.jit`` decides when a function is *decorated* whether it
becomes a GPU kernel or a CPU-interpreter function (TRITON_INTERPRET=1). So this module
imports Triton at load and must be imported only lazily, by impls/builtin/triton_conv.py on
the first call, after the environment is settled. ``import impls`` must never import it.
It holds no launch logic (shapes, layouts, grid, the TF32 decision): that is triton_conv.py's.
Beside the conv kernel: ``transpose_kernel``, the copy between NCHW and the channels_last
layout every kernel here reads and writes.
The gradient kernels are in _triton_backward.py (the input gradient reuses GPU_CONFIGS).

The GEMM view, per group g (a grid axis):
    M = N*P*Q output pixels (rows),  N_gemm = K/g output channels (columns),
    K_gemm = C/g*R*S reduction, ordered (r, s, c) with c innermost.
No im2col buffer exists: each A tile is gathered straight from the input with computed
pointers, and zero padding is a load mask. The launcher hands over channels_last input,
weight and output, so c (the innermost reduction index) is the unit-stride axis of both
operands and k that of the output tile: loads and stores vectorise, and Triton's stride-1
specialisation makes that visible to the compiler. Strides are still passed for every
tensor, so any layout computes the right answer (only slower).

Two reduction loops, picked by the FLAT_K constexpr:
  * FLAT_K=False: one loop over (r, s, channel block), r and s scalars per step. Cheap address
    math; the choice when C/g fills a BLOCK_K tile (every ResNet 3x3 and 1x1 layer).
  * FLAT_K=True: C/g*R*S flattened, (r, s, c) recovered per element with div/mod. Used when
    C/g is small (the 3-channel stem, depthwise), where a channel block would be mostly mask.
Both are a single loop, so the software pipeliner (num_stages) sees the whole reduction.

Precision: fp32 accumulation always; the output is cast to the input dtype; the bias is added
in fp32 in the epilogue. INPUT_PRECISION ("ieee" or "tf32") only matters for float32 inputs.

Two names: ``conv2d_fwd_kernel`` is the plain @triton.jit function, which
tests/test_triton_aot.py compiles ahead of time for every entry of GPU_CONFIGS (in a process
without TRITON_INTERPRET); ``conv2d_fwd`` is its autotuned wrapper, the one launched.
"""

from __future__ import annotations

import os
import zlib

import triton
import triton.language as tl

#: Read once, like triton.jit itself does at decoration time.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
#: CONVBENCH_TRITON_CONFIGS=rotate (tests/conftest.py sets it): one configuration per
#: problem, chosen from the problem's key, instead of compiling and timing them all. The
#: test suite checks answers, not speed, and autotuning its ~370 GPU problems would compile
#: ~3,700 kernels and time each (most of a lent GPU's minutes); rotating still runs every
#: configuration somewhere in the suite. Read at import, like TRITON_INTERPRET; sweeps and
#: users autotune as usual.
ROTATE = os.environ.get("CONVBENCH_TRITON_CONFIGS") == "rotate"

#: Tile configurations for the GPU autotuner: (BLOCK_M, BLOCK_N, BLOCK_K, num_warps, num_stages).
#: Every one must compile and fit shared memory on sm_80 (163 KB) and sm_90 (227 KB) in all
#: dtypes, float32 included (4-byte tiles): tests/test_triton_aot.py checks exactly this list.
#: Shared memory per stage is (BLOCK_M + BLOCK_N) * BLOCK_K * itemsize.
GPU_CONFIGS = (
    (128, 128, 32, 4, 4),   # the all-rounder for K/g >= 128 (ResNet stages 2-4)
    (128, 128, 64, 8, 2),   # deeper K steps for 2-byte dtypes, half the loop trips
    (128, 64, 32, 4, 4),    # K/g = 64 layers (ResNet stage 1) with large M
    (64, 128, 32, 4, 4),    # small M (7x7 images, small batch), wide K
    (128, 256, 32, 8, 3),   # K/g >= 256 with large M: most reuse per loaded byte
    (256, 64, 32, 8, 3),    # very large M, narrow K
    (64, 64, 32, 4, 4),     # small problems: more programs to fill 132 SMs
    (64, 32, 32, 2, 4),     # K/g <= 32 (depthwise, grouped): little N waste
)

#: Tiles for 2-byte dtypes only (fp16, bf16), added to the forward's autotuning for them:
#: BLOCK_K 64 makes each row's load a whole 128-byte line and is the K step Hopper's wgmma
#: wants for 16-bit operands (the tiles of Triton's own H100 matmul configurations). In
#: float32 they would need up to 288 KB of shared memory, so they are pruned for it
#: (``half_types_only``); tests/test_triton_aot.py checks them in the half types.
#: Added after the H100 run of 2026-11-26, where bfloat16 was at 0.62-0.76x of cuDNN on the 3x3
#: layers; timed on the H100 of 2026-11-27 (reports/results/gpu/2026-11-27-h100/probe.md, every
#: configuration per layer): they won three of the four ResNet-50 3x3 layers (128x128x64 with 8
#: warps on 28x28 and 14x14, 64x128x64 on 7x7). A 128x128x64 tile with 4 warps and 4 stages was
#: tried there too and never came near the best: dropped.
GPU_CONFIGS_16BIT = (
    (128, 128, 64, 8, 3),   # K/g >= 128
    (128, 256, 64, 8, 3),   # K/g >= 256 with large M
    (128, 64, 64, 4, 4),    # K/g = 64 (ResNet stage 1, its 1x1 layers)
    (64, 128, 64, 4, 4),    # small M (ResNet stages 3-4 at 14x14 and 7x7): more programs
    (64, 64, 64, 4, 4),     # fewest rows and columns: 128x128 tiles leave SMs idle there
)

#: The interpreter cannot time anything, so autotuning there is meaningless (and slow): it
#: gets one tile. Its cost is per program step (~40 interpreted ops, int32-overflow-checked),
#: nearly independent of tile size, so the tile is as large as small test shapes allow while
#: still crossing tile edges in M, N and K (tests use M > 64, K/g and C/g > 32).
INTERPRETER_CONFIGS = ((64, 32, 32, 1, 1),)

#: Tiles handed out in GROUP_M-row bands so consecutive programs share weight columns in L2.
GROUP_M = 8


def _triton_configs(table) -> list[triton.Config]:
    return [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn, "BLOCK_K": bk},
                          num_warps=warps, num_stages=stages)
            for bm, bn, bk, warps, stages in table]


def rotation(key: list[str]):
    """The autotuner's pruning hook under ROTATE: the one configuration this problem (its
    ``key`` arguments and tensor dtypes) maps to, the same in every process."""
    def pick(configs, named_args, **kwargs):
        args = {**named_args, **kwargs}
        problem = [args.get(name) for name in key]
        problem += [str(v.dtype) for v in args.values() if hasattr(v, "dtype")]
        return [configs[zlib.crc32(repr(problem).encode()) % len(configs)]]

    return pick


def half_types_only(sized_for_2_bytes: list[triton.Config]):
    """The pruning hook that keeps ``sized_for_2_bytes`` out of problems whose input has
    wider elements (float32: they would not fit shared memory)."""
    narrow = {id(c) for c in sized_for_2_bytes}

    def prune(configs, named_args, **kwargs):
        if {**named_args, **kwargs}["x_ptr"].element_size() <= 2:
            return configs
        return [c for c in configs if id(c) not in narrow]

    return prune


def autotuned(kernel, configs: list[triton.Config], key: list[str], prune=None):
    """``triton.autotune(configs, key)(kernel)``, with ``prune`` (configs, named_args,
    **kwargs) -> configs as its pruning hook; under ROTATE, one configuration per problem
    out of those ``prune`` keeps, and nothing timed (Triton 3.6 still times a lone pruned
    configuration: not with this)."""
    if not ROTATE or len(configs) == 1:
        hook = {} if prune is None else {"prune_configs_by": {"early_config_prune": prune}}
        return triton.autotune(configs=configs, key=key, **hook)(kernel)
    pick = rotation(key)

    def rotate(configs, named_args, **kwargs):
        kept = configs if prune is None else prune(configs, named_args, **kwargs)
        return pick(kept, named_args, **kwargs)

    return triton.autotune(configs=configs, key=key,
                           prune_configs_by={"early_config_prune": rotate},
                           do_bench=lambda kernel_call, quantiles: [0.0] * len(quantiles),
                           )(kernel)


@triton.jit
def grouped_tile(pid, num_pid_m, num_pid_n, GROUP_M: tl.constexpr):
    """Program ``pid``'s (row tile, column tile) in grouped order: GROUP_M row tiles walk down
    one column band before moving right, so neighbouring programs share the column operand's
    tile and their rows' inputs in L2 (Triton's matmul tutorial). Every kernel here uses it."""
    pids_per_band = GROUP_M * num_pid_n
    first_m = (pid // pids_per_band) * GROUP_M
    band_m = min(num_pid_m - first_m, GROUP_M)
    return first_m + (pid % pids_per_band) % band_m, (pid % pids_per_band) // band_m


@triton.jit
def conv2d_fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr,
    M, H, W, P, Q, CG, KG,
    sxn, sxc, sxh, sxw,
    swk, swc, swr, sws,
    syn, syk, syp, syq,
    stride_h, stride_w, pad_h, pad_w, dil_h, dil_w,
    R: tl.constexpr, S: tl.constexpr,
    HAS_BIAS: tl.constexpr, INPUT_PRECISION: tl.constexpr, FLAT_K: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr,
):
    """One BLOCK_M x BLOCK_N output tile of group program_id(1)."""
    g = tl.program_id(1)
    pid_m, pid_n = grouped_tile(tl.program_id(0), tl.cdiv(M, BLOCK_M), tl.cdiv(KG, BLOCK_N),
                                GROUP_M)

    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    mask_m = offs_m < M
    mask_n = offs_n < KG
    # Output pixel m -> (n, p, q); the top-left input tap of its window is (h0, w0).
    q = offs_m % Q
    p = (offs_m // Q) % P
    n = offs_m // (P * Q)
    h0 = p * stride_h - pad_h
    w0 = q * stride_w - pad_w
    # The batch term in int64: N*C*H*W may pass 2**31 when a single image does not.
    x_rows = x_ptr + n.to(tl.int64) * sxn + g * CG * sxc
    k_abs = g * KG + offs_n
    w_cols = w_ptr + k_abs * swk

    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    if FLAT_K:
        k_total = CG * R * S
        for k0 in range(0, k_total, BLOCK_K):
            kk = k0 + offs_k
            c = kk % CG
            rs = kk // CG
            r = rs // S
            s = rs % S
            mask_k = kk < k_total
            h = h0[:, None] + (r * dil_h)[None, :]
            w = w0[:, None] + (s * dil_w)[None, :]
            inside = (h >= 0) & (h < H) & (w >= 0) & (w < W)
            a = tl.load(x_rows[:, None] + h * sxh + w * sxw + (c * sxc)[None, :],
                        mask=mask_m[:, None] & mask_k[None, :] & inside, other=0.0)
            b = tl.load(w_cols[None, :] + (c * swc + r * swr + s * sws)[:, None],
                        mask=mask_k[:, None] & mask_n[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)
    else:
        c_blocks = tl.cdiv(CG, BLOCK_K)
        for step in range(0, R * S * c_blocks):
            rs = step // c_blocks
            c = (step % c_blocks) * BLOCK_K + offs_k
            r = rs // S
            s = rs % S
            h = h0 + r * dil_h
            w = w0 + s * dil_w
            inside = mask_m & (h >= 0) & (h < H) & (w >= 0) & (w < W)
            mask_c = c < CG
            a = tl.load((x_rows + h * sxh + w * sxw)[:, None] + (c * sxc)[None, :],
                        mask=inside[:, None] & mask_c[None, :], other=0.0)
            b = tl.load(w_cols[None, :] + (c * swc + r * swr + s * sws)[:, None],
                        mask=mask_c[:, None] & mask_n[None, :], other=0.0)
            acc = tl.dot(a, b, acc, input_precision=INPUT_PRECISION)

    if HAS_BIAS:
        acc += tl.load(b_ptr + k_abs, mask=mask_n, other=0.0).to(tl.float32)[None, :]
    y_rows = y_ptr + n.to(tl.int64) * syn + p * syp + q * syq
    tl.store(y_rows[:, None] + (k_abs * syk)[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=mask_m[:, None] & mask_n[None, :])


#: Tile of the layout copies (transpose_kernel), in elements (8 KB in bfloat16), and warps.
TRANSPOSE_TILE, TRANSPOSE_WARPS = 4096, 4


@triton.jit
def transpose_kernel(x_ptr, y_ptr, N_ROWS, N_COLS, tiles_cols,
                     BLOCK_R: tl.constexpr, BLOCK_C: tl.constexpr):
    """y[n, c, r] = x[n, r, c] for one BLOCK_R x BLOCK_C tile of matrix program_id(0) //
    tiles_cols, both contiguous: NCHW to channels_last is rows = C, cols = H*W; back, rows
    = H*W, cols = C.

    Why a kernel: torch's eager copy for these permutations reads or writes with a large
    stride (its elementwise kernel cannot coalesce both sides of a transpose; pytorch
    issue 113560): the H100 timed it at 0.6 TB/s. Here each side is coalesced on its own
    unit stride: the load's layout runs along the columns, the store's along the rows, and
    Triton's coalescing pass converts between the two through shared memory, as Inductor's
    transposes do."""
    pid = tl.program_id(0)
    n = pid // tiles_cols
    col = (pid % tiles_cols) * BLOCK_C + tl.arange(0, BLOCK_C)
    row = tl.program_id(1) * BLOCK_R + tl.arange(0, BLOCK_R)
    mask = (row[:, None] < N_ROWS) & (col[None, :] < N_COLS)
    matrix = n.to(tl.int64) * N_ROWS * N_COLS  # one matrix fits int32 offsets; the batch may not
    tile = tl.load(x_ptr + matrix + row[:, None] * N_COLS + col[None, :], mask=mask)
    tl.store(y_ptr + matrix + col[None, :] * N_ROWS + row[:, None], tile, mask=mask)


#: What the launcher calls. The key is the problem shape (the autotuner adds the tensors'
#: dtypes itself); FLAT_K and INPUT_PRECISION are constexprs, so each value compiles apart.
_FWD_16BIT = [] if INTERPRET else _triton_configs(GPU_CONFIGS_16BIT)
conv2d_fwd = autotuned(
    conv2d_fwd_kernel,
    _triton_configs(INTERPRETER_CONFIGS if INTERPRET else GPU_CONFIGS) + _FWD_16BIT,
    key=["M", "CG", "KG", "H", "W", "R", "S", "stride_h", "stride_w", "dil_h", "dil_w"],
    prune=half_types_only(_FWD_16BIT) if _FWD_16BIT else None)
