"""Models read back from a run directory: the saved scales, and files that do not belong to the run."""

import pytest
import torch

from pkd.artifacts import load_ensemble
from pkd.runs import Run
from tests.pkd_process import TINY


def test_saved_ensemble_uses_the_learned_scales(tiny_run):
    """The loaded ensemble's prefix 2 is s_2 * z_1 + z_2 of the saved students (what training evaluated)."""
    from pkd.data import get_dataset_spec, load_split

    ens = load_ensemble(tiny_run)
    x = get_dataset_spec("mnist").normalize(load_split("mnist", "test").inputs[:64])
    z1, z2 = (student(x) for student in ens.students)
    expected = torch.log_softmax(ens.prev_scales[1] * z1 + z2, -1)
    assert torch.allclose(ens.forward_prefix(x, 2), expected, atol=1e-5)
    assert ens.prev_scales == [tiny_run.load_student(k)["prev_scale"] for k in (1, 2)]


def test_independent_run_refuses_a_learned_scale(tmp_path):
    """A student file with a residual scale cannot slip into an independent run (it would change its answers)."""
    from pkd.config import load_config
    from pkd.data import get_dataset_spec
    from pkd.models import build_model
    from pkd.runs import RunError
    from pkd.train.specs import student_specs

    cfg = load_config(TINY, ["distill.mode=independent", "distill.learn_prev_scale=false"])
    spec = get_dataset_spec("mnist")
    run = Run.create_at(tmp_path / "ind", cfg.to_dict())
    for k, s_spec in enumerate(student_specs(cfg, spec), start=1):
        run.save_student(k, build_model(s_spec).state_dict(), s_spec, prev_scale=1.0 if k == 1 else 0.5)
    assert load_ensemble(run, k=1).prev_scales == [1.0]
    with pytest.raises(RunError, match="student_02.pt: has a residual prev_scale"):
        load_ensemble(run)
