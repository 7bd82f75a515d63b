"""``triton``: a hand-written implicit-GEMM conv2d kernel in Triton (CUDA; CPU via interpreter).

Why it exists: the one backend whose GPU kernel is ours, so its speed against cuDNN measures
our own code. The forward kernel lives in impls/builtin/_triton_kernels.py, the gradient
kernels in impls/builtin/_triton_backward.py; this file registers the backend and launches
them (layouts, allocation, grids, the weight gradient's split, precision). Autograd reaches
them through :class:`TritonConv2dFunction`: no gradient is computed by torch's convolution.

What it must not do: import Triton at load. ``import impls`` works without Triton or a GPU;
the probe reports why the backend cannot run, and the kernel module is imported on the first
call. TRITON_INTERPRET is read here once, at registration: with TRITON_INTERPRET=1 (set before
importing impls) the kernel runs on the CPU interpreter and the backend lists "cpu" as a device,
takes only small cases (``max_macs``), and drops bfloat16 (the interpreter has no bf16 dot).

Float32 precision: one torch setting governs both cuDNN and this kernel, read per call.
``torch.backends.cudnn.allow_tf32`` True (torch's default) -> TF32 tensor-core dots
(``input_precision="tf32"``), like cuDNN; False -> strict IEEE fp32 dots ("ieee"). So a
benchmark that sets and records that flag has both backends at the same precision. float16
and bfloat16 always run tensor-core dots with fp32 accumulation; the output is cast back.

Layout: the kernels compute channels_last and return channels_last outputs and input
gradients (the values and shape of F.conv2d's); NCHW operands are copied first, see
:func:`conv2d_forward` for why. The weight gradient takes the weight's own layout.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os

import torch

from impls.builtin import _scratch
from impls.builtin._first_order import first_order
from impls.builtin._triton_launch import launch
from impls.frontend import NormalizedCall, output_size, result_format
from impls.registry import register_backend

#: Decided at registration, because the kernel module's triton.jit decides at import.
INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

#: The interpreter costs ~10 ms per program step, so ~0.1 s per million multiply-adds on
#: a dense conv but ~2 s on a depthwise one (a program per group and pixel tile, mostly
#: masked lanes). Bigger checker cases are skipped with that reason instead of running
#: for minutes; 4M admits every case of impls.cases that runs in about a second or less.
INTERPRET_MAX_MACS = 4_000_000

#: Below this many channels per group the reduction is flattened over (r, s, c): a channel
#: block of the smallest GPU BLOCK_K (32) would otherwise be mostly masked lanes.
FLAT_K_BELOW = 32

_NO_DEVICE = ("no CUDA device: its timings need a GPU (README, section GPU); "
              "TRITON_INTERPRET=1 set before importing impls runs the kernel on the CPU "
              "interpreter, for tests on tiny shapes, not for timing")


def _probe() -> str:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'convbench[triton]')"
    if not INTERPRET and not torch.cuda.is_available():
        return _NO_DEVICE  # before importing triton: `python -m impls list` stays quick
    try:
        import triton
    except Exception as exc:
        return f"triton is not importable: {type(exc).__name__}: {exc}"
    return _interpreter_gap(triton.__version__) if INTERPRET else ""


def _interpreter_gap(triton_version: str) -> str:
    """Why this Triton's interpreter cannot run here, or "". Triton < 3.7 turns a kernel's
    runtime scalars into Python ints with int() on 1-element arrays (a loop bound over a
    runtime size, as every conv has), which NumPy 2.4 made an error: each launch would
    fail with "only 0-dimensional arrays can be converted to Python scalars"."""
    import numpy

    def version(text: str) -> tuple[int, int]:
        major, minor = (text.split("+")[0].split(".") + ["0"])[:2]
        return int(major), int("".join(ch for ch in minor if ch.isdigit()) or 0)

    if version(triton_version) < (3, 7) and version(numpy.__version__) >= (2, 4):
        return (f"triton {triton_version}'s interpreter cannot run with NumPy "
                f"{numpy.__version__} (it needs triton >= 3.7 or NumPy < 2.4); on a GPU the "
                "compiled kernel is unaffected")
    return ""


def _kernels():
    """The kernel module, imported on first use (after TRITON_INTERPRET is settled)."""
    module = importlib.import_module("impls.builtin._triton_kernels")
    if module.INTERPRET != INTERPRET:
        # triton.jit saw a different TRITON_INTERPRET than our registration did: the declared
        # devices would lie about where the kernel runs.
        raise RuntimeError("TRITON_INTERPRET changed between importing impls and the first "
                           "triton call; set it before importing impls")
    return module


def fp32_input_precision() -> str:
    """"tf32" or "ieee" for float32 dots, following cuDNN's conv setting (see module doc)."""
    try:
        return "tf32" if torch.backends.cudnn.allow_tf32 else "ieee"
    except RuntimeError:
        # torch >= 2.9 refuses to answer when the new per-op fp32_precision API set conv and
        # RNN differently; the conv flag is then the one that governs cuDNN convolutions.
        return "tf32" if torch.backends.cudnn.conv.fp32_precision == "tf32" else "ieee"


