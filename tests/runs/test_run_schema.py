"""The run records' schema (pkd/runs/schema.py, validate.py): every prefix column has a rule, and summary.json's
early-exit figures (anytime_val_fitted, anytime_auc) are checked like the rest of it."""

import re
from pathlib import Path

import pytest

from pkd.runs import Run, RunError, list_runs

ROOT = Path(__file__).resolve().parents[2]
POINT = {"budget": 10.0, "confidence": None, "val_acc": 0.9, "val_mean_flops": 10.0, "acc": 0.9, "mean_flops": 9.0}
AUC = {"val": None, "test": 0.5, "low_flops": 1.0, "high_flops": 100.0}


def test_every_prefix_column_has_a_rule():
    """prefix.csv's columns are each checked by type and range when read back."""
    from pkd.runs import PREFIX_COLUMNS, PREFIX_RULES

    assert set(PREFIX_RULES) == set(PREFIX_COLUMNS)


def test_every_shipped_summary_passes_the_schema():
    runs = list_runs([ROOT / "pretrained", ROOT / "pretrained" / "sweep-quick"])
    assert len(runs) >= 5
    for run in runs:
        summary = run.summary()
        assert summary["anytime_val_fitted"] and summary["anytime_auc"], run.path
        assert run.info()["problem"] == "", run.info()["problem"]


@pytest.mark.parametrize("summary, message", [
    ({"anytime_val_fitted": {"a": 1}}, "anytime_val_fitted is {'a': 1}, not a list of up to 1000 mappings"),
    ({"anytime_val_fitted": [7]}, "anytime_val_fitted[0] is 7, not a mapping"),
    ({"anytime_val_fitted": [dict(POINT, acc=1.5)]}, "anytime_val_fitted[0].acc 1.5 is outside 0..1"),
    ({"anytime_val_fitted": [dict(POINT, mean_flops=None)]}, "anytime_val_fitted[0].mean_flops is null, not a value"),
    ({"anytime_val_fitted": [{k: v for k, v in POINT.items() if k != "budget"}]},
     "anytime_val_fitted[0].budget is missing"),
    ({"anytime_val_fitted": [dict(POINT, val_acc=True)]}, "anytime_val_fitted[0].val_acc True is not a finite number"),
    ({"anytime_auc": [0.5]}, "anytime_auc is [0.5], not a mapping"),
    ({"anytime_auc": dict(AUC, test="high")}, "anytime_auc.test 'high' is not a finite number"),
    ({"anytime_auc": dict(AUC, high_flops=-1.0)}, "anytime_auc.high_flops -1.0 is outside 0..1e+18"),
    ({"anytime_auc": {"val": 0.5}}, "anytime_auc.test is missing"),
])
def test_bad_early_exit_figures_in_a_summary_are_named(tmp_path, summary, message):
    """What `pkd eval` and the app index in them is checked on read: a bad item is one clear RunError, and the
    run lists as broken; nulls where the evaluation writes them (no early exit, no AUC) are fine."""
    run = Run.create_at(tmp_path / "r", {"name": "r"})
    run.write_summary({"anytime_val_fitted": [POINT], "anytime_auc": AUC})
    assert run.summary()["anytime_auc"]["test"] == 0.5 and run.info()["problem"] == ""
    run.write_summary(summary)
    with pytest.raises(RunError, match=re.escape(f"summary.json: {message}")):
        run.summary()
    assert run.info()["state"] == "broken" and run.info()["problem"] == f"summary.json: {message}"
