"""The argument contract (pkd.ssm.layout.check_shapes): a call that breaks it raises one ValueError naming the
argument, before any backend runs."""

from __future__ import annotations

import pytest
import torch

from pkd import ssm
from tests.ssm.scan_inputs import NAMES, make_inputs
from tests.ssm.upstream import Case, upstream_inputs


@pytest.mark.parametrize(
    "bad, match",
    [({"A": torch.zeros(3, 2)}, "A must be"), ({"B": torch.zeros(1, 2, 4)}, "B must have shape"),
     ({"u": torch.zeros(2, 3)}, "u must be")],
)
def test_shape_errors(bad, match):
    inputs = make_inputs(1, 2, 3, 2, D=True, z=False, bias=False, softplus=False)
    inputs.update(bad)
    with pytest.raises(ValueError, match=match):
        ssm.selective_scan(*[inputs[k] for k in NAMES])


@pytest.mark.parametrize("bad, match", [
    ({"B": torch.zeros(2, 3, 8, 9)}, r"B must have shape .* G dividing dim=4"),
    ({"C": torch.zeros(2, 8, 9, dtype=torch.complex64)}, "input-dependent C must be real"),
    ({"B": torch.zeros(4, 8, dtype=torch.complex64)}, "B is complex but A is real"),
    ({"A": torch.zeros(4, 8, dtype=torch.complex64)}, r"B must have shape \(2, 8, 18\) \(real/imag pairs"),
    ({"z": torch.zeros(2, 4, 9, dtype=torch.complex64)}, "z must be real"),
])
def test_layout_errors_name_the_argument(bad, match):
    inputs = upstream_inputs(Case(1, 1, torch.float32, torch.float32, True, True, True, True, False, seqlen=9), 0)
    inputs.update(bad)
    with pytest.raises(ValueError, match=match):
        ssm.selective_scan(*[inputs[k] for k in NAMES])
