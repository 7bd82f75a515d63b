"""impls.Conv2d is a drop-in for nn.Conv2d: arguments, init, state_dict, padding modes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import impls
from impls.checker import SKIPPED
from impls.parity import MODULE_CASES, PADDING_MODES, check_module


@pytest.mark.parametrize("padding_mode", PADDING_MODES)
@pytest.mark.parametrize("module_case", MODULE_CASES, ids=[m.id for m in MODULE_CASES])
def test_module_matches_nn_conv2d(backend, module_case, padding_mode, precision, device):
    dtype, _ = precision
    if device != "cpu":
        pytest.skip("module parity runs on the CPU")
    result = check_module(backend, module_case, padding_mode, dtype)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.ok, result.repro()


def test_same_init_and_state_dict_as_nn_conv2d():
    kwargs = dict(in_channels=6, out_channels=4, kernel_size=(3, 2), stride=2, padding=1,
                  dilation=(1, 2), groups=2, bias=True, padding_mode="reflect")
    torch.manual_seed(7)
    ours = impls.Conv2d(**kwargs, backend="torch")
    torch.manual_seed(7)
    theirs = nn.Conv2d(**kwargs)
    assert list(ours.state_dict()) == list(theirs.state_dict()) == ["weight", "bias"]
    for key, value in theirs.state_dict().items():
        assert torch.equal(ours.state_dict()[key], value), key
    theirs.load_state_dict(ours.state_dict())
    ours.load_state_dict(theirs.state_dict())


def test_constructor_arguments_are_nn_conv2ds():
    module = impls.Conv2d(3, 8, 5, padding="same", bias=False, dtype=torch.float64,
                          backend="torch")
    assert module.weight.dtype == torch.float64 and module.bias is None
    assert module.padding == "same" and module.kernel_size == (5, 5)
    assert "backend='torch'" in repr(module)
    with pytest.raises(ValueError, match="known backends"):
        impls.Conv2d(3, 8, 3, backend="no-such-backend")
    with pytest.raises(ValueError):
        impls.Conv2d(3, 8, 3, padding_mode="mirror")


def test_a_layer_its_backend_can_never_run_is_refused_when_made():
    """Winograd here has no stride: a strided layer would refuse every forward, so it is
    refused at construction, with the error type and reason each forward would give.
    What it does use is accepted, and reflect padding is not the convolution's padding."""
    with pytest.raises(NotImplementedError, match="winograd-f4 does not support stride"):
        impls.Conv2d(8, 8, 3, stride=2, padding=1, backend="winograd-f4")
    impls.Conv2d(8, 8, 3, padding=1, backend="winograd-f4")
    impls.Conv2d(8, 8, 3, padding="same", backend="winograd-f4")
    plain = impls.Conv2d(8, 8, 3, stride=2, bias=False, backend="torch")
    assert plain._features() == {"stride"}
    assert impls.Conv2d(8, 8, 3, padding=2, padding_mode="reflect", dilation=2,
                        backend="torch")._features() == {"dilation", "bias"}
    assert impls.Conv2d(8, 8, 1, padding="same", groups=2,
                        backend="torch")._features() == {"groups", "bias"}


def test_a_misspelt_backend_is_refused_when_the_layer_is_made(isolated_registry):
    """As an unknown name is (ValueError): a "module:function" that does not load used to
    build a layer whose every forward failed."""
    with pytest.raises(ValueError, match="unknown backend 'torhc'"):
        impls.Conv2d(3, 4, 3, backend="torhc")
    with pytest.raises(ValueError, match="naive_conv2': cannot load: AttributeError"):
        impls.Conv2d(3, 4, 3, backend="impls.builtin.naive:naive_conv2")
    assert impls.Conv2d(3, 4, 3, backend="impls.builtin.naive:naive_conv2d").backend


def test_a_kernel_outside_the_method_is_refused_when_made_and_a_bad_value_at_forward():
    """A refusal of the backend's ``accepts`` that holds whatever the image (Winograd's
    kernel size) is the layer's too. An argument F.conv2d itself rejects is not a missing
    feature: nn.Conv2d builds the layer and its forward raises RuntimeError; so here."""
    with pytest.raises(NotImplementedError, match="winograd-f2 does not support kernel 2x4"):
        impls.Conv2d(4, 6, (2, 4), backend="winograd-f2")
    x = torch.randn(1, 4, 8, 8)
    for bad in (dict(stride=0), dict(dilation=0), dict(padding=-1)):
        layer = impls.Conv2d(4, 6, 3, backend="winograd-f2", **bad)
        reference = torch.nn.Conv2d(4, 6, 3, **bad)
        with pytest.raises(RuntimeError, match=next(iter(bad))):
            layer(x)
        with pytest.raises(RuntimeError):
            reference(x)


def test_module_trains_with_autograd_backends(backend):
    entry = impls.get_backend(backend)
    skip = entry.unsupported(dtype=torch.float64, features={"autograd", "padding", "bias"})
    if skip:
        pytest.skip(skip)
    torch.manual_seed(0)
    ours = impls.Conv2d(3, 4, 3, padding=1, dtype=torch.float64, backend=backend)
    theirs = nn.Conv2d(3, 4, 3, padding=1, dtype=torch.float64)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    ours(x).square().sum().backward()
    theirs(x).square().sum().backward()
    torch.testing.assert_close(ours.weight.grad, theirs.weight.grad)
    torch.testing.assert_close(ours.bias.grad, theirs.bias.grad)


@pytest.mark.parametrize("name", ["fft", "unfold", "winograd-f4", "auto", "naive"])
def test_a_compiled_model_runs_each_convolution_eagerly(name):
    """torch.compile traces the model; each impls convolution is a graph break that runs
    eagerly (fft's SciPy failed inside Dynamo: "Expected np.nditer base"). Dynamo's own
    "eager" backend: the tracing is what is tested, not inductor's code generation."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(impls.Conv2d(3, 8, 3, padding=1, backend=name), torch.nn.ReLU(),
                                impls.Conv2d(8, 4, 3, padding=1, backend=name))
    x = torch.randn(2, 3, 12, 12)
    torch._dynamo.reset()
    compiled = torch.compile(model, backend="eager")
    torch.testing.assert_close(compiled(x), model(x), rtol=0, atol=0)
    compiled(x).sum().backward()
    assert all(p.grad is not None for p in model.parameters())


@pytest.mark.parametrize("name", ["torch", "unfold"])
def test_torch_export_traces_a_model_through_the_front_end(name):
    """Non-strict torch.export (torch 2.13's default) reports compiling inside the disabled
    call too: conv2d sent itself back to its graph break until the recursion limit."""
    model = impls.Conv2d(2, 3, 3, padding=1, backend=name)
    x = torch.randn(1, 2, 5, 5)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x), model(x))


def test_module_parity_catches_a_layer_that_changes_its_weight(isolated_registry):
    """The case table catches a backend that writes to its arguments; module parity
    compared outputs only, and passed one that zeroes its weight after computing."""
    import torch.nn.functional as F

    @impls.register_backend(name="zeroes-its-weight")
    def zeroes(input, weight, bias, stride, padding, dilation, groups):
        out = F.conv2d(input, weight, bias, stride, padding, dilation, groups)
        weight.data.zero_()
        return out

    result = check_module("zeroes-its-weight", MODULE_CASES[0], "zeros")
    assert result.status == "failed" and "changed its weight in place" in result.reason
    assert check_module("torch", MODULE_CASES[0], "zeros").status == "passed"
