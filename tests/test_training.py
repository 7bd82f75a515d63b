"""A few SGD steps of a small CNN: impls.Conv2d must train as nn.Conv2d does.

Why, beyond the gradient checker: training chains everything, the forward, both
gradients, bias, ReLU's masks that depend on forward values, and parameter updates fed
back into the next forward, so an error that a single comparison tolerates would compound
here. The net uses stride, padding, dilation, groups (one depthwise layer) and bias.

Tolerance: float64 throughout, and the same state_dict and batches for both nets. Every
backend's float64 gradient is within ~1e-15 relative of oneDNN's (exact backends agree to
rounding order, fft to its transform error); over STEPS steps at this learning rate that
stays far below LOSS_RTOL = 1e-9, while a wrong gradient (even 1e-6 off) moves the losses
by more.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

import impls

STEPS = 8
LOSS_RTOL = 1e-9


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread per xdist worker (see tests/test_backward.py's fixture)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_cnn(conv) -> nn.Sequential:
    """Three conv layers (plain, strided + grouped, dilated depthwise), pool, linear."""
    return nn.Sequential(
        conv(3, 8, 3, padding=1), nn.ReLU(),
        conv(8, 12, 3, stride=2, padding=1, groups=2), nn.ReLU(),
        conv(12, 12, 3, padding=2, dilation=2, groups=12, bias=False), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(12, 4),
    ).to(torch.float64)


def train(model: nn.Module, batches) -> list[float]:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for x, y in batches:
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def test_training_matches_nn_conv2d(backend):
    entry = impls.get_backend(backend)
    reason = entry.unsupported(dtype=torch.float64,
                               features={"autograd", "stride", "padding", "dilation", "groups",
                                         "bias"})
    if entry.accepts is not None:
        reason = (f"{backend} covers only some problems (declared by `accepts`); this CNN's "
                  "strided and dilated layers are outside it")
    if reason:
        pytest.skip(reason)
    torch.manual_seed(0)
    ours = small_cnn(lambda *a, **k: impls.Conv2d(*a, **k, backend=backend))
    theirs = small_cnn(nn.Conv2d)
    theirs.load_state_dict(ours.state_dict())
    gen = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 12, 12, generator=gen, dtype=torch.float64),
                torch.randint(0, 4, (6,), generator=gen)) for _ in range(STEPS)]

    expected = train(theirs, batches)
    got = train(ours, batches)

    assert got == pytest.approx(expected, rel=LOSS_RTOL, abs=0), (got, expected)
    for name, p in theirs.named_parameters():
        torch.testing.assert_close(ours.get_parameter(name), p, rtol=1e-8, atol=1e-10,
                                   msg=f"{name} after {STEPS} steps")
