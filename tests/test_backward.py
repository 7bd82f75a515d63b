"""Gradients: every backend's autograd against the float64 reference, and gradcheck.

Three layers, each trusting the one before it:
- the NumPy gradient reference (impls.reference) against torch autograd in float64,
  bit for bit on integer data;
- torch.autograd.gradcheck (finite differences, float64) on small cases, for every
  backend that declares float64 and "autograd";
- the gradient checker (impls.backward) over the whole case table, both directions, both
  fill modes, every backend; declared gaps (no "autograd", dtype, max_macs) are skips with
  the backend's reason, so a backend picks these tests up as soon as it declares autograd.
Plus fft's own promises (the forward is unchanged and saves only what backward reads)
and the checker catching wrong gradients with a repro that names the direction.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import impls
from impls.backward import DIRECTIONS, check_backward, gradient_call
from impls.cases import CASES, Case
from impls.checker import FAILED, SKIPPED, check_case, refusal
from impls.fill import MODES, fill
from impls.reference import reference_conv2d_backward

#: Small enough for finite differences on every backend (the naive loops included).
GRADCHECK_CASES = (
    Case("plain-bias", 2, 3, 5, 6, 4, 3, 2),
    Case("stride-pad-rect", 1, 2, 7, 6, 3, 3, 2, stride=(2, 1), padding=(1, 2)),
    Case("dilation-pad-larger", 1, 2, 6, 5, 2, 2, 3, padding=(3, 1), dilation=(2, 1)),
    Case("groups-stride-no-bias", 2, 4, 6, 6, 6, 3, 3, stride=2, padding=1, groups=2,
         bias=False),
    Case("depthwise-dilated", 1, 3, 7, 7, 3, 3, 3, padding=2, dilation=2, groups=3),
    Case("same-even-kernel", 1, 2, 5, 6, 3, 2, 4, padding="same"),
)


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per test worker: with xdist's worker per core, two threads each
    oversubscribe the cores, and OpenMP's spin-waits then make the many tiny ops here
    10-100x slower (measured: a 2x3x8x8 conv, 0.04 ms on one thread, 8 ms on two)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def skip_unless_runs(backend: str, **needs) -> None:
    """Skip with the backend's own reason when it cannot run what the test needs."""
    reason = impls.get_backend(backend).unsupported(**needs)
    if reason:
        pytest.skip(reason)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_reference_gradients_match_torch_autograd(case, mode):
    data = fill(case, mode, torch.float64, seed=1)
    x = data.input.clone().requires_grad_()
    w = data.weight.clone().requires_grad_()
    b = torch.zeros(case.k, dtype=torch.float64, requires_grad=True)
    out = F.conv2d(x, w, b, **case.kwargs())
    go = fill(Case("go", *out.shape[:2], *out.shape[2:], 1, 1, 1), mode, torch.float64).input
    out.backward(go)
    refs = reference_conv2d_backward(data.input, data.weight, go, **case.kwargs())
    for name, ref, grad in zip(("input", "weight", "bias"), refs, (x.grad, w.grad, b.grad)):
        got = grad.numpy()
        if mode == "exact":  # integer sums far below 2**53: both are exact
            np.testing.assert_array_equal(got, ref, err_msg=f"grad_{name}")
        else:
            scale = np.abs(ref).max(initial=1.0)
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * scale,
                                       err_msg=f"grad_{name}")


@pytest.mark.parametrize("case", GRADCHECK_CASES, ids=[c.id for c in GRADCHECK_CASES])
def test_gradcheck(backend, case):
    skip_unless_runs(backend, dtype=torch.float64, features=case.features() | {"autograd"})
    if refusal(impls.get_backend(backend), case):
        pytest.skip(refusal(impls.get_backend(backend), case))
    gen = torch.Generator().manual_seed(0)
    make = lambda *shape: torch.randn(*shape, generator=gen, dtype=torch.float64,  # noqa: E731
                                      requires_grad=True)
    inputs = (make(*case.input_shape), make(*case.weight_shape),
              make(case.k) if case.bias else None)

    def conv(x, w, b):
        return impls.conv2d(x, w, b, backend=backend, **case.kwargs())

    # fast_mode compares v^T J u for random u, v instead of every Jacobian entry: any wrong
    # entry still shows (with probability 1), at a few forwards instead of one per element,
    # which the naive loops need (full mode: ~45 s for this test).
    assert torch.autograd.gradcheck(conv, inputs, eps=1e-6, atol=1e-7, rtol=1e-5,
                                    fast_mode=True)


