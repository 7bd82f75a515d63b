"""``impls.conv2d``: torch.nn.functional.conv2d's semantics in front of any backend.

Why it exists: every backend would otherwise re-implement argument parsing, "same" padding
and error messages, each slightly differently. Here they are done once, and a backend
receives exactly what F.conv2d's kernels receive: a 4-D input, (int, int) stride, padding
and dilation, an int groups, and symmetric padding only.

Errors are of the type F.conv2d raises for the same input (TypeError for a wrong argument
type, RuntimeError for a bad value or shape), but the message names the argument. A backend
that cannot run the call raises NotImplementedError (a RuntimeError, as F.conv2d raises for
an unsupported dtype on a device) with its declared reason; there is never a silent fallback.
A call whose workspace model says it would exceed the memory budget (impls.memory_budget)
raises torch.OutOfMemoryError, as an allocation that fails would, but before allocating.

What F.conv2d decides beyond the arithmetic is decided here too, once for every backend:
autocast's cast (the backend then runs with autocast off, in the dtype it was given), the
empty result of an empty input (connected to autograd), and the result's memory format.
"""

from __future__ import annotations

import argparse
import contextlib
import numbers
from collections.abc import Sequence

import torch
import torch._prims_common
import torch.nn.functional as F

from impls.registry import Backend, get_backend, require

Pair = tuple[int, int]


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           backend: str | Backend = "torch") -> torch.Tensor:
    """2D cross-correlation with F.conv2d's exact semantics, computed by ``backend``.

    Under torch.compile the call runs eagerly, a graph break around each convolution: its
    bookkeeping (memory budget, refusals, auto's table) and some backends (fft's SciPy)
    are not traceable, and the rest of the model still compiles."""
    if torch.compiler.is_compiling():
        return _eager_conv2d()(input, weight, bias, stride, padding, dilation, groups,
                               backend)
    return _conv2d(input, weight, bias, stride, padding, dilation, groups, backend)


def _conv2d(input, weight, bias, stride, padding, dilation, groups, backend) -> torch.Tensor:
    """conv2d's work, never the compile check: torch.export's non-strict tracing reports
    compiling inside the disabled call too, so conv2d called itself until the recursion
    limit (found by a review)."""
    entry = get_backend(backend)
    given = getattr(input, "dtype", None)
    input, weight, bias, autocast_off = _autocast(input, weight, bias)
    call = normalize(input, weight, bias, stride, padding, dilation, groups)
    entry = require(entry)
    reason = entry.unsupported(device=call.input.device.type, dtype=call.input.dtype,
                               features=call.features())
    reason = reason or entry.refuses(call.input.shape, call.weight.shape, call.stride,
                                     call.padding, call.dilation, call.groups)
    if reason and call.input.dtype != given and call.input.dtype not in entry.dtypes:
        reason += (f" (autocast cast the {given} input: it runs conv2d in "
                   f"{call.input.dtype}, as it does F.conv2d)")
    if reason:
        raise NotImplementedError(reason)
    reason = entry.over_budget(call.input.shape, call.weight.shape, call.stride, call.padding,
                               call.dilation, call.groups, call.input.dtype, call.input.device)
    if reason:  # what torch raises when it cannot allocate, raised before trying to
        raise torch.OutOfMemoryError(reason)
    if call.input.numel() == 0:
        out = _empty_result(call)
    else:
        with autocast_off:
            out = entry.fn(call.input, call.weight, call.bias, call.stride, call.padding,
                           call.dilation, call.groups)
        _check_tensor_result(entry.name, out)  # a user backend's slip, named at its source
        out = in_memory_format(out, call)
    return out.squeeze(0) if call.unbatched else out


_EAGER: list = []  # conv2d wrapped by torch.compiler.disable, made on first use


