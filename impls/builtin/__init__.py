"""Built-in backends, one file each; each registers itself with impls.registry on import.

Named ``builtin`` (not ``backends``) so that importing it never shadows the public
function ``impls.backends()``: a subpackage import sets an attribute on its parent.

A backend file must import only torch, numpy and scipy at load; anything optional (Triton,
CUDA) is imported inside its functions and reported through its ``probe``.
"""
