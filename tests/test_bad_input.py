"""Bad input gets what F.conv2d gives it: the same exception type, a message naming the
argument; NaN/Inf are never hidden; an empty batch works; unknown backends are refused.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import impls
from impls.cases import CASES_BY_ID
from impls.non_finite import IDS as NON_FINITE_IDS

X = torch.randn(2, 4, 8, 8)
W = torch.randn(6, 4, 3, 3)

# id: (args, kwargs, a word the message must contain)
BAD_CALLS = {
    "input-5d": ((torch.randn(1, 2, 4, 8, 8), W), {}, "input"),
    "input-2d": ((torch.randn(8, 8), W), {}, "input"),
    "weight-3d": ((X, torch.randn(6, 4, 3)), {}, "weight"),
    "channel-mismatch": ((X, torch.randn(6, 3, 3, 3)), {}, "channels"),
    "groups-do-not-divide-input": ((X, torch.randn(6, 4, 3, 3)), {"groups": 3}, "groups"),
    "groups-do-not-divide-output": ((X, torch.randn(5, 2, 3, 3)), {"groups": 2}, "groups"),
    "groups-zero": ((X, W), {"groups": 0}, "groups"),
    "stride-zero": ((X, W), {"stride": 0}, "stride"),
    "stride-negative": ((X, W), {"stride": (1, -1)}, "stride"),
    "dilation-zero": ((X, W), {"dilation": 0}, "dilation"),
    "padding-negative": ((X, W), {"padding": -1}, "padding"),
    "kernel-larger-than-padded-input": ((X, torch.randn(6, 4, 9, 9)), {}, "Kernel size"),
    "dilated-kernel-too-large": ((X, W), {"dilation": 4}, "Kernel size"),
    "same-with-stride": ((X, W), {"padding": "same", "stride": 2}, "stride"),
    "padding-unknown-string": ((X, W), {"padding": "full"}, "padding"),
    "stride-three-values": ((X, W), {"stride": (1, 1, 1)}, "stride"),
    "padding-three-values": ((X, W), {"padding": (1, 1, 1)}, "padding"),
    "stride-float": ((X, W), {"stride": 1.5}, "stride"),
    "stride-bool": ((X, W), {"stride": True}, "stride"),
    "stride-float-tensor": ((X, W), {"stride": torch.tensor(2.0)}, "stride"),
    "stride-two-element-tensor": ((X, W), {"stride": torch.tensor([2, 1])}, "stride"),
    "groups-float": ((X, W), {"groups": 1.0}, "groups"),
    "input-not-tensor": (([1.0, 2.0], W), {}, "input"),
    "weight-not-tensor": ((X, 3.0), {}, "weight"),
    "dtype-mismatch": ((X.double(), W), {}, "dtype"),
    "bias-dtype-mismatch": ((X, W, torch.randn(6, dtype=torch.float64)), {}, "bias"),
    "bias-wrong-size": ((X, W, torch.randn(5)), {}, "bias"),
    "input-zero-height": ((torch.randn(1, 4, 0, 8), W), {"padding": 2}, "input"),
    "weight-zero-width": ((X, torch.randn(6, 4, 3, 0)), {}, "weight"),
    "weight-no-output-channels": ((X, torch.randn(0, 4, 3, 3)), {}, "weight"),
    "input-sparse": ((X.to_sparse(), W), {}, "input"),
    "weight-sparse": ((X, W.to_sparse()), {}, "weight"),
    # Beyond 64 bits (F.conv2d: ValueError) and padding past 2**62 - 1 (RuntimeError): fft
    # raised OverflowError, torch's backend TypeError, naive and unfold out-of-memory.
    "stride-beyond-int64": ((X, W), {"stride": 2**70}, "stride"),
    "padding-beyond-int64": ((X, W), {"padding": 2**70}, "padding"),
    "groups-beyond-int64": ((X, W), {"groups": 2**70}, "groups"),
    "padding-past-its-limit": ((X, W), {"padding": 2**62}, "padding"),
}


def _error_of(fn):
    try:
        fn()
    except Exception as exc:
        return exc
    return None


@pytest.mark.parametrize("call", BAD_CALLS, ids=list(BAD_CALLS))
def test_bad_input_raises_like_f_conv2d(call, backend):
    args, kwargs, word = BAD_CALLS[call]
    theirs = _error_of(lambda: F.conv2d(*args, **kwargs))
    assert theirs is not None, "the table must only hold calls F.conv2d rejects"
    ours = _error_of(lambda: impls.conv2d(*args, **kwargs, backend=backend))
    assert ours is not None, f"impls.conv2d accepted {call}"
    assert type(ours) is type(theirs), f"{type(ours).__name__} where F.conv2d raises " \
                                       f"{type(theirs).__name__}: {ours}"
    assert word.lower() in str(ours).lower(), f"message does not name {word!r}: {ours}"


def test_unknown_backend_lists_known_names():
    with pytest.raises(ValueError, match="known backends:.*torch") as info:
        impls.conv2d(X, W, backend="no-such-backend")
    for entry in impls.backends():
        assert entry.name in str(info.value)


def test_unavailable_backend_raises_its_reason():
    entry = impls.Backend(name="nowhere", fn=F.conv2d, probe=lambda: "needs a quantum GPU")
    with pytest.raises(RuntimeError, match="needs a quantum GPU"):
        impls.conv2d(X, W, backend=entry)


def test_a_device_no_backend_runs_on_is_refused_by_name():
    """Meta tensors (shape inference, deferred init) got "unknown device type for
    autocast" from the autocast check, before the backend could name the device."""
    with torch.device("meta"):
        x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    for name in ("torch", "unfold"):
        with pytest.raises(NotImplementedError, match="does not run on meta"):
            impls.conv2d(x, w, padding=1, backend=name)


