"""Property tests: random valid parameter sets, every backend, against the reference.

The case table holds what we thought of; hypothesis finds what we did not. Shapes stay
tiny so the interpreter-run Triton kernel and the naive loops keep up. CI derandomises
(see conftest) so a failure there is reproducible; the failing example prints its repro.
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from impls.cases import Case
from impls.checker import MISTRUSTED, SKIPPED, check_case


@st.composite
def cases(draw) -> Case:
    groups = draw(st.integers(1, 3))
    c, k = groups * draw(st.integers(1, 3)), groups * draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = draw(st.one_of(st.just("same"), st.just("valid"),
                             st.tuples(st.integers(0, 3), st.integers(0, 3))))
    stride = (1, 1) if padding == "same" else (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = (0, 0) if isinstance(padding, str) else padding
    # The image must hold the dilated kernel once padded; then add some slack.
    h = max(1, dilation[0] * (r - 1) + 1 - 2 * pads[0]) + draw(st.integers(0, 6))
    w = max(1, dilation[1] * (s - 1) + 1 - 2 * pads[1]) + draw(st.integers(0, 6))
    return Case("hypothesis", draw(st.integers(1, 3)), c, h, w, k, r, s, stride, padding,
                dilation, groups, draw(st.booleans()))


@pytest.mark.parametrize(("mode", "dtype"), [("exact", torch.float32),
                                             ("random", torch.float64)])
def test_random_parameters_match_reference(backend, mode, dtype):
    @given(case=cases(), seed=st.integers(0, 2**16))
    def check(case, seed):
        result = check_case(backend, case, mode, dtype, "cpu", seed)
        if result.status == SKIPPED:
            return
        # Mistrust depends on the data alone (say, an output made only of padding, no
        # bias): such an example proves nothing about the backend, so draw another.
        assume(result.status != MISTRUSTED)
        assert result.ok, f"{case}\n{result.repro()}"

    check()
