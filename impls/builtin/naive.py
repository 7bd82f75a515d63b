"""``naive``: the original hand-written Conv2d, kept as the teaching implementation.

Why it exists: it is the definition of a convolution written as loops, so a reader can check
it against the formula by eye: pad the input, then for every output position take the input
window under the kernel, multiply it by each output channel's kernel, sum, and add the bias.
Stride moves the window, dilation spreads its taps (a strided slice), groups split the
channels. The output size per axis is (H + 2P - D*(K-1) - 1) // S + 1.

What it must not do: get clever. No im2col, no FFT, no vectorising over output positions;
only the batch and channel dimensions inside one window are done at once. It accumulates in
the input's dtype (a plain sum of products, exact for integer-valued data) and is slow by
design, so ``max_macs`` tells the checker to skip large cases rather than wait on them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from impls.frontend import output_size
from impls.registry import register_backend


def workspace(input_shape, weight_shape, stride, padding, dilation, groups, itemsize):
    """Bytes a call allocates beyond its inputs (see impls.memory_budget): the padded input,
    and the output about four times over (values per row, stacked rows, the stacked output
    and the bias add). Small: the loops, not memory, limit this backend."""
    (n, c, h, w), (k, _, r, s) = input_shape, weight_shape
    p, q = output_size((h, w), (r, s), stride, padding, dilation)
    padded = n * c * (h + 2 * padding[0]) * (w + 2 * padding[1])
    return (padded + 4 * n * k * p * q) * itemsize, "its padded input and output"


@register_backend(
    name="naive",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64),
    exact=True,
    # Its cost is per output position (30-60 us each on 2 CPU cores), not per MAC; this cap
    # keeps every case it accepts from a real-network table to a few seconds at most.
    max_macs=20_000_000,
    workspace=workspace,
    description="hand-written loops over output positions: window x kernel, summed",
)
def naive_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Pad, then per output position: the window (N, C, R, S) times each kernel, summed."""
    batch, _, height, width = input.shape
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    (stride_h, stride_w), (pad_h, pad_w), (dil_h, dil_w) = stride, padding, dilation
    out_h = (height + 2 * pad_h - dil_h * (kernel_h - 1) - 1) // stride_h + 1
    out_w = (width + 2 * pad_w - dil_w * (kernel_w - 1) - 1) // stride_w + 1
    # The window covers dil*(k-1)+1 input pixels per axis but reads only every dil-th one.
    span_h = dil_h * (kernel_h - 1) + 1
    span_w = dil_w * (kernel_w - 1) + 1

    padded = F.pad(input, (pad_w, pad_w, pad_h, pad_h))
    # Output channel k of group g sees only input channels g*C/g .. (g+1)*C/g - 1.
    kernels = weight.reshape(groups, out_channels // groups, group_channels, kernel_h, kernel_w)

    rows = []
    for i in range(out_h):
        row = []
        for j in range(out_w):
            top, left = i * stride_h, j * stride_w
            window = padded[:, :, top:top + span_h:dil_h, left:left + span_w:dil_w]
            window = window.reshape(batch, groups, group_channels, kernel_h, kernel_w)
            # Each output channel: its kernel times the window of its group, summed.
            value = torch.einsum("ngcrs,gkcrs->ngk", window, kernels)
            row.append(value.reshape(batch, out_channels))
        rows.append(torch.stack(row, dim=-1))
    out = torch.stack(rows, dim=-2)  # (N, K, out_h, out_w)
    if bias is not None:
        out = out + bias.reshape(1, out_channels, 1, 1)
    return out
