"""Known-buggy conv2d implementations: the correctness suite must catch every one.

Why: a checker that passes everything proves nothing. Each mutant is F.conv2d (the
correct base) with one small, realistic mistake of the kind hand-written kernels make.
tests/test_mutants.py runs each through the same checker as ``python -m impls check``
and asserts it is caught, and caught where it should be: in the summary row of the
feature it breaks (``feature``), only on cases where the bug can show (``only_where``),
and at least on the named cases (``caught_by``).

Every mutant has F.conv2d's signature and, like any backend, receives the front end's
normalised arguments: a 4-D input, (int, int) stride/padding/dilation, an int groups.
Run ``python -m tests.test_mutants`` for the kill table.

What this module must not do: register anything at import. Tests load mutants by
"mutants:NAME", the route a user's callable takes, so the registry of the normal suite
never sees them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

from impls.cases import Case
from impls.frontend import output_size


@dataclass(frozen=True)
class Mutant:
    """A buggy backend and where the suite must catch it."""

    name: str
    fn: Callable[..., torch.Tensor]
    bug: str
    #: The summarize() row that must count its failures (None: not tied to one feature).
    feature: str | None
    #: Failures may only occur on cases where this holds (the bug cannot show elsewhere).
    only_where: Callable[[Case], bool]
    #: Case ids that must fail.
    caught_by: tuple[str, ...]


MUTANTS: dict[str, Mutant] = {}


def mutant(feature: str | None = None, only_where: Callable[[Case], bool] = lambda c: True,
           caught_by: tuple[str, ...] = ()):
    """Record a mutant; its docstring's first line is the bug."""

    def record(fn):
        bug = (fn.__doc__ or "").strip().split("\n")[0]
        MUTANTS[fn.__name__] = Mutant(fn.__name__, fn, bug, feature, only_where, caught_by)
        return fn

    return record


# -- what the backend sees of a case (after the front end), for the only_where predicates --

def backend_padding(case: Case) -> tuple[int, int]:
    """The symmetric padding the front end passes (the extra "same" row is in the input)."""
    (top, _), (left, _) = case.pads
    return top, left


def _uses_bias(case: Case) -> bool:
    return case.bias


# -- bias ----------------------------------------------------------------------------------

