"""Early exit, budgets and the anytime AUC (pkd.anytime): on hand-made numbers, and the confidence curve against
what Ensemble.predict really does on a trained tiny run."""

from __future__ import annotations

import pytest
import torch

from pkd.anytime import anytime_auc, anytime_curve, exit_figures, fit_confidence


def test_anytime_curve_is_what_early_exit_prediction_does(tiny_run):
    """The curve is computed from one pass of every prefix; Ensemble.predict(confidence=...) stops each sample for
    real. Both must give the same accuracy and FLOPs at every level."""
    from pkd.artifacts import load_ensemble
    from pkd.config import config_from_dict
    from pkd.data.run_data import load_run_data
    from pkd.evaluate import predict_logits

    data_spec, splits = load_run_data(config_from_dict(tiny_run.config()))
    ensemble, test = load_ensemble(tiny_run), splits["test"]
    logits = [predict_logits(s, data_spec, test.inputs, torch.device("cpu")) for s in ensemble.students]  # K x (N, C)
    for point in anytime_curve(ensemble, logits, test.labels):
        with torch.no_grad():
            pred = ensemble.predict(data_spec.normalize(test.inputs), confidence=point["confidence"])
        assert point["acc"] == pytest.approx(float((pred.classes == test.labels).float().mean()), abs=1 / len(test))
        assert point["mean_flops"] == pytest.approx(float(pred.flops.double().mean()), rel=1e-3)


def test_anytime_auc_is_the_log_flops_average_of_the_step_curve():
    # acc 0.5 from 10 to 100 FLOPs, 1.0 from 100 to 1000: half the log range each
    assert anytime_auc([(10, 0.5), (100, 1.0)], 10, 1000) == pytest.approx(0.75)
    assert anytime_auc([(100, 1.0)], 10, 1000) == pytest.approx(0.5)  # nothing fits below 100 FLOPs: 0
    assert anytime_auc([(10, 0.8), (5000, 1.0)], 10, 1000) == pytest.approx(0.8)  # beyond `high` never counts
    with pytest.raises(ValueError, match="low < high"):
        anytime_auc([(10, 0.5)], 100, 100)


def test_val_fitted_threshold_is_the_largest_within_the_budget():
    # 4 samples, 2 prefixes costing 10 and 30 FLOPs; top probabilities of prefix 1 (prefix 2 never stops early)
    top = torch.tensor([[0.5, 0.6, 0.9, 0.95], [0.9, 0.9, 0.95, 0.99]])
    right = torch.tensor([[False, True, True, True], [True, True, True, True]])
    cumulative = [10.0, 30.0]
    assert fit_confidence(top, cumulative, 5.0) == (False, None)  # below the first student's cost
    assert fit_confidence(top, cumulative, 30.0) == (True, None)  # the whole ensemble fits: no early exit
    fits, threshold = fit_confidence(top, cumulative, 20.0)  # half the samples may go on: 0.5 and 0.6 continue
    assert fits and threshold == pytest.approx(0.9)
    acc, flops = exit_figures(top, right, cumulative, threshold)
    assert (acc, flops) == (1.0, 20.0)
    assert exit_figures(top, right, cumulative, float(top.min())) == (0.75, 10.0)  # everyone stops at k = 1