def _eager_conv2d():
    """conv2d as a graph break. Made lazily: torch.compiler.disable imports Dynamo, too slow
    for ``import impls``. Kept in a plain list, not functools.cache: Dynamo traces this call
    and warns that it ignores a cache wrapper."""
    if not _EAGER:
        _EAGER.append(torch.compiler.disable(_conv2d))
    return _EAGER[0]


def _autocast(input, weight, bias):
    """(input, weight, bias, a context for the backend's call) as F.conv2d sees them under
    autocast: conv2d is on autocast's lower-precision list, so inside an autocast region
    of the input's device type its float tensors but float64 are cast to the region's
    dtype, and the convolution runs in that dtype. A backend then gets those tensors, with
    autocast off: it computes in the dtype it is given, or refuses one it does not take
    (as for any other dtype), rather than having its own ops (an FFT, Winograd's GEMMs)
    cast behind its back, which gave float32 results with bfloat16's error."""
    if not isinstance(input, torch.Tensor) or not _autocast_on(input.device.type):
        return input, weight, bias, contextlib.nullcontext()
    device_type = input.device.type
    dtype = torch.get_autocast_dtype(device_type)

    def cast(t):
        eligible = (isinstance(t, torch.Tensor) and t.is_floating_point()
                    and t.dtype != torch.float64 and t.device.type == device_type)
        return t.to(dtype) if eligible else t

    return cast(input), cast(weight), cast(bias), torch.autocast(device_type, enabled=False)


def _autocast_on(device_type: str) -> bool:
    """Whether an autocast region of ``device_type`` is open; False for a device autocast
    does not know (meta: torch raised "unknown device type for autocast" before the
    backend's own refusal could name the device)."""
    try:
        return torch.is_autocast_enabled(device_type)
    except RuntimeError:
        return False


def in_memory_format(out: torch.Tensor, call: NormalizedCall) -> torch.Tensor:
    """``out`` laid out as F.conv2d lays out its result, strides and all. Code downstream of
    a conv (a channels-last network, a .view) depends on it, and a backend is free to
    compute in whatever layout suits its method: the copy, when one is needed, is here."""
    fmt = result_format(call)
    want = torch.empty(out.shape, memory_format=fmt, device="meta").stride()
    if out.stride() == want or not out.numel():
        return out
    return torch.empty_like(out, memory_format=fmt).copy_(out)


def result_format(call: NormalizedCall) -> torch.memory_format:
    """The memory format F.conv2d gives this call's result: ATen's own decision (the one
    torch's fake tensors use), which follows the kernel torch would pick (cuDNN keeps
    float64 contiguous, oneDNN goes channels-last when the input or the weight is). Where
    torch does not expose it, that CPU rule."""
    try:
        kernel = torch._C._select_conv_backend(
            call.input, call.weight, call.bias, list(call.stride), list(call.padding),
            list(call.dilation), False, [0, 0], call.groups)
        return torch._C._conv_determine_backend_memory_format(call.input, call.weight, kernel)
    except (AttributeError, RuntimeError, TypeError):
        suggest = getattr(torch._prims_common, "suggest_memory_format", None)
        if suggest is None:
            return torch.contiguous_format
        cl = torch.channels_last
        return cl if cl in (suggest(call.input), suggest(call.weight)) else \
            torch.contiguous_format


def device_arg(text: str) -> str:
    """argparse ``type=`` for --device (impls check, the sweep): ``text`` if it names a
    device the harness runs on (cpu, cuda, cuda:N); one spelling per device, so results
    keyed by it never split in two."""
    if text == "cpu" or text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise argparse.ArgumentTypeError(f"{text!r} is not cpu, cuda or cuda:N")


def missing_device(device: str) -> str:
    """Why the CUDA ``device`` a command was given is not here ("" when it is, or for the
    CPU): refused at the command's start (impls check, the sweep, the gate), instead of
    every case failing in it."""
    if not device.startswith("cuda"):
        return ""
    count, index = _cuda_devices(), device.partition(":")[2]
    if not count:
        return "torch sees no CUDA device here (torch.cuda.is_available() is False)"
    if index and (not index.isdigit() or int(index) >= count):
        return f"torch sees {count} CUDA device(s) here (cuda:0 to cuda:{count - 1})"
    return ""


