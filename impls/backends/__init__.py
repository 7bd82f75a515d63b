"""Built-in backends, one file each; each registers itself with impls.registry on import.

A backend file must import only torch, numpy and scipy at load; anything optional (Triton,
CUDA) is imported inside its functions and reported through its ``probe``.
"""
