"""``torch``: torch.nn.functional.conv2d itself (oneDNN on CPU, cuDNN on GPU).

The baseline every other backend is compared against in speed. On CUDA, whether cuDNN may
use TF32 for float32 is a global torch setting; the benchmarks set and record it. Exact on
the CPU (oneDNN runs direct and GEMM kernels), but not on CUDA: there cuDNN's heuristics may
pick an FFT or Winograd engine, so the checker holds it to the "cudnn" tolerance model
(impls.tolerances) instead of bit-exactness.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from impls.registry import register_backend


@register_backend(
    name="torch",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    description="torch.nn.functional.conv2d (oneDNN on CPU, cuDNN on CUDA)",
    accuracy_on={"cuda": (False, "cudnn")},
)
def torch_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """F.conv2d on already-normalised arguments."""
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