def test_unsupported_dtype_is_refused_not_converted(backend):
    entry = impls.get_backend(backend)
    missing = [d for d in (torch.float16, torch.bfloat16, torch.float64, torch.float32)
               if d not in entry.dtypes]
    if not missing or not entry.available or "cpu" not in entry.devices:
        pytest.skip(f"{backend} supports every float dtype here (or does not run on the CPU)")
    with pytest.raises(NotImplementedError, match=str(missing[0]).removeprefix("torch.")):
        impls.conv2d(X.to(missing[0]), W.to(missing[0]), backend=backend)


@pytest.mark.parametrize("id_", NON_FINITE_IDS)
def test_non_finite_values_are_never_hidden(backend, id_):
    """impls check's comparison (impls.non_finite), for every backend of the run: a value
    in the input, the weight and the bias."""
    from impls.non_finite import check_non_finite

    result = check_non_finite(backend, id_)
    if result.status == "skipped":
        pytest.skip(result.reason)
    assert result.ok, result.repro()


def test_a_backend_that_cleans_its_input_is_caught_hiding_a_nan(isolated_registry):
    """The check's own power: nan_to_num before a correct convolution passes the case table
    (finite data) and must fail here, naming what it hid; F.conv2d itself passes."""
    from impls.non_finite import check_non_finite

    @impls.register_backend(name="cleans-nan")
    def cleans(input, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(torch.nan_to_num(input), weight, bias, stride, padding, dilation,
                        groups)

    for value in ("nan", "inf", "-inf"):
        result = check_non_finite("cleans-nan", value)
        assert result.status == "failed" and f"from a {value} in the input are finite" in \
            result.reason, result.repro()
        assert "hide a NaN" in result.reason and "others are not" not in result.reason
        assert "--case non-finite/" + value in result.command()
        assert check_non_finite("torch", value).status == "passed"


@pytest.mark.parametrize("tensor", ["weight", "bias"])
def test_a_backend_that_cleans_its_weight_or_bias_is_caught(isolated_registry, tensor):
    """A backend that prepares its operands once and cleans them (a quantisation step, a
    kept transform built with nan_to_num) passes the case table and the input's check; the
    weight's and the bias's must fail it, each naming the tensor, with a repro line."""
    from impls.non_finite import check_non_finite

    @impls.register_backend(name="cleans-" + tensor)
    def cleans(input, weight, bias, stride, padding, dilation, groups):
        if tensor == "weight":
            weight = torch.nan_to_num(weight, posinf=1.0, neginf=-1.0)
        elif bias is not None:
            bias = torch.nan_to_num(bias, posinf=1.0, neginf=-1.0)
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    assert check_non_finite("cleans-" + tensor, "nan").status == "passed"
    for value in ("nan", "inf", "-inf"):
        result = check_non_finite("cleans-" + tensor, f"{value}-in-{tensor}")
        assert result.status == "failed", result.repro()
        assert f"from a {value} in the {tensor} are finite here" in result.reason
        assert f"--case non-finite/{value}-in-{tensor}" in result.command()
        assert check_non_finite("torch", f"{value}-in-{tensor}").status == "passed"


def test_non_finite_checks_follow_the_mode_and_skip_a_missing_bias(isolated_registry):
    """Under --mode exact the check's other values are exact-mode data and its row says so
    (it had run, and said, "random"); a backend without bias skips the bias's check with
    the reason, rather than passing a check that put the value nowhere."""
    from impls.non_finite import check_non_finite

    result = check_non_finite("torch", "nan-in-weight", mode="exact")
    assert result.status == "passed" and result.mode == "exact", result.repro()
    assert "--mode exact" in result.command()

    @impls.register_backend(name="no-bias", features=impls.FEATURES - {"bias"})
    def no_bias(input, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(input, weight, None, stride, padding, dilation, groups)

    skipped = check_non_finite("no-bias", "inf-in-bias")
    assert skipped.status == "skipped" and "declares no bias" in skipped.reason

    @impls.register_backend(name="no-padding", features=impls.FEATURES - {"padding"})
    def no_padding(input, weight, bias, stride, padding, dilation, groups):
        return F.conv2d(input, weight, bias, stride, padding, dilation, groups)

    # Declaring bias but not padding still gets a problem with a bias to put the value in.
    assert check_non_finite("no-padding", "inf-in-bias").status == "passed"
    assert check_non_finite("no-bias", "inf-in-weight").status == "passed"


def test_non_finite_data_follow_the_cli_mode(monkeypatch, capsys):
    """`impls check --mode exact` fills the non-finite check's other values with exact-mode
    data and labels its row so; with both modes, random."""
    import json

    from impls import non_finite
    from impls.__main__ import main

    filled, real = [], non_finite.fill
    monkeypatch.setattr(non_finite, "fill",
                        lambda case, mode, *rest: filled.append(mode) or real(case, mode, *rest))
    for modes, want in ((["exact"], "exact"), (["exact", "random"], "random")):
        filled.clear()
        argv = ["check", "--backend", "torch", "--case", "non-finite/nan-in-weight",
                "--dtype", "float32", "--in-process", "--format", "json"]
        assert main(argv + [arg for m in modes for arg in ("--mode", m)]) == 0
        rows = json.loads(capsys.readouterr().out)["results"]
        assert filled == [want] and [r["mode"] for r in rows] == [want]


def test_a_shifted_window_is_named_as_such_not_as_hiding_a_nan(isolated_registry):
    """A padding bug moves the NaN's outputs: told it hid a NaN, a user looks for a
    sanitising step that is not there."""
    from impls.non_finite import check_non_finite

    @impls.register_backend(name="pads-left")
    def pads_left(input, weight, bias, stride, padding, dilation, groups):
        ph, pw = padding
        return F.conv2d(F.pad(input, (pw + 1, pw - 1, ph, ph)), weight, bias, stride, 0,
                        dilation, groups)

    result = check_non_finite("pads-left", "nan")
    assert result.status == "failed" and "others are not" in result.reason, result.reason
    assert "hide" not in result.reason


def test_empty_batch(backend):
    skip = impls.get_backend(backend).unsupported(dtype=torch.float32, features={"padding"})
    if skip:
        pytest.skip(skip)
    x = torch.randn(0, 4, 8, 8)
    out = impls.conv2d(x, W, padding=1, backend=backend)
    assert out.shape == F.conv2d(x, W, padding=1).shape == (0, 6, 8, 8)


@pytest.mark.parametrize("shape, groups", [((2, 0, 8, 8), 1), ((0, 8, 8), 2)],
                         ids=["batched", "unbatched-grouped"])
def test_zero_input_channels(backend, shape, groups):
    """F.conv2d answers (N, 0, P, Q) here, not K channels of bias: every backend must too."""
    entry = impls.get_backend(backend)
    skip = entry.unsupported(dtype=torch.float32, features={"padding", "bias", "groups"})
    if skip:
        pytest.skip(skip)
    x, w, b = torch.randn(shape), torch.randn(6, 0, 3, 3), torch.randn(6)
    want = F.conv2d(x, w, b, padding=1, groups=groups)
    got = impls.conv2d(x, w, b, padding=1, groups=groups, backend=backend)
    assert got.shape == want.shape and got.dtype == want.dtype


def test_backend_returning_no_tensor_is_named(isolated_registry):
    impls.register_backend(lambda *args: None, name="returns-none")
    with pytest.raises(TypeError, match="backend 'returns-none' returned NoneType"):
        impls.conv2d(X, W, backend="returns-none")


def test_unbatched_input(backend):
    skip = impls.get_backend(backend).unsupported(dtype=torch.float64, features={"padding"})
    if skip:
        pytest.skip(skip)
    x, w = torch.randn(4, 7, 9, dtype=torch.float64), W.double()
    out = impls.conv2d(x, w, padding=(1, 2), backend=backend)
    torch.testing.assert_close(out, F.conv2d(x, w, padding=(1, 2)))


@pytest.mark.parametrize("form", [2, (2,), (2, 2), [2, 2], torch.Size([2, 2]), torch.tensor(2),
                                  torch.tensor([2], dtype=torch.int32), [torch.tensor(2), 2]],
                         ids=["int", "1-tuple", "tuple", "list", "size", "0d-tensor",
                              "1-element-tensor", "list-of-tensor"])
def test_argument_forms(form):
    x, w = torch.randn(1, 4, 9, 9, dtype=torch.float64), W.double()
    out = impls.conv2d(x, w, stride=form, padding=form, dilation=form)
    torch.testing.assert_close(out, F.conv2d(x, w, stride=form, padding=form, dilation=form))


CL = torch.channels_last
LAYOUTS = {
    "input-channels-last": (X.contiguous(memory_format=CL), W, {}),
    "weight-channels-last": (X, W.contiguous(memory_format=CL), {}),
    "depthwise-input-channels-last": (X.contiguous(memory_format=CL), torch.randn(4, 1, 3, 3),
                                      {"groups": 4}),
    "same-padding-extra-column": (X.contiguous(memory_format=CL), torch.randn(6, 4, 2, 2),
                                  {"padding": "same"}),
    "strided-input-channels-last": (X.contiguous(memory_format=CL), W, {"stride": 2}),
    "transposed-input": (X.transpose(2, 3), W, {}),
    "unbatched-permuted": (torch.randn(8, 8, 4).permute(2, 0, 1), W, {}),
    # Both layouts at once (a 1x1 output, one output channel): the strides still follow.
    "one-by-one-output": (X.contiguous(memory_format=CL), torch.randn(6, 4, 8, 8), {}),
    "one-output-channel": (X.contiguous(memory_format=CL), torch.randn(1, 4, 3, 3), {}),
    "empty-batch": (torch.randn(0, 4, 8, 8).contiguous(memory_format=CL), W, {}),
}


@pytest.mark.parametrize("x, w, kwargs", LAYOUTS.values(), ids=list(LAYOUTS))
def test_result_layout_follows_f_conv2d(backend, x, w, kwargs):
    """F.conv2d answers channels-last when the input or the weight is, else contiguous (on
    the CPU), strides and all; a channels-last network (or a .view after the conv) relies
    on it, whatever the backend."""
    entry = impls.get_backend(backend)
    features = {"groups"} if "groups" in kwargs else set()
    features |= {"stride"} if "stride" in kwargs else set()
    features |= {"padding"} if "padding" in kwargs else set()
    skip = entry.unsupported(dtype=torch.float32, features=features) or entry.refuses(
        *impls.frontend.normalize(x, w, **kwargs).problem())
    if skip:
        pytest.skip(skip)
    want = F.conv2d(x, w, **kwargs)
    got = impls.conv2d(x, w, backend=backend, **kwargs)
    assert got.stride() == want.stride()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_autocast_runs_the_backend_in_its_dtype_or_refuses(backend, dtype):
    """Under autocast F.conv2d casts to the region's dtype and answers in it; a backend gets
    those tensors with autocast off, and one that does not take the dtype refuses, naming
    autocast, instead of returning float32 computed with casts inside (3% error)."""
    x, w, b = torch.randn(2, 4, 8, 8), torch.randn(6, 4, 3, 3), torch.randn(6)
    entry = impls.get_backend(backend)
    with torch.autocast("cpu", dtype=dtype):
        want = F.conv2d(x, w, b, padding=1)
        skip = entry.unsupported(features={"padding", "bias"})
        if skip:
            pytest.skip(skip)
        if entry.unsupported(dtype=dtype):
            with pytest.raises(NotImplementedError, match="autocast"):
                impls.conv2d(x, w, b, padding=1, backend=backend)
            return
        got = impls.conv2d(x, w, b, padding=1, backend=backend)
    assert got.dtype == want.dtype == dtype
    torch.testing.assert_close(got.float(), want.float(), atol=0.1, rtol=0.05)


@pytest.mark.parametrize("shape", [(0, 4, 8, 8), (2, 0, 8, 8)], ids=["no-images", "no-channels"])
def test_an_empty_input_stays_connected_to_autograd(backend, shape):
    """F.conv2d's empty result has a grad_fn: a backward through an empty batch gives zero
    gradients, not "element 0 of tensors does not require grad"."""
    entry = impls.get_backend(backend)
    skip = entry.unsupported(dtype=torch.float32, features={"padding", "bias", "autograd"})
    if skip:
        pytest.skip(skip)
    x = torch.randn(shape, requires_grad=True)
    w = torch.randn(6, shape[1], 3, 3, requires_grad=True)
    b = torch.randn(6, requires_grad=True)
    out = impls.conv2d(x, w, b, padding=1, backend=backend)
    assert out.shape == F.conv2d(x, w, b, padding=1).shape and out.requires_grad
    out.sum().backward()
    assert not w.grad.any() and not b.grad.any() and x.grad.shape == x.shape


def _per_tensor_scale(input, weight, bias, stride, padding, dilation, groups):
    """Dynamic quantisation's per-tensor scale, taken over the whole batch."""
    scale = input.abs().amax().clamp_min(1e-6)
    out = F.conv2d(input / scale, weight, None, stride, padding, dilation, groups) * scale
    return out if bias is None else out + bias.view(1, -1, 1, 1)


def _groups_as_dense(input, weight, bias, stride, padding, dilation, groups):
    """A grouped convolution run as one dense one, zeros between the groups' blocks."""
    k, cg = weight.shape[:2]
    dense = weight.new_zeros(k, cg * groups, *weight.shape[2:])
    for g in range(groups):
        rows = slice(g * (k // groups), (g + 1) * (k // groups))
        dense[rows, g * cg:(g + 1) * cg] = weight[rows]
    return F.conv2d(input, dense, bias, stride, padding, dilation, 1)


@pytest.mark.parametrize("fn, reaches", [
    (_per_tensor_scale, "324 outputs of other images and 162 outputs of other groups' output "
                        "channels non-finite; first at (0, 2, 0, 0)"),
    (_groups_as_dense, "made 18 outputs of other groups' output channels non-finite; first at "
                       "(0, 2, 3, 4)")])
def test_a_nan_must_not_reach_another_image_or_group(isolated_registry, fn, reaches):
    """Right on finite data (the case table passes both), each carries one image's NaN
    into another image's or another group's outputs, which F.conv2d never does."""
    from impls.checker import check_case
    from impls.non_finite import check_non_finite

    impls.register_backend(fn, name="leaks")
    assert check_case("leaks", CASES_BY_ID["groups-2"], "random").status == "passed"
    result = check_non_finite("leaks", "nan")
    assert result.status == "failed", result.repro()
    assert reaches in result.reason, result.reason
