"""An example third-party conv2d: see ``third_party_conv.conv``."""

from third_party_conv.conv import conv2d

__all__ = ["conv2d"]
