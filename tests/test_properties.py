"""Property tests: random valid parameter sets, every backend, against the reference.

The case table holds what we thought of; hypothesis finds what we did not. Shapes stay
tiny so the interpreter-run Triton kernel and the naive loops keep up. CI derandomises
(see conftest) so a failure there is reproducible; the failing example prints its repro.

A backend whose method is defined only for part of the space (Winograd: 3x3, stride 1, no
dilation; declared by its ``accepts``) gets that part drawn, not the whole space skipped:
a drawn problem it refuses is discarded (``assume``), never counted as a pass, so a
backend that refused everything would fail with hypothesis's Unsatisfiable.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

import impls
from impls.cases import Case
from impls.checker import MISTRUSTED, SKIPPED, check_case

#: The 3x3, stride-1, undilated family: held fixed for a backend that refuses the rest.
THREE_BY_THREE = {"kernel": (3, 3), "stride": (1, 1), "dilation": (1, 1)}
#: A problem outside that family (5x5, stride 2, dilation 2): who refuses it gets the family.
_OUTSIDE = ((1, 4, 12, 12), (4, 4, 5, 5), (2, 2), (1, 1), (2, 2), 1)


def _pair(draw, fixed, low: int, high: int) -> tuple[int, int]:
    return fixed or (draw(st.integers(low, high)), draw(st.integers(low, high)))


@st.composite
def cases(draw, kernel=None, stride=None, dilation=None) -> Case:
    """A small valid problem; ``kernel``, ``stride``, ``dilation`` held where given."""
    groups = draw(st.integers(1, 3))
    c, k = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    r, s = _pair(draw, kernel, 1, 4)
    dilation = _pair(draw, dilation, 1, 3)
    padding = draw(st.one_of(st.just("same"), st.just("valid"),
                             st.tuples(st.integers(0, 3), st.integers(0, 3))))
    stride = (1, 1) if padding == "same" else _pair(draw, stride, 1, 3)
    pads = (0, 0) if isinstance(padding, str) else padding
    # The image must hold the dilated kernel once padded; then add some slack.
    h = max(1, dilation[0] * (r - 1) + 1 - 2 * pads[0]) + draw(st.integers(0, 6))
    w = max(1, dilation[1] * (s - 1) + 1 - 2 * pads[1]) + draw(st.integers(0, 6))
    return Case("hypothesis", draw(st.integers(1, 3)), c, h, w, k, r, s, stride, padding,
                dilation, groups, draw(st.booleans()))


@pytest.mark.parametrize(("mode", "dtype"), [("exact", torch.float32),
                                             ("random", torch.float32),
                                             ("random", torch.float64)],
                         ids=["exact-float32", "random-float32", "random-float64"])
def test_random_parameters_match_reference(backend, mode, dtype):
    entry = impls.get_backend(backend)
    if entry.unsupported(dtype=dtype):
        pytest.skip(entry.unsupported(dtype=dtype))  # a declared gap (triton: no float64)
    family = THREE_BY_THREE if entry.refuses(*_OUTSIDE) else {}

    @given(case=cases(**family), seed=st.integers(0, 2**16))
    def check(case, seed):
        result = check_case(backend, case, mode, dtype, "cpu", seed)
        assume(result.status != SKIPPED)  # refused (outside its method): draw another
        # Mistrust depends on the data alone (say, an output made only of padding, no
        # bias): such an example proves nothing about the backend, so draw another.
        assume(result.status != MISTRUSTED)
        assert result.ok, f"{case}\n{result.repro()}"

    check()
