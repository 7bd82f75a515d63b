"""``impls.Conv2d``: torch.nn.Conv2d with a ``backend=`` argument.

It subclasses nn.Conv2d so that constructor arguments, parameter names, initialisation,
padding modes and state_dict are nn.Conv2d's own, and a state_dict moves between the two
unchanged. Only the convolution itself is routed through :func:`impls.conv2d`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from impls.frontend import conv2d, used_features
from impls.registry import get_backend


class Conv2d(nn.Conv2d):
    """nn.Conv2d computed by a convbench backend (default "torch")."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None, *, backend: str = "torch"):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype)
        entry = get_backend(backend)
        if entry.load_error:  # a misspelt "module:function", as an unknown name is refused
            raise ValueError(f"backend {backend!r}: {entry.reason}")
        self.backend = entry.name
        refusal = self._refusal(entry)
        if refusal:  # every forward would refuse: say so where the layer is made
            raise NotImplementedError(f"{refusal}, which this layer's arguments use")

    def _refusal(self, entry) -> str:
        """Why ``entry`` would refuse every forward of this layer, or "": a feature it lacks,
        or a problem outside its method whatever the input (its ``accepts`` refuses the
        smallest image the kernel fits, a larger one and a large batch of large ones alike:
        Winograd's kernel size).
        Arguments F.conv2d itself rejects (stride 0) are left to the forward, which raises
        what nn.Conv2d's does."""
        padding = self._call_padding()
        if min(*self.stride, *self.dilation) < 1 or min(padding) < 0:
            return ""
        missing = sorted(self._features() - entry.features)
        if missing:
            return f"{entry.name} does not support {', '.join(missing)}"
        fits = [d * (k - 1) + 1 for d, k in zip(self.dilation, self.kernel_size)]
        per_side = tuple(p // 2 for p in padding) if self.padding == "same" else padding
        probes = [(1, *(f + grow for f in fits)) for grow in (0, 63)] + [(8, 4096, 4096)]
        reasons = [entry.refuses((n, self.in_channels, h, w), self.weight.shape, self.stride,
                                 per_side, self.dilation, self.groups) for n, h, w in probes]
        return reasons[0] if all(reasons) else ""

    def _features(self) -> set[str]:
        """The features of impls.registry.FEATURES every forward of this layer uses
        (autograd depends on the call)."""
        return used_features(self.stride, self._call_padding(), self.dilation, self.groups,
                             self.bias is not None)

    def _call_padding(self) -> tuple[int, int]:
        """The padding of the conv2d call _conv_forward makes: 0 under another padding mode
        (the input is padded first), and "same" pads each axis by its kernel's dilated
        extent less one."""
        if self.padding_mode != "zeros" or self.padding == "valid":
            return (0, 0)
        if self.padding == "same":
            return tuple(d * (k - 1) for d, k in zip(self.dilation, self.kernel_size))
        return tuple(self.padding)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, backend={self.backend!r}"

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor,
                      bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            # As nn.Conv2d: pad with the mode first, then convolve without padding.
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        else:
            padding = self.padding
        return conv2d(input, weight, bias, self.stride, padding, self.dilation, self.groups,
                      backend=self.backend)