def _cuda_devices() -> int:
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _check_tensor_result(name: str, out) -> None:
    if not isinstance(out, torch.Tensor):
        raise TypeError(f"backend {name!r} returned {type(out).__name__}, not a Tensor")


def check_output(name: str, out, call: NormalizedCall) -> None:
    """Raise when a backend's result is not what F.conv2d returns for ``call``: a Tensor
    (TypeError), of shape (N, K, P, Q) (ValueError), in the input's dtype and on its device
    (TypeError). The sweep checks each backend's first call of a case with this, since it
    calls backends directly: a time of the wrong thing is no result."""
    _check_tensor_result(name, out)
    p, q = output_size(tuple(call.input.shape[2:]), tuple(call.weight.shape[2:]), call.stride,
                       call.padding, call.dilation)
    want = (call.input.shape[0], call.weight.shape[0], p, q)
    if tuple(out.shape) != want:
        raise ValueError(f"backend {name!r} returned shape {tuple(out.shape)}, expected {want}")
    if (out.dtype, out.device) != (call.input.dtype, call.input.device):
        raise TypeError(f"backend {name!r} returned {out.dtype} on {out.device}, expected "
                        f"{call.input.dtype} on {call.input.device}")


def _empty_result(call: NormalizedCall) -> torch.Tensor:
    """What F.conv2d returns for an empty input (no images, or no channels): an empty (N, K,
    P, Q) tensor, (N, 0, P, Q) for zero channels (it keeps the input's zero channels, not K
    channels of bias). Still connected to autograd as F.conv2d's is, so a backward through
    an empty batch gives zero gradients instead of "does not require grad". Answered here,
    once, so every backend gives torch's result rather than each its own guess."""
    p, q = output_size(tuple(call.input.shape[2:]), tuple(call.weight.shape[2:]), call.stride,
                       call.padding, call.dilation)
    n, c = call.input.shape[:2]
    shape = (n, call.weight.shape[0] if c else 0, p, q)
    depends = call.input.sum() + call.weight.sum()
    if call.bias is not None:
        depends = depends + call.bias.sum()
    # Copied into a tensor of the input's dtype and F.conv2d's layout: no autocast or type
    # promotion of the sums decides either.
    out = torch.empty(shape, dtype=call.input.dtype, device=call.input.device,
                      memory_format=result_format(call))
    return out.copy_(depends.expand(shape))


class NormalizedCall:
    """A validated call: 4-D input (extra "same" row/column already added), int pairs."""

    __slots__ = ("input", "weight", "bias", "stride", "padding", "dilation", "groups",
                 "unbatched")

    def __init__(self, input, weight, bias, stride, padding, dilation, groups, unbatched):
        self.input, self.weight, self.bias = input, weight, bias
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.groups, self.unbatched = groups, unbatched

    def problem(self) -> tuple:
        """(input_shape, weight_shape, stride, padding, dilation, groups): what a backend's
        ``accepts``, ``workspace`` and ``delegate`` are called with."""
        return (tuple(self.input.shape), tuple(self.weight.shape), self.stride, self.padding,
                self.dilation, self.groups)

    def features(self) -> set[str]:
        """The features of :data:`impls.registry.FEATURES` this call uses."""
        used = used_features(self.stride, self.padding, self.dilation, self.groups,
                             self.bias is not None)
        if torch.is_grad_enabled() and any(
            t is not None and t.requires_grad for t in (self.input, self.weight, self.bias)
        ):
            used.add("autograd")
        return used