def workspace(input_shape, weight_shape, stride, padding, dilation, groups, itemsize):
    """Bytes a forward call allocates beyond its inputs (impls.memory_budget): the
    channels_last copies of an NCHW input and weight, the kernel's channels_last output and
    its copy into F.conv2d's layout (all four alive at once, at the last copy). Operands
    already channels_last need less: the model is for the common NCHW call."""
    (n, c, h, w), (k, cg, r, s) = input_shape, weight_shape
    p, q = output_size((h, w), (r, s), stride, padding, dilation)
    need = (n * c * h * w + k * cg * r * s + 2 * n * k * p * q) * itemsize
    return need, "channels_last copies of the input and weight, the output in both layouts"


@register_backend(
    name="triton",
    devices=("cuda", "cpu") if INTERPRET else ("cuda",),
    dtypes=((torch.float32, torch.float16) if INTERPRET
            else (torch.float32, torch.float16, torch.bfloat16)),
    features=frozenset({"stride", "padding", "dilation", "groups", "bias", "autograd"}),
    exact=True,
    error_model="direct",
    probe=_probe,
    max_macs=INTERPRET_MAX_MACS if INTERPRET else None,
    workspace=workspace,
    description="hand-written implicit-GEMM Triton kernel (CPU: TRITON_INTERPRET=1)",
)
def triton_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """conv2d by the Triton kernels on already-normalised arguments, differentiable in
    input, weight and bias (the gradients are Triton kernels too). Without a gradient to
    record it launches directly: autograd's Function costs ~6 us a call for nothing then.
    Not inside forward-mode AD, whose tangents the Function refuses (no jvp) rather than
    drop."""
    if _scratch.tracked(input, weight, bias):
        return TritonConv2dFunction.apply(input, weight, bias, stride, padding, dilation,
                                          groups)
    return conv2d_forward(input, weight, bias, stride, padding, dilation, groups)


def check_dtype(dtype: torch.dtype) -> None:
    if INTERPRET and dtype == torch.bfloat16:
        # The interpreter does not raise on a bf16 dot: it returns garbage. Refuse instead.
        raise NotImplementedError("the Triton interpreter has no bfloat16 dot")


