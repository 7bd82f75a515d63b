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

from impls.frontend import output_size
from impls.registry import register_backend


def stalls(input_shape, weight_shape, stride, padding, dilation, groups, dtype, device) -> str:
    """oneDNN's CPU float16 depthwise kernel does not finish with few channels, a wide kernel
    and a wide output (torch 2.13.0+cpu, 2-core Xeon): with 2 to 16 channels, a 15x15 kernel
    with a 20x31 or 31x31 output, 31x31 with 32x32 or 56x56, ran until killed (8 s to 5
    min), at batch 1, 4 and 16 alike; a 31x20 output, a 14x14 kernel with a 32x32 output,
    or 31x31 with 30x30, took 2-3 ms; so did 17, 20, 32, 64 and 128 channels on the stalling
    shapes (40-50 ms). Dense and grouped convolutions, one channel, and bfloat16 are
    unaffected."""
    channels, width = input_shape[1], weight_shape[3]
    out_width = output_size(input_shape[2:], weight_shape[2:], stride, padding, dilation)[1]
    if (torch.device(device).type == "cpu" and dtype == torch.float16
            and groups == channels and 1 < channels <= 16 and weight_shape[1] == 1
            and width >= 15 and out_width >= 31):
        return ("torch's float16 depthwise convolution on the CPU (oneDNN) does not finish "
                f"with {channels} channels, a kernel {width} wide and an output {out_width} "
                "wide (torch 2.13.0: 2 to 16 channels, kernels 15+ wide, outputs 31+ wide "
                "ran until killed; narrower, or 17+ channels, milliseconds)")
    return ""


@register_backend(
    name="torch",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64, torch.float16, torch.bfloat16),
    description="torch.nn.functional.conv2d (oneDNN on CPU, cuDNN on CUDA)",
    accuracy_on={"cuda": (False, "cudnn")},
    stalls=stalls,
)
def torch_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """F.conv2d on already-normalised arguments."""
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