def test_gradcheck_unbatched_input(backend):
    skip_unless_runs(backend, dtype=torch.float64, features={"autograd", "padding", "bias"})
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(*s, generator=gen, dtype=torch.float64, requires_grad=True)
               for s in ((2, 5, 4), (3, 2, 3, 3), (3,)))
    assert torch.autograd.gradcheck(
        lambda x, w, b: impls.conv2d(x, w, b, padding=1, backend=backend), (x, w, b),
        fast_mode=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_gradients_match_reference(backend, case, direction, mode, precision, device):
    dtype, tf32 = precision
    if device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    result = check_backward(backend, case, direction, mode, dtype, device, seed=0, tf32=tf32)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.ok, result.repro()


# --- fft's explicit backward -----------------------------------------------------------


@pytest.mark.parametrize("case", GRADCHECK_CASES[:3] + tuple(
    c for c in CASES if c.id in ("large-kernel-13", "large-kernel-31-depthwise")),
                         ids=lambda c: c.id)
def test_fft_forward_is_the_same_with_and_without_autograd(case):
    data = fill(case, "random", torch.float32)
    plain = impls.conv2d(data.input, data.weight, data.bias, backend="fft", **case.kwargs())
    x = data.input.clone().requires_grad_()
    tracked = impls.conv2d(x, data.weight, data.bias, backend="fft", **case.kwargs())
    assert tracked.grad_fn is not None
    assert torch.equal(plain, tracked.detach())


def test_fft_without_grad_mode_builds_no_graph():
    x = torch.randn(1, 2, 8, 8, requires_grad=True)
    with torch.no_grad():
        out = impls.conv2d(x, torch.randn(3, 2, 3, 3), backend="fft")
    assert out.grad_fn is None


@pytest.mark.parametrize(("needs", "saved"), [
    ("input", (False, True)),      # grad_input reads the weight only
    ("weight", (True, False)),     # grad_weight reads the input only
    ("bias", (False, False)),      # grad_bias reads nothing
])
def test_fft_saves_only_what_its_backward_reads(needs, saved):
    x, w, b = torch.randn(2, 4, 9, 9), torch.randn(6, 2, 3, 3), torch.randn(6)
    {"input": x, "weight": w, "bias": b}[needs].requires_grad_()
    out = impls.conv2d(x, w, b, padding=1, groups=2, backend="fft")
    kept = tuple(t is not None for t in out.grad_fn.saved_tensors)
    assert kept == saved


def test_fft_takes_a_broadcast_output_gradient():
    # out.sum().backward() hands backward an expanded (stride-0) gradient.
    x = torch.randn(2, 4, 9, 9, dtype=torch.float64, requires_grad=True)
    w = torch.randn(6, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(6, dtype=torch.float64, requires_grad=True)
    grads = []
    for backend in ("fft", "torch"):
        impls.conv2d(x, w, b, stride=2, padding=1, groups=2, backend=backend).sum().backward()
        grads.append([t.grad.clone() for t in (x, w, b)])
        x.grad = w.grad = b.grad = None
    for got, expected in zip(*grads):
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


def test_fft_refuses_double_backward():
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = impls.conv2d(x, w, backend="fft")
    # grad_input depends on w; a grad_out that requires grad makes it a real double backward.
    go = torch.ones_like(out, requires_grad=True)
    (gx,) = torch.autograd.grad(out, x, go, create_graph=True)
    with pytest.raises(RuntimeError, match="twice|once_differentiable|double"):
        gx.sum().backward()


def test_fft_refuses_a_gradient_penalty_rather_than_drop_it():
    """A gradient penalty passes in a grad_out that does not require grad, and once
    differentiable let the data gradient come back detached from the weight: a review's
    penalty was silently missing from w.grad (0.378 where torch's was 3657)."""
    x = torch.randn(1, 2, 6, 6, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    out = impls.conv2d(x, w, padding=1, backend="fft")
    (gx,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    assert gx.requires_grad  # it depends on w: differentiating it must not pass silently
    with pytest.raises(RuntimeError, match="differentiate twice"):
        (out.mean() + gx.pow(2).sum()).backward()
    # Without create_graph nothing changes: plain gradients, as before.
    (gx,) = torch.autograd.grad(impls.conv2d(x, w, padding=1, backend="fft").sum(), x)
    assert not gx.requires_grad


def test_forward_mode_derivatives_are_carried_or_refused_never_dropped():
    """fft returned a dual's value with its tangent dropped (NumPy saw the primal only), and
    failed inside torch.func; unfold refused a jvp from batch 8 on (its chunked bmm(out=)
    has no derivative). Each backend either carries the tangent or refuses by name."""
    from torch.autograd import forward_ad

    x, w = torch.randn(8, 4, 20, 20), torch.randn(4, 4, 3, 3)
    tangent = torch.randn_like(x)
    want = F.conv2d(tangent, w, padding=1)  # conv2d is linear in its input
    for name in ("unfold", "winograd-f4", "torch"):
        _, got = torch.func.jvp(lambda a, name=name: impls.conv2d(a, w, padding=1,
                                                                  backend=name),
                                (x,), (tangent,))
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    with forward_ad.dual_level():
        dual = forward_ad.make_dual(x.double(), tangent.double())
        with pytest.raises(NotImplementedError, match="fft has no forward-mode derivative"):
            impls.conv2d(dual, w.double(), padding=1, backend="fft")
        # No tangent on its inputs: fft runs as ever, inside a dual level too.
        assert impls.conv2d(x.double(), w.double(), padding=1, backend="fft").shape == x.shape
    with pytest.raises(NotImplementedError, match="fft has no forward-mode derivative"):
        torch.func.jvp(lambda a: impls.conv2d(a, w, padding=1, backend="fft"), (x,),
                       (tangent,))


@pytest.mark.parametrize("stride", [(10_000, 10_000), (10_000, 1), (7, 9)])
def test_fft_takes_a_stride_past_the_image_at_the_cost_of_a_small_one(stride):
    """One output position along an axis: every stride from the kernel's span on gives it.
    The phase split used to pad its buffers up to the whole stride: stride 10,000 on an
    8x8 image was refused by the memory budget, where F.conv2d returns a 1-wide output."""
    from impls.builtin._fft_plan import workspace
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(4, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    out = impls.conv2d(x, w, stride=stride, padding=(2, 1), backend="fft")
    expected = F.conv2d(x, w, stride=stride, padding=(2, 1))
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
    go = torch.randn_like(expected)
    for got, want in zip(torch.autograd.grad(out, (x, w), go),
                         torch.autograd.grad(expected, (x, w), go)):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    need, _ = workspace(x.shape, w.shape, stride, (2, 1), (1, 1), 1, 8)
    assert need < 1 << 20, need

# --- the checker catches wrong gradients -------------------------------------------------


class _Conv2dFunction(torch.autograd.Function):
    """F.conv2d as an autograd Function, its backward left to each buggy subclass."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        ctx.save_for_backward(x, w)
        ctx.conv = (stride, padding, dilation, groups)
        return F.conv2d(x, w, b, stride, padding, dilation, groups)


class _OffByOneBatchWeightGrad(_Conv2dFunction):
    """F.conv2d whose weight gradient forgets the last image (a classic reduction bug)."""

    @staticmethod
    def backward(ctx, go):
        x, w = ctx.saved_tensors
        with torch.enable_grad():
            xs, ws = x.detach().requires_grad_(), w.detach().requires_grad_()
            out = F.conv2d(xs, ws, None, *ctx.conv)
            gx, gw = torch.autograd.grad(out, (xs, ws), go)
        if x.shape[0] > 1:
            with torch.enable_grad():
                out = F.conv2d(xs[-1:], ws, None, *ctx.conv)
                gw = gw - torch.autograd.grad(out, ws, go[-1:])[0]
        return gx, gw, go.sum((0, 2, 3)), None, None, None, None


def _transposed_flip_data_grad(x, w, b, stride, padding, dilation, groups):
    """Data gradient with the kernel not flipped: right for symmetric kernels only."""
    out = F.conv2d(x, w, b, stride, padding, dilation, groups)
    if not x.requires_grad:
        return out
    flipped = F.conv2d(x, w.flip(2, 3).detach(), None, stride, padding, dilation, groups)
    return out.detach() + flipped - flipped.detach()  # forward value, flipped-kernel grad


def _mutant(name, fn) -> impls.Backend:
    return impls.Backend(name=name, fn=fn, dtypes=(torch.float32, torch.float64))


@pytest.mark.parametrize(("mutant", "direction"), [
    (_mutant("weight-grad-drops-last-image",
             lambda *a: _OffByOneBatchWeightGrad.apply(*a)), "backward-weights"),
    (_mutant("data-grad-unflipped-kernel", _transposed_flip_data_grad), "backward-data"),
], ids=["weight-grad-drops-last-image", "data-grad-unflipped-kernel"])
@pytest.mark.parametrize("mode", MODES)
def test_checker_catches_wrong_gradients(mutant, direction, mode):
    case = next(c for c in CASES if c.id == "basic-3x3-pad1")
    result = check_backward(mutant, case, direction, mode, torch.float32)
    assert result.status == FAILED, result
    assert f"--direction {direction}" in result.repro()
    assert f"--case {case.id}" in result.repro()


def test_a_result_without_a_graph_is_named_with_what_to_do(isolated_registry):
    """A backend whose result autograd cannot differentiate (computed outside it, a NumPy
    round trip) and that does not say so: the sweep's backward rows name it and the fix."""
    impls.register_backend(lambda *args: F.conv2d(*args).detach(), name="detaches")
    x, w = torch.randn(1, 2, 5, 5), torch.randn(3, 2, 3, 3)
    with pytest.raises(RuntimeError, match="backend 'detaches' returned a result autograd "
                                           "cannot differentiate .* without 'autograd'"):
        gradient_call("detaches", x, w, None, "backward-data")
    result = check_backward("detaches", CASES[0], "backward-weights")  # impls check's path
    assert result.status == "error" and "cannot differentiate" in result.reason, result


class _TrainingOnlyBug(_Conv2dFunction):
    """conv2d whose grad_input is wrong when the weight requires grad too (every hidden
    layer in training), and whose bias gradient is zero when the weight is frozen."""

    @staticmethod
    def backward(ctx, go):
        x, w = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = torch.nn.grad.conv2d_input(x.shape, w, go, *ctx.conv) if need_x else None
        gw = torch.nn.grad.conv2d_weight(x, w.shape, go, *ctx.conv) if need_w else None
        gb = go.sum((0, 2, 3)) if need_b else None
        if need_x and need_w:
            gx = gx * 2
        if need_b and not need_w:
            gb = gb * 0
        return gx, gw, gb, None, None, None, None


@pytest.mark.parametrize("direction, says", [
    ("backward-data", "(with input, weight, bias requiring grad)"),
    ("backward-weights", "(with bias requiring grad)")])
def test_gradients_are_checked_as_training_and_fine_tuning_ask_for_them(isolated_registry,
                                                                        direction, says):
    """Each direction was asked with its own tensors alone requiring grad: a review's
    backends with these two bugs passed every gradient check."""
    impls.register_backend(lambda *a: _TrainingOnlyBug.apply(*a), name="training-only-bug")
    result = check_backward("training-only-bug", CASES[0], direction, "random",
                            torch.float64)
    assert result.status == "failed" and result.reason.endswith(says), result.reason
    assert check_backward("training-only-bug", CASES[0], direction, "exact",
                          torch.float64).status == "passed"  # its own tensors alone: right


class _BiasOnlyInInference(_Conv2dFunction):
    """conv2d whose training path (an autograd Function) forgets the bias in its forward;
    its gradients are right, grad_bias included (the sum of grad_output either way)."""

    @staticmethod
    def forward(ctx, x, w, b, stride, padding, dilation, groups):
        return _Conv2dFunction.forward(ctx, x, w, None, stride, padding, dilation, groups)

    @staticmethod
    def backward(ctx, go):
        x, w = ctx.saved_tensors
        return (torch.nn.grad.conv2d_input(x.shape, w, go, *ctx.conv),
                torch.nn.grad.conv2d_weight(x, w.shape, go, *ctx.conv), go.sum((0, 2, 3)),
                None, None, None, None)


def _bias_only_in_inference(x, w, b, stride, padding, dilation, groups):
    if torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, w, b)):
        return _BiasOnlyInInference.apply(x, w, b, stride, padding, dilation, groups)
    return F.conv2d(x, w, b, stride, padding, dilation, groups)


@pytest.mark.parametrize("direction", DIRECTIONS)
@pytest.mark.parametrize("mode", MODES)
def test_the_output_of_a_recorded_call_is_checked_too(isolated_registry, direction, mode):
    """The forward check runs under no_grad, so a backend's training path never ran there;
    its gradients can all be right while its output is not."""
    impls.register_backend(_bias_only_in_inference, name="bias-only-in-inference")
    case = next(c for c in CASES if c.id == "basic-3x3-pad1")
    assert check_case("bias-only-in-inference", case, mode).status == "passed"
    result = check_backward("bias-only-in-inference", case, direction, mode, torch.float64)
    assert result.status == "failed", result
    assert result.reason.startswith("the output of the call autograd recorded: |err|=")