def used_features(stride: Pair, padding: Pair, dilation: Pair, groups: int,
                  bias: bool) -> set[str]:
    """The features of :data:`impls.registry.FEATURES` that a convolution with these
    normalised arguments uses, autograd aside (that one depends on the call's tensors)."""
    used = {"stride": tuple(stride) != (1, 1), "padding": tuple(padding) != (0, 0),
            "dilation": tuple(dilation) != (1, 1), "groups": groups != 1, "bias": bias}
    return {name for name, yes in used.items() if yes}


#: The largest padding F.conv2d takes (twice it must fit a signed 64-bit size).
MAX_PADDING = 2**62 - 1


def normalize(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1
              ) -> NormalizedCall:
    """Validate a conv2d call once and bring it to the form every backend receives."""
    _check_tensor("input", input)
    _check_tensor("weight", weight)
    if bias is not None:
        _check_tensor("bias", bias)
    stride = _pair("stride", stride)
    dilation = _pair("dilation", dilation)
    groups = _int("groups", groups)
    if isinstance(padding, str):
        if padding not in ("same", "valid"):
            raise RuntimeError(f"Invalid padding string: {padding!r} (padding must be "
                               "'same', 'valid', an int or a pair of ints)")
    else:
        padding = _pair("padding", padding)

    if input.dim() not in (3, 4):
        raise RuntimeError("Expected 3D (unbatched) or 4D (batched) input to conv2d, but got "
                           f"input of size: {list(input.shape)}")
    if weight.dim() != 4:
        raise RuntimeError(f"expected weight to be 4-dimensional (out_channels, in_channels/"
                           f"groups, kH, kW), but got weight of size {list(weight.shape)}")
    _check_positive(groups=(groups,), stride=stride, dilation=dilation)
    if isinstance(padding, tuple) and min(padding) < 0:
        raise RuntimeError(f"negative padding is not supported: padding={padding}")
    if isinstance(padding, tuple) and max(padding) > MAX_PADDING:  # 2x it overflows int64
        dim = padding.index(max(padding))
        raise RuntimeError(f"Given padding={padding[dim]} at dimension {dim}, expected "
                           f"padding to be at most {MAX_PADDING}")
    _check_dtype_device(input, weight, bias)

    unbatched = input.dim() == 3
    if unbatched:
        input = input.unsqueeze(0)
    if min(input.shape[2:]) == 0:
        raise RuntimeError("Only zero batch or zero channel inputs are supported, but got "
                           f"input shape: {list(input.shape)}")
    if min(weight.shape[2:]) == 0:
        raise RuntimeError("kernel size should be greater than zero, but got weight of size "
                           f"{list(weight.shape)}")
    _check_shapes(input, weight, bias, groups)
    input, padding = _resolve_padding(input, weight, padding, stride, dilation)
    _check_kernel_fits(input, weight, padding, dilation)
    return NormalizedCall(input, weight, bias, stride, padding, dilation, groups, unbatched)


def _check_tensor(name: str, value) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"conv2d(): argument '{name}' must be Tensor, not "
                        f"{type(value).__name__}")
    if value.layout != torch.strided:  # F.conv2d: RuntimeError, naming no argument
        raise RuntimeError(f"conv2d() takes dense (strided) tensors, but {name} has layout "
                           f"{value.layout}")


def _int(name: str, value) -> int:
    # bool is an int in Python, but F.conv2d rejects it: so do we. Like F.conv2d, an
    # integer tensor of one element counts as its value (stride=torch.tensor(2)).
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not (
            value.dtype.is_floating_point or value.dtype.is_complex
            or value.dtype == torch.bool):
        return int(value.item())
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"conv2d(): argument '{name}' must be int, not {type(value).__name__}")
    if not -2**63 <= int(value) < 2**63:  # F.conv2d: "Overflow when unpacking long long"
        raise ValueError(f"conv2d(): argument '{name}' overflows a 64-bit integer: {value}")
    return int(value)


