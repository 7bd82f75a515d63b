"""``unfold``: im2col plus one matrix product, convolution as a GEMM.

Why it exists: it is the textbook way to hand a convolution to the operation hardware does
best. Every receptive field is copied out as one column (im2col, "unfold"), then a single
batched matrix product multiplies the kernels by the columns of all images and groups.

What it must not do: loop in Python over images, groups or kernel taps, or copy operands
into a GEMM layout after the fact. The column buffer is written once, by one copy, directly
in the layout the product reads, and the product writes NCHW directly, so the output needs
no transpose. Its price is memory: the column buffer is C*R*S x P*Q per image (R*S times the
input at stride 1, e.g. 9x for 3x3), all images at once.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from impls.registry import register_backend


@register_backend(
    name="unfold",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64),
    exact=True,
    description="im2col (unfold) + one batched matrix product over images and groups",
)
def unfold_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Columns (N*g, C/g*R*S, P*Q), then kernels (K/g, C/g*R*S) @ columns, plus bias."""
    batch = input.shape[0]
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    windows = _windows(input, (kernel_h, kernel_w), stride, padding, dilation)
    out_h, out_w = windows.shape[2:4]
    taps = group_channels * kernel_h * kernel_w  # the GEMM's reduction length
    group_out = out_channels // groups

    # The column buffer: (N*g, C/g*R*S, P*Q), i.e. C*R*S x P*Q per image. Ordered (c, r, s)
    # down a column like the weight's (C/g, R, S), and (p, q) along it like the output's.
    # This reshape is the im2col's one copy; before it, windows is a view of the padded input.
    columns = windows.permute(0, 1, 4, 5, 2, 3).reshape(batch * groups, taps, out_h * out_w)
    # Kernels repeat over the batch: a stride-0 view when groups == 1 (a small copy if not).
    kernels = weight.reshape(1, groups, group_out, taps).expand(batch, -1, -1, -1)
    kernels = kernels.reshape(batch * groups, group_out, taps)

    # (K/g, C/g*R*S) @ (C/g*R*S, P*Q) per image and group: the result is NCHW as it stands.
    if bias is None:
        out = torch.bmm(kernels, columns)
    else:
        # baddbmm accumulates the product onto the bias: no separate add over the output.
        start = bias.reshape(1, groups, group_out, 1).expand(batch, -1, -1, -1)
        out = torch.baddbmm(start.reshape(batch * groups, group_out, 1), kernels, columns)
    return out.view(batch, out_channels, out_h, out_w)


def _windows(input, kernel, stride, padding, dilation):
    """Every receptive field as a view (N, C, P, Q, R, S) of the zero-padded input.

    Tensor.unfold takes windows of span D*(K-1)+1 every S pixels; the [::D] slice keeps the
    taps a dilated kernel reads. Only the padding is copied here. Not F.unfold: it computes
    the same columns, but on CPU (torch 2.13, 2 threads) its im2col loop took 2.5-4x as long
    as the caller's one strided copy on ResNet-50 3x3 layers.
    """
    (pad_h, pad_w), (stride_h, stride_w), (dil_h, dil_w) = padding, stride, dilation
    # Unpadded (1x1 layers, mostly) skips a copy: a 1x1 stride-1 conv then needs none at all.
    padded = F.pad(input, (pad_w, pad_w, pad_h, pad_h)) if pad_h or pad_w else input
    span_h = dil_h * (kernel[0] - 1) + 1
    span_w = dil_w * (kernel[1] - 1) + 1
    rows = padded.unfold(2, span_h, stride_h)[..., ::dil_h]  # (N, C, P, Wp, R)
    return rows.unfold(3, span_w, stride_w)[..., ::dil_w]  # (N, C, P, Q, R, S)
