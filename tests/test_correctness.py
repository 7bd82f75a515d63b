"""Every backend against the float64 reference over the whole case table.

Both fill modes (exact integers: bit-for-bit for exact backends; random normal: the
tolerance table of impls.tolerances), float32 and float64 on the CPU; with --device cuda
also float16, bfloat16 and float32 under TF32 (see conftest.PRECISIONS). A backend's
declared gaps become skips with its reason; a failure's message is the one-line repro.
"""

from __future__ import annotations

import pytest
import torch

from impls.cases import CASES
from impls.checker import SKIPPED, check_case
from impls.fill import MODES


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_forward_matches_reference(backend, case, mode, precision, device):
    dtype, tf32 = precision
    if device.startswith("cuda"):
        torch.backends.cudnn.allow_tf32 = tf32
        torch.backends.cuda.matmul.allow_tf32 = tf32
    result = check_case(backend, case, mode, dtype, device, seed=0, tf32=tf32)
    if result.status == SKIPPED:
        pytest.skip(result.reason)
    assert result.ok, result.repro()
