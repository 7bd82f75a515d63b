"""``triton``: a hand-written implicit-GEMM conv2d kernel in Triton (CUDA; CPU via interpreter).

Why it exists: the one backend whose GPU kernel is ours, so its speed against cuDNN measures
our own code. The kernel lives in impls/builtin/_triton_kernels.py; this file registers the
backend and launches the kernel (layouts, output allocation, grid, precision).

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

Layout: the kernel computes channels_last and returns a channels_last output (the values and
shape of F.conv2d; its strides are those F.conv2d gives for a channels_last weight). An NCHW
input is copied to channels_last first; see :func:`conv2d_forward` for why.
"""

from __future__ import annotations

import importlib
import importlib.util
import os

import torch

from impls.frontend import output_size
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

_NO_DEVICE = ("no CUDA device; set TRITON_INTERPRET=1 before importing impls to run the "
              "kernel on the CPU interpreter")


def _probe() -> str:
    if importlib.util.find_spec("triton") is None:
        return "triton is not installed (pip install 'convbench[triton]')"
    if not INTERPRET and not torch.cuda.is_available():
        return _NO_DEVICE  # before importing triton: `python -m impls list` stays quick
    try:
        import triton  # noqa: F401  (imported only to prove it loads)
    except Exception as exc:
        return f"triton is not importable: {type(exc).__name__}: {exc}"
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


@register_backend(
    name="triton",
    devices=("cuda", "cpu") if INTERPRET else ("cuda",),
    dtypes=((torch.float32, torch.float16) if INTERPRET
            else (torch.float32, torch.float16, torch.bfloat16)),
    features=frozenset({"stride", "padding", "dilation", "groups", "bias"}),
    exact=True,
    error_model="direct",
    probe=_probe,
    max_macs=INTERPRET_MAX_MACS if INTERPRET else None,
    description="hand-written implicit-GEMM Triton kernel (CPU: TRITON_INTERPRET=1)",
)
def triton_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Forward conv2d by the Triton kernel, on already-normalised arguments."""
    return conv2d_forward(input, weight, bias, stride, padding, dilation, groups)


def conv2d_forward(input, weight, bias, stride, padding, dilation, groups, *,
                   flat_k: bool | None = None) -> torch.Tensor:
    """Launch the kernel; ``flat_k`` forces one reduction loop (tests cover both)."""
    kernels = _kernels()
    if INTERPRET and input.dtype == torch.bfloat16:
        # The interpreter does not raise on a bf16 dot: it returns garbage. Refuse instead.
        raise NotImplementedError("the Triton interpreter has no bfloat16 dot")
    n, _, h, w = input.shape
    k, cg, r, s = weight.shape
    kg = k // groups
    p, q = output_size((h, w), (r, s), stride, padding, dilation)
    # Everything channels_last (channel innermost), what F.conv2d itself returns for a
    # channels_last weight. Loads: the reduction runs over c fastest, so both tile loads are
    # unit-stride vectors. Store: a tile row is BLOCK_N consecutive channels; an NCHW output
    # tile would be 32 channel planes per warp, uncoalesced, and its per-element pointers
    # spill registers (tests/test_triton_aot.py reports spills). The input copy costs one
    # pass over the input (none when it is channels_last already): pass channels_last
    # tensors to benchmark the kernel alone.
    out = torch.empty((n, k, p, q), device=input.device, dtype=input.dtype,
                      memory_format=torch.channels_last)
    if out.numel() == 0:
        return out
    x = input.contiguous(memory_format=torch.channels_last)
    wt = weight.contiguous(memory_format=torch.channels_last)
    b = bias.contiguous() if bias is not None else out  # an unread placeholder pointer
    m = n * p * q
    precision = fp32_input_precision() if input.dtype == torch.float32 else "ieee"
    flat = cg < FLAT_K_BELOW if flat_k is None else flat_k

    def grid(meta):
        return (-(-m // meta["BLOCK_M"]) * -(-kg // meta["BLOCK_N"]), groups)

    args = (x, wt, b, out, m, h, w, p, q, cg, kg, *x.stride(), *wt.stride(), *out.stride(),
            *stride, *padding, *dilation)
    meta = dict(R=r, S=s, HAS_BIAS=bias is not None, INPUT_PRECISION=precision, FLAT_K=flat,
                GROUP_M=kernels.GROUP_M)
    if input.device.type == "cuda":
        # Triton launches on the current device; make it the tensors' one.
        with torch.cuda.device(input.device):
            kernels.conv2d_fwd[grid](*args, **meta)
    else:
        kernels.conv2d_fwd[grid](*args, **meta)
    return out