@mutant("bias", _uses_bias, ("basic-3x3-pad1",))
def bias_dropped(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Bias dropped: the bias argument is accepted and never added."""
    return F.conv2d(input, weight, None, stride, padding, dilation, groups)


@mutant("bias", _uses_bias, ("basic-3x3-pad1",))
def bias_twice(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Bias added twice: once by the conv call, again in an 'epilogue'."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


@mutant("bias", _uses_bias, ("basic-3x3-pad1",))
def bias_wrong_axis(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Bias broadcast on the wrong axis: view(1, -1, 1) lines it up with rows, not channels.

    Raises where shapes clash; silently wrong where the output height equals the channels.
    """
    out = F.conv2d(input, weight, None, stride, padding, dilation, groups)
    return out if bias is None else out + bias.view(1, -1, 1)


# -- padding -------------------------------------------------------------------------------

def _padded(case: Case) -> bool:
    return backend_padding(case) != (0, 0)


@mutant("padding", _padded, ("basic-3x3-pad1", "same-odd-kernel-3x3"))
def padding_off_by_one(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Padding off by one: pads p+1 but keeps the right output size, so windows shift by one."""
    (ph, pw) = padding
    p, q = output_size(input.shape[2:], weight.shape[2:], stride, padding, dilation)
    out = F.conv2d(input, weight, bias, stride, (ph + (ph > 0), pw + (pw > 0)), dilation,
                   groups)
    return out[..., :p, :q]


@mutant("padding", _padded, ("basic-3x3-pad1", "kernel-6x5-pad-2x1"))
def padding_one_side(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Padding applied to one side only: all 2p rows/columns at the top/left, none after.

    The output size is right; every window is shifted by p.
    """
    ph, pw = padding
    padded = F.pad(input, (2 * pw, 0, 2 * ph, 0))
    return F.conv2d(padded, weight, bias, stride, 0, dilation, groups)


@mutant("padding", lambda c: len(set(backend_padding(c))) == 2, ("kernel-6x5-pad-2x1",))
def padding_axes_swapped(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Padding axes swapped: (pad_w, pad_h) where (pad_h, pad_w) was meant."""
    return F.conv2d(input, weight, bias, stride, padding[::-1], dilation, groups)


# -- stride and dilation -------------------------------------------------------------------

@mutant("stride", lambda c: len(set(c.stride_pair)) == 2, ("stride-2x1-pad1",))
def stride_axes_swapped(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Stride axes swapped: (stride_w, stride_h) where (stride_h, stride_w) was meant."""
    return F.conv2d(input, weight, bias, stride[::-1], padding, dilation, groups)


def _size_formula_differs(case: Case) -> bool:
    """Whether S fails to divide H + 2P - D*(K-1) on some axis (H, P as the backend sees)."""
    (pt, pb), (pl, pr) = case.pads
    (sh, sw), (dh, dw) = case.stride_pair, case.dilation_pair
    return ((case.h + pt + pb - dh * (case.r - 1)) % sh != 0
            or (case.w + pl + pr - dw * (case.s - 1)) % sw != 0)


@mutant("stride", _size_formula_differs, ("stride-2x1-pad1",))
def output_size_off_by_one(input, weight, bias=None, stride=1, padding=0, dilation=1,
                           groups=1):
    """Output size (H + 2P - D*(K-1)) // S, missing the -1 and +1: one row short for S > 1.

    Right whenever S divides H + 2P - D*(K-1), so only some strided cases can show it.
    """
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    (h, w), (ph, pw), (sh, sw), (dh, dw) = input.shape[2:], padding, stride, dilation
    p = (h + 2 * ph - dh * (weight.shape[2] - 1)) // sh
    q = (w + 2 * pw - dw * (weight.shape[3] - 1)) // sw
    return out[..., :p, :q]


@mutant("dilation", lambda c: c.dilation_pair != (1, 1), ("dilation-2",))
def dilation_ignored(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Dilation ignored: the kernel taps are always adjacent."""
    return F.conv2d(input, weight, bias, stride, padding, 1, groups)


# -- groups --------------------------------------------------------------------------------

@mutant("groups", lambda c: c.groups > 1 and c.k // c.groups > 1, ("groups-2",))
def groups_mapped_wrongly(input, weight, bias=None, stride=1, padding=0, dilation=1,
                          groups=1):
    """Groups mapped wrongly: output channel k reads input group k % groups, not k // (K/g).

    Both agree when each group has one output channel (plain depthwise), so only grouped
    cases with a channel multiplier can show it.
    """
    k = weight.shape[0]
    order = sorted(range(k), key=lambda i: (i % groups, i))  # group j gets k = j, j+g, ...
    out = F.conv2d(input, weight[order], None if bias is None else bias[order], stride,
                   padding, dilation, groups)
    result = torch.empty_like(out)
    result[:, order] = out
    return result


# -- the sum itself ------------------------------------------------------------------------

@mutant(None, lambda c: c.r > 1 or c.s > 1, ("basic-3x3-pad1", "image-23x21-kernel-2x3"))
def kernel_flipped(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Kernel flipped: a true convolution instead of PyTorch's cross-correlation."""
    return F.conv2d(input, weight.flip(-2, -1), bias, stride, padding, dilation, groups)


@mutant(None, caught_by=("basic-3x3-pad1", "resnet-3x3-14x14"))
def float16_accumulation(input, weight, bias=None, stride=1, padding=0, dilation=1,
                         groups=1):
    """Accumulation in float16: each block of 64 products is added to a half accumulator.

    Exact-integer sums stay far below 2048 (their signs are random), so exact mode passes;
    random mode fails everywhere. Emulated with im2col plus a half accumulator: torch's own
    half conv on the CPU takes minutes on the 31x31 case.
    """
    n, k = input.shape[0], weight.shape[0]
    p, q = output_size(input.shape[2:], weight.shape[2:], stride, padding, dilation)
    cols = F.unfold(input, weight.shape[2:], dilation, padding, stride)
    cols = cols.view(n, groups, -1, p * q)  # (N, g, C/g*R*S, P*Q)
    taps = weight.reshape(groups, k // groups, -1)  # (g, K/g, C/g*R*S)
    acc = torch.zeros(n, groups, k // groups, p * q, dtype=torch.float16)
    for start in range(0, taps.shape[-1], 64):
        block = torch.einsum("gkl,nglx->ngkx", taps[..., start:start + 64],
                             cols[:, :, start:start + 64])
        acc = (acc.to(input.dtype) + block).half()
    out = acc.to(input.dtype).view(n, k, p, q)
    return out if bias is None else out + bias.view(1, -1, 1, 1)


@mutant(None, caught_by=("basic-3x3-pad1", "channels-17"))
def last_row_dropped(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Last output row dropped: the row loop runs to P - 1, so the last row stays zero."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    out[..., -1, :] = 0
    return out


@mutant(None, lambda c: c.output_hw[1] % 2 == 1, ("image-15x19", "image-1x1-kernel-1x1"))
def odd_width_tail_skipped(input, weight, bias=None, stride=1, padding=0, dilation=1,
                           groups=1):
    """Wrong for odd sizes only: output columns done in pairs, an odd last column left at 0."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    if out.shape[-1] % 2:
        out[..., -1] = 0
    return out


@mutant(None, lambda c: c.output_hw[0] == c.output_hw[1] > 1, ("basic-3x3-pad1",))
def transposed_when_square(input, weight, bias=None, stride=1, padding=0, dilation=1,
                           groups=1):
    """Output transposed for square outputs only: p and q swapped in the store index.

    A non-square output would be the wrong shape, so whoever wrote it only ever tried square
    images; the shape check cannot see it.
    """
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return out.transpose(-1, -2).contiguous() if out.shape[-1] == out.shape[-2] else out


@mutant(None, lambda c: c.n > 1, ("basic-3x3-pad1", "batch-4-no-bias"))
def first_image_for_all(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Wrong only when N > 1: the batch loop reads image 0 for every image."""
    out = F.conv2d(input[:1], weight, bias, stride, padding, dilation, groups)
    return out.expand(input.shape[0], *out.shape[1:]).contiguous()


@mutant(None, lambda c: (c.c // c.groups) % 4 != 0, ("basic-3x3-pad1", "channels-17"))
def channel_tail_dropped(input, weight, bias=None, stride=1, padding=0, dilation=1,
                         groups=1):
    """Wrong only for C/groups not divisible by 4: channels go in blocks of 4, no tail loop."""
    whole = weight.shape[1] // 4 * 4
    return F.conv2d(input, torch.cat([weight[:, :whole], 0 * weight[:, whole:]], 1), bias,
                    stride, padding, dilation, groups)


_workspace: dict = {}


@mutant(None, caught_by=("basic-3x3-pad1",))
def stale_workspace(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Output buffer reused across calls and accumulated into without zeroing it first.

    The first call of each shape and dtype is right (a fresh buffer is zero), later ones
    are not: caught because the checker runs every case in two fill modes.
    """
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    key = (tuple(out.shape), out.dtype, out.device)
    buffer = _workspace.setdefault(key, torch.zeros_like(out))
    buffer += out
    return buffer.clone()


@mutant(None, caught_by=("basic-3x3-pad1",))
def input_changed_in_place(input, weight, bias=None, stride=1, padding=0, dilation=1,
                           groups=1):
    """A fused ReLU applied to the caller's input, in place, before the conv.

    Wrong twice: the result is conv(relu(x)), and the caller's tensor is changed. A checker
    that builds its reference from the same tensors after the call sees neither.
    """
    return F.conv2d(input.relu_(), weight, bias, stride, padding, dilation, groups)


@mutant(None, caught_by=("basic-3x3-pad1",))
def float64_result(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Computes in float64 "for accuracy" and forgets to cast back: float32 in, float64 out."""
    dbias = None if bias is None else bias.double()
    return F.conv2d(input.double(), weight.double(), dbias, stride, padding, dilation, groups)


@mutant(None, caught_by=("basic-3x3-pad1",))
def float64_via_float32(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """float64 computed in float32: a float64 result with float32's accuracy.

    Exact-integer sums stay below 2**24, so only random mode can see it, and only because
    the float64 tolerance is 1e-12 (torch.testing's 1e-7 let it through: a known gap once).
    """
    fbias = None if bias is None else bias.float()
    return F.conv2d(input.float(), weight.float(), fbias, stride, padding, dilation,
                    groups).to(input.dtype)


@mutant(None, caught_by=("basic-3x3-pad1", "resnet-3x3-14x14"))
def winograd_coefficient_rounded(input, weight, bias=None, stride=1, padding=0, dilation=1,
                                 groups=1):
    """Winograd F(4x4, 3x3) with the kernel transform's 1/3 typed in as 0.3333.

    The real algorithm (impls.builtin.winograd) with one constant wrong in its 4th digit,
    judged by Winograd's own error model, not the direct one: an inexact method's looser
    tolerance must still see a wrong coefficient. (Its weight is a fresh copy per call, so
    the wrong kernel transform is never kept for a real backend's weight.)
    """
    from unittest import mock

    from impls.builtin import winograd

    right = winograd._transforms

    def transforms(m, dtype, device):
        a_t, _, b_t, kron_b, one = right(m, dtype, device)
        _, g, _ = winograd.toom_cook(m, winograd.POINTS[m])
        g = torch.tensor([[0.3333 if v == Fraction(1, 3) else float(v) for v in row]
                          for row in g], dtype=torch.float64)
        return a_t, torch.kron(g, g).to(dtype=dtype, device=device), b_t, kron_b, one

    with mock.patch.object(winograd, "_transforms", transforms):
        return winograd._winograd(4, input, weight.detach().clone(), bias, padding, groups)


def _winograd_accepts(*problem) -> str:
    from impls.builtin import winograd  # at call time: importing registers backends

    return winograd.accepts(*problem)


winograd_coefficient_rounded.convbench_capabilities = {
    "exact": False, "error_model": "winograd-f4", "accepts": _winograd_accepts}


#: Front-end mistakes, as wrappers of impls.frontend._resolve_padding(input, weight, padding,
#: stride, dilation) -> (input, symmetric padding). A backend never sees "same" (the front
#: end adds PyTorch's odd extra row/column), so only the front end can get it wrong; the
#: checker's reference resolves "same" on its own and must notice.
FRONT_END_MUTANTS: dict[str, Mutant] = {}


def _odd_same(case: Case) -> bool:
    """A "same" case whose total padding d*(k-1) is odd on some axis (the extra row)."""
    return case.padding == "same" and any(
        d * (k - 1) % 2 for d, k in zip(case.dilation_pair, (case.r, case.s)))


def _front_end(fn):
    bug = (fn.__doc__ or "").strip().split("\n")[0]
    FRONT_END_MUTANTS[fn.__name__] = Mutant(fn.__name__, fn, bug, "padding", _odd_same,
                                            ("same-even-kernel-2x4",))
    return fn


@_front_end
def same_extra_row_dropped(resolve):
    """"same" with an even kernel: the symmetric padding is right, the extra row never added."""

    def mutated(input, weight, padding, stride, dilation):
        _, symmetric = resolve(input, weight, padding, stride, dilation)
        return input, symmetric

    return mutated


@_front_end
def same_extra_row_on_top(resolve):
    """"same" with an even kernel: the extra row/column added at the top/left, not bottom/right."""

    def mutated(input, weight, padding, stride, dilation):
        padded, symmetric = resolve(input, weight, padding, stride, dilation)
        extra_h, extra_w = (a - b for a, b in zip(padded.shape[2:], input.shape[2:]))
        return F.pad(input, (extra_w, 0, extra_h, 0)), symmetric

    return mutated


@mutant(None, lambda c: c.layout != "contiguous",
        ("channels-last-3x3-stride-2", "strided-5x3-pad-2x1"))
def storage_read_as_nchw(input, weight, bias=None, stride=1, padding=0, dilation=1,
                         groups=1):
    """Reads the tensors' storage as dense NCHW (a C kernel indexing data_ptr()), ignoring
    their strides: right for contiguous tensors, scrambled for channels-last or views."""
    def dense(t):
        return torch.as_strided(t, t.shape, torch.empty(t.shape).stride(), t.storage_offset())
    return F.conv2d(dense(input), dense(weight), bias, stride, padding, dilation, groups)


@mutant(None, lambda c: c.layout == "channels_last_input", ("channels-last-input-only",))
def weight_layout_taken_from_input(input, weight, bias=None, stride=1, padding=0, dilation=1,
                                   groups=1):
    """Picks its channels-last path from the input's layout alone and reads the weight's
    storage as channels-last too: right when both are (a converted model), scrambled for
    a channels-last batch into a model that was not converted."""
    if input.is_contiguous(memory_format=torch.channels_last) and not input.is_contiguous():
        k, c, r, s = weight.shape
        weight = torch.as_strided(weight, weight.shape, (c * r * s, 1, s * c, c),
                                  weight.storage_offset())
    return F.conv2d(input, weight, bias, stride, padding, dilation, groups)


_returned: dict = {}


@mutant(None, caught_by=("basic-3x3-pad1", "channels-17"))
def output_buffer_reused(input, weight, bias=None, stride=1, padding=0, dilation=1,
                         groups=1):
    """Returns the same output buffer on every call of a shape (a kernel's cached output):
    each result is right when returned, and overwritten by the next call."""
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    key = (tuple(out.shape), out.dtype, out.device)
    return _returned.setdefault(key, torch.empty_like(out)).copy_(out)


_kept_weights: dict = {}


@mutant(None, caught_by=("basic-3x3-pad1", "channels-17"))
def weight_kept_by_address(input, weight, bias=None, stride=1, padding=0, dilation=1,
                           groups=1):
    """Keeps each weight's "transform" keyed by its address, not its version counter: the
    optimizer step that writes the weight in place between two forwards is not seen, and
    the old weight is served (Winograd's and FFT's kept transforms must not do this)."""
    key = (weight.data_ptr(), tuple(weight.shape), weight.dtype, weight.device)
    kept = _kept_weights.setdefault(key, weight.clone())
    return F.conv2d(input, kept, bias, stride, padding, dilation, groups)


_calls = [0]


@mutant(None, caught_by=("basic-3x3-pad1", "channels-17"))
def wrong_every_second_call(input, weight, bias=None, stride=1, padding=0, dilation=1,
                            groups=1):
    """Right on one call, wrong on the next (a race between thread blocks): every output
    off by one on even calls, so each comparison's first call is right and its second not."""
    _calls[0] += 1
    out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    return out + 1 if _calls[0] % 2 == 0 else out


# -- past the sizes a kernel blocks, chunks or tiles by (found by an adversarial review) ---

@mutant(None, lambda c: c.c // c.groups * c.r * c.s > 1024,
        caught_by=("reduction-1296-channels-144",))
def reduction_split_past_1024(input, weight, bias=None, stride=1, padding=0, dilation=1,
                              groups=1):
    """Split-K past a reduction of 1024 sums only the first half of the channels."""
    _, cg, r, s = weight.shape
    if cg * r * s <= 1024 or groups != 1:
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)
    half = cg // 2
    return F.conv2d(input[:, :half], weight[:, :half], bias, stride, padding, dilation)


@mutant(None, lambda c: c.n > 4, caught_by=("batch-6",))
def batch_chunks_of_4(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """Batch in chunks of 4 whose offset is the chunk's index, not 4 times it (N > 4)."""
    outs = [F.conv2d(input[i:i + 4], weight, bias, stride, padding, dilation, groups)
            for i in range(0, input.shape[0], 4)]
    chunks = [F.conv2d(input[k:k + len(o)], weight, bias, stride, padding, dilation, groups)
              for k, o in enumerate(outs)]
    return torch.cat(chunks) if input.shape[0] > 4 else outs[0]
