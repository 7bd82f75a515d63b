"""``unfold``: im2col plus one matrix product, convolution as a GEMM.

Why it exists: it is the textbook way to hand a convolution to the operation hardware does
best. Every receptive field is copied out as one column (im2col, "unfold"), then a single
batched matrix product multiplies the kernels by the columns of all images and groups.

How the copy is done well: the column buffer is written once, by one strided copy, in the
layout the GEMM reads, into scratch memory reused between calls (impls.builtin._scratch:
fresh 58 MB per call cost as much again in page faults). The GEMM layout follows the
output size. With many positions per image the product is per image,
(K/g x C/g*R*S) @ (C/g*R*S x P*Q), and writes NCHW as it stands; the images go through in
a few equal chunks, each one copy and one batched GEMM, so that a chunk's columns (about
CHUNK_BYTES) are still in cache when the GEMM reads them (64@56x56 at batch 8: the whole
batch's 58 MB at once took 10.5 ms, chunks of 2 or 4 images 8.8 ms; torch 6.0). With few
positions (7x7, 14x14: a GEMM 49 columns wide runs far below peak) the images sit side by
side in one GEMM, (K/g x C/g*R*S) @ (C/g*R*S x N*P*Q), and the product is copied to NCHW:
a pass over the output, much smaller than the columns.

What it must not do: loop in Python over single images (beyond cache-sized chunks), groups
or kernel taps, call another conv,
or copy operands into a GEMM layout after the fact. Its price is memory: the column buffer
is C*R*S x P*Q per image (R*S times the input at stride 1, e.g. 9x for 3x3), for a chunk
of images or all of them, and up to _scratch.KEEP_BYTES of it stays allocated between
calls.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from impls.builtin import _scratch
from impls.frontend import output_size
from impls.registry import register_backend


def workspace(input_shape, weight_shape, stride, padding, dilation, groups, itemsize):
    """Bytes a call allocates beyond its inputs, and what they are (see impls.memory_budget):
    the column buffer, the padded input it is cut from, the kernels repeated per image when
    groups > 1, the batched product of narrow images, and the output. Scratch kept between
    calls counts too: a budget bounds what a call may hold, not what it newly allocates.
    Under autograd every image's columns are saved for the backward pass (and made in one
    chunk): activation memory, as any layer saves, which this model of a call leaves out."""
    (n, c, h, w), (k, cg, r, s) = input_shape, weight_shape
    p, q = output_size((h, w), (r, s), stride, padding, dilation)
    padded = n * c * (h + 2 * padding[0]) * (w + 2 * padding[1]) if any(padding) else 0
    plain, folded, chunk = _layout(n, (r, s), stride, padding, p * q,
                                   c * r * s * p * q * itemsize)
    columns = 0 if plain else chunk * c * r * s * p * q
    kernels = chunk * k * cg * r * s if groups > 1 and chunk > 1 else 0
    # Narrow images are batched into one GEMM, whose product is copied to NCHW.
    product = n * k * p * q if folded else 0
    need = (padded + columns + kernels + product + n * k * p * q) * itemsize
    return need, ("its column buffer (C*R*S x P*Q per image, for a chunk of images), padded "
                  "input and output")


@register_backend(
    name="unfold",
    devices=("cpu", "cuda"),
    dtypes=(torch.float32, torch.float64),
    exact=True,
    workspace=workspace,
    description="im2col (unfold) + one batched matrix product over images and groups",
)
def unfold_conv2d(input, weight, bias, stride, padding, dilation, groups):
    """Columns written by one copy, then one batched GEMM with the kernels, plus bias."""
    batch = input.shape[0]
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    out_h, out_w = output_size(input.shape[2:], (kernel_h, kernel_w), stride, padding, dilation)
    taps = group_channels * kernel_h * kernel_w  # the GEMM's reduction length
    group_out, positions = out_channels // groups, out_h * out_w
    keep = not _scratch.tracked(input, weight, bias)  # autograd saves the columns
    plain, folded, chunk = _layout(batch, (kernel_h, kernel_w), stride, padding, positions,
                                   groups * taps * positions * input.element_size(), keep)
    shapes = [None if plain else (chunk * groups * taps * positions,),
              (batch * out_channels * positions,) if folded else None]
    with _scratch.Scratch(input, shapes, keep) as (column_buf, product_buf):
        if column_buf is None and not plain:  # not kept: one buffer for every chunk
            column_buf = input.new_empty(shapes[0])
        # (N, C, P, Q, R, S): a view of the padded input; its copy is the im2col.
        windows = _windows(input, (kernel_h, kernel_w), stride, padding, dilation)
        kernels = weight.reshape(groups, group_out, taps)
        start = None if bias is None else bias.reshape(groups, group_out, 1)
        if folded:
            return _batch_in_one_gemm(windows, kernels, start, column_buf, product_buf)
        if chunk == batch:
            out = _gemm_per_image(windows, kernels, start, column_buf)
        else:
            out = windows.new_empty(batch * groups, group_out, positions)
            for first in range(0, batch, chunk):
                _gemm_per_image(windows[first:first + chunk], kernels, start, column_buf,
                                out[first * groups:(first + chunk) * groups])
        return out.view(batch, out_channels, out_h, out_w)


#: Column bytes per chunk of images in the per-image layout: the copy writes them and the
#: GEMM reads them back while they are still in cache (see the module docstring).
CHUNK_BYTES = 16 << 20


def _layout(batch: int, kernel_hw, stride, padding, positions: int, column_bytes: int,
            untracked: bool = True) -> tuple[bool, bool, int]:
    """(plain, folded, images per chunk): the call's layout, which its memory model
    (``workspace``) must see the same. ``plain``: a 1x1, stride-1, unpadded conv reads its
    input as its columns, no copy at all. ``folded``: narrow images side by side in one
    GEMM. Chunks write into one output (out=), which autograd cannot record: one chunk
    when the call is tracked (``untracked`` False)."""
    plain = (*kernel_hw, *stride, *padding) == (1, 1, 1, 1, 0, 0)
    folded = batch > 1 and positions < NARROW and not plain
    chunk = batch if folded or plain or not untracked else images_per_chunk(batch,
                                                                            column_bytes)
    return plain, folded, chunk


def images_per_chunk(batch: int, column_bytes_per_image: int) -> int:
    """Images per chunk: about CHUNK_BYTES of columns (at least one image), in equal
    chunks (a last chunk of one image would run its GEMM alone, slowly)."""
    if batch <= 1:
        return max(batch, 1)
    fit = max(1, CHUNK_BYTES // max(column_bytes_per_image, 1))
    return -(-batch // -(-batch // fit))


def _gemm_per_image(windows, kernels, start, column_buf, out=None):
    """Columns (n*g, C/g*R*S, P*Q) of a chunk of n images: (K/g x C/g*R*S) @ columns per
    image and group, returned or written into ``out`` (n*g, K/g, P*Q): NCHW as it stands."""
    batch, _, out_h, out_w = windows.shape[:4]
    groups, group_out, taps = kernels.shape
    windows = windows.permute(0, 1, 4, 5, 2, 3)  # (n, C, R, S, P, Q): C is (g, C/g)
    if column_buf is None:  # a plain 1x1 conv: its input, viewed, is its columns
        columns = windows.reshape(batch * groups, taps, out_h * out_w)
    else:
        columns = column_buf[:batch * groups * taps * out_h * out_w].view(
            batch * groups, taps, out_h * out_w)
        columns.view(windows.shape).copy_(windows)
    # Kernels repeat over the batch: a stride-0 view when groups == 1 (a small copy if not).
    kernels = kernels.expand(batch, -1, -1, -1).reshape(batch * groups, group_out, taps)
    into = {} if out is None else {"out": out}
    if start is None:
        return torch.bmm(kernels, columns, **into)
    # baddbmm accumulates the product onto the bias: no separate add over the output.
    start = start.expand(batch, -1, -1, -1).reshape(batch * groups, group_out, 1)
    return torch.baddbmm(start, kernels, columns, **into)


def _batch_in_one_gemm(windows, kernels, start, column_buf, product_buf):
    """Columns (g, C/g*R*S, N*P*Q): every image side by side in one GEMM per group, which
    keeps the GEMM wide when P*Q is small (7x7: 49 columns an image); the product
    (g, K/g, N, P*Q) is then copied to NCHW, a pass over the output."""
    batch, channels, out_h, out_w = windows.shape[:4]
    groups, group_out, taps = kernels.shape
    windows = windows.unflatten(1, (groups, channels // groups))
    windows = windows.permute(1, 2, 5, 6, 0, 3, 4)  # (g, C/g, R, S, N, P, Q)
    columns = column_buf.view(groups, taps, batch * out_h * out_w)
    columns.view(windows.shape).copy_(windows)
    product = _product(kernels, columns, start, product_buf)
    out = kernels.new_empty(batch, groups, group_out, out_h * out_w)
    out.copy_(product.view(groups, group_out, batch, out_h * out_w).permute(2, 0, 1, 3))
    return out.view(batch, groups * group_out, out_h, out_w)


def _product(kernels, columns, start, product_buf):
    """kernels @ columns (+ start), into ``product_buf`` if given, else into new memory."""
    shape = (*kernels.shape[:2], columns.shape[2])
    out = {} if product_buf is None else {"out": product_buf.view(shape)}
    if start is None:
        return torch.bmm(kernels, columns, **out)
    return torch.baddbmm(start, kernels, columns, **out)


def _windows(input, kernel, stride, padding, dilation):
    """Every receptive field as a view (N, C, P, Q, R, S) of the zero-padded input.

    Tensor.unfold takes windows of span D*(K-1)+1 every S pixels; the [::D] slice keeps the
    taps a dilated kernel reads. Only the padding is copied here (F.pad: one pass; padding
    into kept scratch took a memset and a copy, and was slower at batch 1). Not F.unfold: it
    computes the same columns, but on CPU (torch 2.13, 2 threads) its im2col loop took
    2.5-4x as long as the caller's one strided copy on ResNet-50 3x3 layers.
    """
    (pad_h, pad_w), (stride_h, stride_w), (dil_h, dil_w) = padding, stride, dilation
    padded = F.pad(input, (pad_w, pad_w, pad_h, pad_h)) if pad_h or pad_w else input
    span_h = dil_h * (kernel[0] - 1) + 1
    span_w = dil_w * (kernel[1] - 1) + 1
    rows = padded.unfold(2, span_h, stride_h)[..., ::dil_h]  # (N, C, P, Wp, R)
    return rows.unfold(3, span_w, stride_w)[..., ::dil_w]  # (N, C, P, Q, R, S)


#: Output positions per image below which the images' columns share one GEMM: narrower
#: per-image GEMMs ran slower than the folded GEMM plus its output copy (ResNet-50 3x3 at
#: batch 8, 1 thread: 7x7 0.62x -> 0.82x of torch, 14x14 0.70x -> 0.75x; 28x28 and
#: 56x56 no better folded).
NARROW = 512