def conv2d_forward(input, weight, bias, stride, padding, dilation, groups, *,
                   flat_k: bool | None = None) -> torch.Tensor:
    """Launch the kernel; ``flat_k`` forces one reduction loop (tests cover both)."""
    kernels = _kernels()
    check_dtype(input.dtype)
    n, _, h, w = input.shape
    k, cg, r, s = weight.shape
    kg = k // groups
    p, q = output_size((h, w), (r, s), stride, padding, dilation)
    # Everything channels_last (channel innermost), what F.conv2d itself returns for a
    # channels_last weight. Loads: the reduction runs over c fastest, so both tile loads are
    # unit-stride vectors. Store: a tile row is BLOCK_N consecutive channels; an NCHW output
    # tile would be 32 channel planes per warp, uncoalesced, and its per-element pointers
    # spill registers (tests/test_triton_aot.py reports spills). An NCHW operand costs a
    # copy (:func:`channels_last`; none when it is channels_last already): pass
    # channels_last tensors to benchmark the kernel alone.
    out = torch.empty((n, k, p, q), device=input.device, dtype=input.dtype,
                      memory_format=torch.channels_last)
    if out.numel() == 0:
        return out
    x, wt = channels_last(input), channels_last(weight)
    b = bias.contiguous() if bias is not None else out  # an unread placeholder pointer
    m = n * p * q
    flat = cg < FLAT_K_BELOW if flat_k is None else flat_k

    def grid(meta):
        return (-(-m // meta["BLOCK_M"]) * -(-kg // meta["BLOCK_N"]), groups)

    launch(kernels.conv2d_fwd, grid, input.device,
           x, wt, b, out, m, h, w, p, q, cg, kg, *x.stride(), *wt.stride(), *out.stride(),
           *stride, *padding, *dilation,
           R=r, S=s, HAS_BIAS=bias is not None, INPUT_PRECISION=input_precision(input.dtype),
           FLAT_K=flat, GROUP_M=kernels.GROUP_M, grid_args=(groups,))
    return in_format(out, result_format(NormalizedCall(input, weight, bias, stride, padding,
                                                       dilation, groups, False)))


def channels_last(t: torch.Tensor) -> torch.Tensor:
    """``t`` laid out channels_last, as every kernel here takes its operands: ``t`` itself
    when it is, an NCHW-contiguous CUDA tensor by :func:`transpose`, any other layout by
    torch's copy."""
    if t.is_contiguous(memory_format=torch.channels_last):
        return t
    if t.is_cuda and t.is_contiguous() and t.numel():
        return transpose(t, to_channels_last=True)
    return t.contiguous(memory_format=torch.channels_last)


def in_format(out: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """The channels_last ``out`` in F.conv2d's layout ``fmt`` (CUDA: by :func:`transpose`,
    the copy impls.conv2d would otherwise make with torch's: up to half of a 3x3 bfloat16
    layer's time on the H100 of 2026-11-27)."""
    if fmt != torch.contiguous_format or out.is_contiguous():
        return out
    if out.is_cuda and out.numel():
        return transpose(out, to_channels_last=False)
    return out.contiguous()


def transpose(t: torch.Tensor, to_channels_last: bool) -> torch.Tensor:
    """A copy of ``t`` (NCHW-contiguous, or channels_last-contiguous when not
    ``to_channels_last``) in the other layout, by the tiled transpose kernel.

    Why not torch's copy: in the H100 run of 2026-11-26 a triton call's device time grew
    with its NCHW input by about 3.7 us per MB, whatever the layer's arithmetic (most of a
    1x1 layer's time); the probe of 2026-11-27 measured torch's copy of a 51 MB bfloat16
    activation at 177 us, this one at 44 us. Tiles: up to 64 along the
    rows (a store's run), as many columns as fill TRANSPOSE_TILE, at least 16 of each (a
    3x3 weight has 9 "pixels")."""
    kernels = _kernels()
    n, c, h, w = t.shape
    rows, cols = (c, h * w) if to_channels_last else (h * w, c)
    out = torch.empty_like(t, memory_format=torch.channels_last if to_channels_last
                           else torch.contiguous_format)
    block_r = min(max(_pow2_at_least(rows), 16), 64)
    block_c = min(max(_pow2_at_least(cols), 16), kernels.TRANSPOSE_TILE // block_r)
    tiles_cols = -(-cols // block_c)
    launch(kernels.transpose_kernel, (n * tiles_cols, -(-rows // block_r)), t.device,
           t, out, rows, cols, tiles_cols, BLOCK_R=block_r, BLOCK_C=block_c,
           num_warps=kernels.TRANSPOSE_WARPS)
    return out


def _pow2_at_least(x: int) -> int:
    return 1 << max(x - 1, 0).bit_length()


def input_precision(dtype: torch.dtype) -> str:
    """tl.dot's input_precision: the cuDNN flag's choice for float32, else "ieee" (unused)."""
    return fp32_input_precision() if dtype == torch.float32 else "ieee"


# ---- gradients ------------------------------------------------------------------------------

#: Split-K of the weight gradient (see impls/builtin/_triton_backward.py): enough programs to
#: cover every SM twice, each split at least MIN_SPLIT_PIXELS long (so a partial's store and
#: reduction stay small next to its loop; a first guess, not yet tuned on a GPU), the fp32
#: workspace split x K x C/g*R*S at most WORKSPACE_BYTES. Splits are whole largest BLOCK_Ks.
MIN_SPLIT_PIXELS = 512
WORKSPACE_BYTES = 256 << 20
#: The interpreter has no SMs; this only sets how much a big case would be split.
INTERPRET_SMS = 4


class TritonConv2dFunction(torch.autograd.Function):
    """conv2d whose forward and backward are Triton kernels (not twice differentiable)."""

    @staticmethod
    def forward(ctx, input, weight, bias, stride, padding, dilation, groups):
        ctx.save_for_backward(input, weight)
        ctx.conv = (stride, padding, dilation, groups)
        return conv2d_forward(input, weight, bias, stride, padding, dilation, groups)

    @staticmethod
    @first_order
    def backward(ctx, grad_out):
        input, weight = ctx.saved_tensors
        need_input, need_weight, need_bias = ctx.needs_input_grad[:3]
        grad_input = grad_weight = grad_bias = None
        if need_input:
            grad_input = conv2d_backward_data(grad_out, weight, input.shape, *ctx.conv)
        if need_weight or need_bias:
            grad_weight, grad_bias = conv2d_backward_weight(
                grad_out, input, weight, *ctx.conv, weight_grad=need_weight, bias_grad=need_bias)
        return grad_input, grad_weight, grad_bias, None, None, None, None


def _backward_kernels():
    _kernels()  # the same TRITON_INTERPRET check
    return importlib.import_module("impls.builtin._triton_backward")


def conv2d_backward_data(grad_out, weight, input_shape, stride, padding, dilation, groups, *,
                         flat_k: bool | None = None) -> torch.Tensor:
    """The input gradient (channels_last), by the stride-phase dgrad kernel."""
    bwd = _backward_kernels()
    check_dtype(grad_out.dtype)
    n, c, h, w = input_shape
    k, cg, r, s = weight.shape
    kg = k // groups
    grad_input = torch.empty((n, c, h, w), device=grad_out.device, dtype=grad_out.dtype,
                             memory_format=torch.channels_last)
    if grad_input.numel() == 0:
        return grad_input
    dy, wt = channels_last(grad_out), channels_last(weight)
    (sh, sw), (dh, dw) = stride, dilation
    hp, wp = -(-h // sh), -(-w // sw)  # pixels of the largest phase, per axis
    flat = kg < FLAT_K_BELOW if flat_k is None else flat_k

    def grid(meta):
        tiles = -(-(n * hp * wp) // meta["BLOCK_M"]) * -(-cg // meta["BLOCK_N"])
        return (tiles * sh * sw, groups)

    launch(bwd.conv2d_dgrad, grid, grad_out.device,
           dy, wt, grad_input, n, h, w, *dy.shape[2:], cg, kg, hp, wp,
           *dy.stride(), *wt.stride(), *grad_input.stride(), *stride, *padding, *dilation,
           sh // math.gcd(sh, dh), sw // math.gcd(sw, dw),
           R=r, S=s, INPUT_PRECISION=input_precision(dy.dtype), FLAT_K=flat,
           GROUP_M=_kernels().GROUP_M, grid_args=(groups,))
    return grad_input


def conv2d_backward_weight(grad_out, input, weight, stride, padding, dilation, groups, *,
                           weight_grad: bool = True, bias_grad: bool = False,
                           split: int | None = None):
    """(weight gradient in the weight's layout or None, bias gradient or None).

    ``split`` forces the number of pixel chunks (tests cover several); by default it comes
    from :func:`wgrad_split`.
    """
    bwd = _backward_kernels()
    check_dtype(grad_out.dtype)
    n, _, h, w = input.shape
    k, cg, r, s = weight.shape
    kg = k // groups
    p, q = grad_out.shape[2:]
    npq = n * p * q
    device, dtype = grad_out.device, grad_out.dtype
    grad_weight = torch.empty_like(weight, memory_format=torch.preserve_format) \
        if weight_grad else None
    grad_bias = torch.empty(k, device=device, dtype=dtype) if bias_grad else None
    cols = cg * r * s if weight_grad else 0
    ws_cols = cols + int(bias_grad)  # the bias partial is the last workspace column
    if npq == 0 or k * ws_cols == 0:
        return tuple(None if t is None else t.zero_() for t in (grad_weight, grad_bias))
    x, dy = channels_last(input), channels_last(grad_out)
    tiles = groups * -(-kg // 128) * -(-max(cols, 1) // 128)
    split, chunk = wgrad_split(npq, tiles, k * ws_cols * 4, _sm_count(device), split,
                               bwd.MAX_WGRAD_BLOCK_K)
    ws = torch.empty((split, k, ws_cols), device=device, dtype=torch.float32)
    if weight_grad:
        def grid(meta):
            return (-(-kg // meta["BLOCK_M"]) * -(-cols // meta["BLOCK_N"]), groups, split)

        launch(bwd.conv2d_wgrad, grid, device,
               x, dy, ws, npq, chunk, h, w, p, q, cg, kg, cols, ws_cols, k * ws_cols,
               *x.stride(), *dy.stride(), *stride, *padding, *dilation,
               R=r, S=s, INPUT_PRECISION=input_precision(dtype), GROUP_M=_kernels().GROUP_M,
               grid_args=(groups, split))
    if bias_grad:
        launch(bwd.bias_partial_kernel, (-(-k // bwd.BIAS_BLOCK_C), split), device,
               dy, ws, npq, chunk, k, p, q, *dy.stride(), cols, ws_cols, k * ws_cols,
               BLOCK_P=bwd.BIAS_BLOCK_P, BLOCK_C=bwd.BIAS_BLOCK_C)
    gw = grad_weight if weight_grad else ws  # placeholders are never written
    launch(bwd.wgrad_reduce_kernel, (-(-(k * ws_cols) // bwd.REDUCE_BLOCK),), device,
           ws, gw, grad_bias if bias_grad else ws, split, k, cols, ws_cols, cg, s,
           *(grad_weight.stride() if weight_grad else (0, 0, 0, 0)), BLOCK=bwd.REDUCE_BLOCK)
    return grad_weight, grad_bias


def wgrad_split(npq: int, tiles: int, split_bytes: int, sms: int, split: int | None,
                block: int) -> tuple[int, int]:
    """(splits, pixels per split) for a weight gradient of ``tiles`` 128x128 output tiles."""
    if split is not None:  # forced (tests): chunks need not be whole tiles
        chunk = -(-npq // split)
    else:
        split = min(-(-2 * sms // tiles), npq // MIN_SPLIT_PIXELS,
                    WORKSPACE_BYTES // split_bytes)
        chunk = -(-npq // max(split, 1))
        chunk = -(-chunk // block) * block
    return -(-npq // chunk), chunk


def _sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return INTERPRET_SMS
    return torch.cuda.get_device_properties(device).multi_processor_count