def _pair(name: str, value) -> Pair:
    """An int or a sequence of one or two ints, as F.conv2d accepts, as an (int, int)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = [_int(name, v) for v in value]
        if len(items) == 1:
            items = items * 2
        if len(items) != 2:
            raise RuntimeError(f"expected {name} to be a single integer value or a list of 2 "
                               f"values to match the convolution dimensions, but got "
                               f"{name}={list(value)}")
        return items[0], items[1]
    if isinstance(value, torch.Size):
        return _pair(name, tuple(value))
    value = _int(name, value)
    return value, value


def _check_positive(**pairs: tuple[int, ...]) -> None:
    for name, values in pairs.items():
        if min(values) <= 0:
            shown = values[0] if len(values) == 1 else values
            raise RuntimeError(f"non-positive {name} is not supported: {name}={shown}")


def _check_dtype_device(input, weight, bias) -> None:
    for name, tensor in (("weight", weight), ("bias", bias)):
        if tensor is None:
            continue
        if tensor.dtype != input.dtype:
            raise RuntimeError(f"expected {name} to have the input's dtype {input.dtype}, "
                               f"but got {name} of dtype {tensor.dtype}")
        if tensor.device != input.device:
            raise RuntimeError(f"expected {name} on the input's device {input.device}, "
                               f"but got {name} on {tensor.device}")


def _check_shapes(input, weight, bias, groups: int) -> None:
    out_channels = weight.shape[0]
    if out_channels < 1 or out_channels % groups:
        raise RuntimeError(f"Given groups={groups}, expected weight to be divisible by {groups} "
                           f"and at least 1 at dimension 0 (out_channels), but got weight of "
                           f"size {list(weight.shape)}")
    if input.shape[1] != weight.shape[1] * groups:
        raise RuntimeError(f"Given groups={groups}, weight of size {list(weight.shape)}, "
                           f"expected input{list(input.shape)} to have "
                           f"{weight.shape[1] * groups} channels, but got {input.shape[1]} "
                           f"channels instead")
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise RuntimeError(f"Given weight of size {list(weight.shape)}, expected bias to be "
                           f"1-dimensional with {out_channels} elements, but got bias of size "
                           f"{list(bias.shape)} instead")


def _resolve_padding(input, weight, padding, stride: Pair, dilation: Pair):
    """Turn "same"/"valid" into symmetric int padding, adding PyTorch's extra row/column.

    For "same", the total padding is dilation*(k-1) per axis; when that is odd PyTorch puts
    the extra row/column at the bottom/right. We pad it here so backends see symmetric padding.
    """
    if padding == "valid":
        return input, (0, 0)
    if padding != "same":
        return input, padding
    if stride != (1, 1):
        raise RuntimeError(f"padding='same' is not supported for strided convolutions "
                           f"(stride={stride})")
    totals = [d * (k - 1) for d, k in zip(dilation, weight.shape[2:])]
    extra_h, extra_w = totals[0] % 2, totals[1] % 2
    if extra_h or extra_w:
        input = F.pad(input, (0, extra_w, 0, extra_h))
    return input, (totals[0] // 2, totals[1] // 2)


def _check_kernel_fits(input, weight, padding: Pair, dilation: Pair) -> None:
    padded = [s + 2 * p for s, p in zip(input.shape[2:], padding)]
    kernel = [d * (k - 1) + 1 for d, k in zip(dilation, weight.shape[2:])]
    if any(k > s for k, s in zip(kernel, padded)):
        raise RuntimeError(f"Calculated padded input size per channel: ({padded[0]} x "
                           f"{padded[1]}). Kernel size: ({kernel[0]} x {kernel[1]}). Kernel "
                           f"size can't be greater than actual input size (check weight, "
                           f"padding and dilation)")


def output_size(size: Pair, kernel: Pair, stride: Pair, padding: Pair, dilation: Pair) -> Pair:
    """(H + 2P - D*(K-1) - 1) // S + 1 per axis: the output height and width."""
    return tuple((s + 2 * p - d * (k - 1) - 1) // st + 1
                 for s, k, st, p, d in zip(size, kernel, stride, padding, dilation))
