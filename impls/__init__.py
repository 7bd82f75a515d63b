"""convbench's library: one conv2d interface over interchangeable backends.

    import impls
    impls.conv2d(x, w, stride=2, padding="same", backend="unfold")
    impls.Conv2d(64, 64, 3, padding=1, backend="fft")
    impls.backends()              # every entry, available or not
    impls.get_backend("pkg.mod:fn")   # a user's own callable

Importing this package never imports Triton or touches a GPU: backends probe lazily.
"""

from impls.frontend import conv2d
from impls.module import Conv2d
from impls.registry import FEATURES, Backend, backends, get_backend, register_backend

__all__ = ["FEATURES", "Backend", "Conv2d", "backends", "conv2d", "get_backend",
           "register_backend"]
