"""The correctness case table: one row per problem, each with a readable id.

Why here and not in tests/: ``python -m impls check`` must work from an install, for a
user's backend, without the repo's tests. The table is only appended to, never changed,
so a case id in an old bug report still means the same problem.

Rows cover what real networks and known edge cases use (see shared/anchors.md, after
CUTLASS's conv2d_problems.h): square and rectangular images and kernels, 1x1 images, odd
sizes, a kernel as large as the padded input, stride larger than the kernel, asymmetric
stride/padding/dilation, "same"/"valid" with odd and even kernels, groups and depthwise,
channel counts like 3 and 17, batch 1 and several, with and without bias; and inputs in
channels-last and strided layouts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from impls.reference import pair, resolve_padding


@dataclass(frozen=True)
class Case:
    """One conv2d problem in PyTorch's terms (padding may be "same" or "valid")."""

    id: str
    n: int
    c: int
    h: int
    w: int
    k: int
    r: int
    s: int
    stride: int | tuple[int, int] = 1
    padding: int | tuple[int, int] | str = 0
    dilation: int | tuple[int, int] = 1
    groups: int = 1
    bias: bool = True
    #: How the backend receives the input and weight (the values are the same): "contiguous";
    #: "channels_last" (both, as a channels-last network passes them); "strided" (the input
    #: a view that steps over every other column, the weight a view of transposed storage,
    #: as slices and permutes pass them); "channels_last_input" and "channels_last_weight"
    #: (one of the two channels-last: a channels-last batch into a model not converted, or
    #: the reverse; F.conv2d's result is channels-last either way). A kernel that reads
    #: storage as dense NCHW is right on the first and wrong on the others, and one that
    #: picks its path from one tensor's layout and assumes it for the other is wrong on
    #: the last two. The gradient checks hand grad_output over in the output's layout.
    layout: str = "contiguous"

    @property
    def input_shape(self) -> tuple[int, int, int, int]:
        return (self.n, self.c, self.h, self.w)

    @property
    def weight_shape(self) -> tuple[int, int, int, int]:
        return (self.k, self.c // self.groups, self.r, self.s)

    @property
    def reduction(self) -> int:
        """Terms summed per output element: C/g * R * S (the error-growth length)."""
        return self.c // self.groups * self.r * self.s

    def kwargs(self) -> dict:
        return dict(stride=self.stride, padding=self.padding, dilation=self.dilation,
                    groups=self.groups)

    def features(self) -> set[str]:
        """Registry features this case exercises, for skips and the per-feature table."""
        used = set()
        if self.stride_pair != (1, 1):
            used.add("stride")
        if self.padding not in (0, (0, 0), "valid"):
            used.add("padding")
        if self.dilation_pair != (1, 1):
            used.add("dilation")
        if self.groups != 1:
            used.add("groups")
        if self.bias:
            used.add("bias")
        return used

    def tags(self) -> list[str]:
        """The summary rows a result of this case counts in: its features, and its layout
        when not contiguous (not a feature: every backend must take every layout)."""
        tags = self.features() | ({self.layout} if self.layout != "contiguous" else set())
        return sorted(tags) or ["plain"]

    def lay_out(self, input: torch.Tensor, weight: torch.Tensor):
        """(input, weight) with the same values, in this case's layout (new tensors)."""
        if self.layout.startswith("channels_last"):
            def layout_of(name):  # channels-last: both, or the one the layout names
                return (torch.channels_last if self.layout in ("channels_last",
                                                               f"channels_last_{name}")
                        else torch.contiguous_format)
            return (input.contiguous(memory_format=layout_of("input")),
                    weight.contiguous(memory_format=layout_of("weight")))
        if self.layout == "strided":
            return _every_other_column(input), weight.transpose(2, 3).contiguous(
                ).transpose(2, 3)
        if self.layout != "contiguous":
            raise ValueError(f"case {self.id}: unknown layout {self.layout!r}")
        return input, weight

    def lay_out_grad(self, grad_output: torch.Tensor) -> torch.Tensor:
        """grad_output as training hands it to this case's backward: channels-last in the
        channels-last layouts (as F.conv2d's output is on the CPU: the next layer's gradient
        of a channels-last activation), a view stepping over every other column in the
        strided layout (a slice's gradient)."""
        if self.layout.startswith("channels_last"):
            return grad_output.contiguous(memory_format=torch.channels_last)
        if self.layout == "strided":
            return _every_other_column(grad_output)
        return grad_output

    @property
    def stride_pair(self) -> tuple[int, int]:
        return pair(self.stride)

    @property
    def dilation_pair(self) -> tuple[int, int]:
        return pair(self.dilation)

    @property
    def pads(self) -> tuple[tuple[int, int], tuple[int, int]]:
        """((top, bottom), (left, right)), "same"/"valid" resolved by the reference's rule."""
        return resolve_padding(self.padding, (self.r, self.s), self.dilation_pair)

    @property
    def output_hw(self) -> tuple[int, int]:
        """(P, Q): (H + pads - D*(K-1) - 1) // S + 1 per axis."""
        (pt, pb), (pl, pr) = self.pads
        (sh, sw), (dh, dw) = self.stride_pair, self.dilation_pair
        return ((self.h + pt + pb - dh * (self.r - 1) - 1) // sh + 1,
                (self.w + pl + pr - dw * (self.s - 1) - 1) // sw + 1)

    def macs(self) -> int:
        """Multiply-adds of the forward pass (for budget skips), from the output size."""
        p, q = self.output_hw
        return self.n * self.k * p * q * self.reduction


# fmt: off
CASES: tuple[Case, ...] = (
    # id                               n   c   h   w   k   r   s   extra
    Case("basic-3x3-pad1",             2,  3,  8,  8,  4,  3,  3,  padding=1),
    Case("image-15x19",                1,  4, 15, 19,  5,  3,  3,  padding=1),
    Case("image-23x21-kernel-2x3",     2,  3, 23, 21,  4,  2,  3),
    Case("kernel-6x5-pad-2x1",         1,  3, 16, 14,  2,  6,  5,  padding=(2, 1)),
    Case("image-1x1-kernel-1x1",       3,  5,  1,  1,  7,  1,  1),
    Case("image-1x1-kernel-3x3-pad1",  2,  3,  1,  1,  4,  3,  3,  padding=1),
    Case("kernel-fills-padded-input",  1,  2,  5,  5,  3,  7,  7,  padding=1),
    Case("kernel-fills-input-6x4",     2,  3,  6,  4,  4,  6,  4),
    Case("stride-3-kernel-2",          1,  3, 17, 17,  4,  2,  2,  stride=3),
    Case("stride-2x1-pad1",            2,  4, 13, 11,  3,  3,  3,  stride=(2, 1), padding=1),
    Case("stride-1x3-kernel-1x5",      1,  3, 10, 21,  4,  1,  5,  stride=(1, 3)),
    Case("pad-2x0",                    1,  3,  9, 10,  4,  3,  3,  padding=(2, 0)),
    Case("pad-larger-than-kernel",     1,  2,  6,  6,  3,  3,  3,  padding=4),
    Case("dilation-2",                 1,  3, 16, 16,  4,  3,  3,  padding=2, dilation=2),
    Case("dilation-3x1-pad-1x2",       1,  2, 15, 19,  3,  3,  2,  padding=(1, 2),
         dilation=(3, 1)),
    Case("dilation-stride-pad",        2,  3, 19, 17,  5,  3,  3,  stride=2, padding=2,
         dilation=2),
    Case("same-odd-kernel-3x3",        2,  3, 10,  9,  4,  3,  3,  padding="same"),
    Case("same-even-kernel-2x4",       1,  3,  9,  8,  4,  2,  4,  padding="same"),
    Case("same-even-dilated-4x2",      1,  3, 11, 10,  2,  4,  2,  padding="same",
         dilation=(1, 3)),
    Case("same-odd-dilated-5x5",       2,  2, 12, 12,  3,  5,  5,  padding="same", dilation=2),
    Case("valid-3x3",                  2,  4, 10,  8,  3,  3,  3,  padding="valid"),
    Case("groups-2",                   2,  4,  9,  9,  6,  3,  3,  padding=1, groups=2),
    Case("groups-3-rect",              1,  6, 11,  7,  9,  3,  2,  padding=(1, 0), groups=3),
    Case("groups-4-stride-2",          2,  8, 12, 12,  8,  3,  3,  stride=2, padding=1,
         groups=4),
    Case("depthwise-17",               1, 17, 12, 12, 17,  3,  3,  padding=1, groups=17),
    Case("depthwise-multiplier-2-s2",  1,  8, 10, 10, 16,  3,  3,  stride=2, padding=1,
         groups=8),
    Case("depthwise-5x5-dilated",      2, 12, 14, 14, 12,  5,  5,  padding=4, dilation=2,
         groups=12),
    Case("channels-17",                2, 17,  7,  7, 17,  3,  3),
    Case("channels-3-kernel-5",        2,  3, 12, 12,  8,  5,  5,  padding=2),
    Case("batch-1-no-bias",            1,  4,  9,  9,  5,  3,  3,  padding=1, bias=False),
    Case("batch-4-no-bias",            4,  3,  8,  6,  4,  3,  3,  stride=2, bias=False),
    Case("groups-no-bias",             3,  6,  8,  8,  4,  3,  3,  padding=1, groups=2,
         bias=False),
    Case("pointwise-1x1-stride-2",     2, 16, 14, 14, 32,  1,  1,  stride=2),
    Case("resnet-3x3-14x14",           1, 64, 14, 14, 64,  3,  3,  padding=1),
    Case("resnet-1x1-expand",          2, 64,  7,  7, 256, 1,  1),
    Case("stem-7x7-stride-2",          1,  3, 32, 32, 16,  7,  7,  stride=2, padding=3),
    Case("mobilenet-depthwise-s2",     1, 32, 28, 28, 32,  3,  3,  stride=2, padding=1,
         groups=32),
    Case("large-kernel-13",            1,  4, 20, 20,  4, 13, 13,  padding=6),
    Case("large-kernel-31-depthwise",  1,  8, 32, 32,  8, 31, 31,  padding=15, groups=8),
    Case("deepspeech-20x5-stride-2",   1,  1, 40, 61,  8, 20,  5,  stride=2),
    Case("resnet-3x3-56x56-batch-2",   2, 64, 56, 56, 64,  3,  3,  padding=1),
    Case("channels-last-3x3-stride-2", 2,  6, 11,  9,  8,  3,  3,  stride=2, padding=1,
         layout="channels_last"),
    Case("channels-last-3x3-groups-2", 1,  4, 12, 10,  6,  3,  3,  padding=1, groups=2,
         layout="channels_last"),
    Case("strided-5x3-pad-2x1",        2,  5, 10, 13,  4,  5,  3,  padding=(2, 1),
         layout="strided"),
    Case("strided-3x3-depthwise",      1,  6,  9,  9,  6,  3,  3,  padding=1, groups=6,
         layout="strided"),
    # Past the blocks, chunks and tiles a kernel may use: a review's backends wrong only
    # beyond a reduction of 1024, 64 channels per group, 256 output channels, 4 images,
    # an output 64 wide or of 4096 positions, stride 3, or with unequal stride and
    # dilation together passed every row above.
    Case("reduction-1296-channels-144", 1, 144, 6,  6,  8,  3,  3,  padding=1),
    Case("out-channels-272",           1,  4,  5,  5, 272, 3,  3,  padding=1),
    Case("batch-6",                    6,  3,  6,  5,  4,  3,  3,  padding=1),
    Case("output-66x66",               1,  2, 66, 66,  3,  3,  3,  padding=1),
    Case("patch-4x4-stride-4",         2,  3, 16, 20,  8,  4,  4,  stride=4),
    Case("stride-2x3-dilation-2x1",    1,  3, 17, 19,  4,  3,  3,  stride=(2, 3),
         padding=(1, 2), dilation=(2, 1)),
    # One tensor channels-last, the other not: a path chosen from one tensor's layout.
    Case("channels-last-input-only",   2,  5, 9,  11,  6,  3,  3,  padding=1,
         layout="channels_last_input"),
    Case("channels-last-weight-only",  1,  6, 10,  8,  4,  3,  3,  stride=2, padding=1,
         groups=2, layout="channels_last_weight"),
)
# fmt: on

def _every_other_column(t: torch.Tensor) -> torch.Tensor:
    """``t``'s values in a view whose rows step over every other column of its storage."""
    wide = t.new_zeros(*t.shape[:3], 2 * t.shape[3])
    wide[..., ::2] = t
    return wide[..., ::2]


CASES_BY_ID = {case.id: case for case in CASES}
assert len(CASES_BY_ID) == len(CASES), "case ids must be unique"
