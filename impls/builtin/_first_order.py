"""``first_order``: torch's ``once_differentiable`` for a backward that also reads saved
tensors, which fft's and triton's do (the weight for the data gradient, the input for the
weight gradient).

Why: ``once_differentiable`` marks the gradients it returns as not differentiable only when
a gradient passed *in* requires grad. A gradient penalty (``torch.autograd.grad(out.sum(),
x, create_graph=True)``, then a loss on that gradient) passes in one that does not, while
the data gradient still depends on the saved weight: the gradients came back detached,
and the penalty's share of ``w.grad`` was silently dropped (found by a review: 0.378
where torch gave 3657). Here the saved tensors count too, so differentiating such a
gradient raises, as any double backward through these backends does.
"""

from __future__ import annotations

import functools

import torch
from torch._C import _functions

MESSAGE = (b"trying to differentiate twice a function that was marked with "
           b"@once_differentiable (this backend's gradients are computed outside autograd: "
           b"no double backward, gradient penalty or gradgradcheck through it)")


def first_order(backward):
    """Decorate a torch.autograd.Function's ``backward`` (see the module docstring)."""

    @functools.wraps(backward)
    def wrapper(ctx, *grads):
        with torch.no_grad():
            outputs = backward(ctx, *grads)
        if not torch.is_grad_enabled() or not any(
                isinstance(t, torch.Tensor) and t.requires_grad
                for t in (*grads, *ctx.saved_tensors)):
            return outputs
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        err_fn = _functions.DelayedError(MESSAGE, len(outputs))
        return err_fn(*[None if t is None else t.detach().requires_grad_() for t in outputs])

    return wrapper
