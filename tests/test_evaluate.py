"""`pkd eval` and the CLI's read-only commands on a trained tiny run."""

import pytest

from tests.pkd_process import pkd, pkd_ok


def test_eval_reproduces_table(tiny_run):
    before = tiny_run.prefix_table()
    out = pkd_ok("eval", str(tiny_run.path)).stdout
    after = tiny_run.prefix_table()
    for a, b in zip(before, after):
        assert a["prefix_acc"] == pytest.approx(b["prefix_acc"], abs=1e-9)
        assert a["solo_acc"] == pytest.approx(b["solo_acc"], abs=1e-9)
        assert a["cumulative_flops"] == b["cumulative_flops"]
    assert "prefix acc" in out
    summary = tiny_run.summary()  # rewritten by eval: the figures training writes, plus the drawn digits
    assert len(summary["prefixes"]) == len(before) and summary["anytime"] and summary["anytime_val_fitted"]
    drawn = summary["drawn"]
    assert drawn["n"] == 1000 and len(drawn["prefix_acc"]) == len(before) and 0 <= drawn["teacher_acc"] <= 1
    assert "drawn digits (1000" in out and "anytime AUC" in out


def test_eval_reads_only_the_reported_splits(tiny_run, tmp_path, monkeypatch):
    """Re-evaluating never loads the training split (moving_mnist_50k's would be 4 GB of clips to make)."""
    import shutil

    from pkd import evaluate
    from pkd.data import run_data
    from pkd.runs import Run

    loaded, real = [], run_data.load_split

    def load_split(name, split, **kw):  # the real loader, recording which splits were asked for
        loaded.append(split)
        return real(name, split, **kw)

    monkeypatch.setattr(run_data, "load_split", load_split)
    copy = tmp_path / "tiny"
    shutil.copytree(tiny_run.path, copy)
    summary = evaluate.evaluate_run(Run(copy), drawn_per_digit=0)
    assert sorted(loaded) == ["test", "val"]
    trained = [row["prefix_acc"] for row in tiny_run.prefix_table()]
    assert [row["prefix_acc"] for row in Run(copy).prefix_table()] == pytest.approx(trained, abs=1e-6)
    assert len(summary["prefixes"]) == len(trained)


def test_end_of_run_figures_are_the_ones_training_wrote_and_wait_for_the_last_student(tiny_run):
    """Training and `pkd eval` share end_of_run_figures: on the saved students it gives the early-exit figures and
    the prefix-vs-teacher tests training wrote (the tests also equal pkd.compare's, which re-runs both models); a
    summary with a student still to train gets none."""
    import torch

    from pkd.artifacts import load_ensemble, load_teacher
    from pkd.config import config_from_dict
    from pkd.data.run_data import load_run_data
    from pkd.compare import compare_to_teacher
    from pkd.evaluate import REPORTED_SPLITS, end_of_run_figures, predict_logits, prefix_rows

    cfg = config_from_dict(tiny_run.config())
    data_spec, splits = load_run_data(cfg, REPORTED_SPLITS)
    ensemble, teacher, trained = load_ensemble(tiny_run), load_teacher(tiny_run), tiny_run.summary()
    rows, logits = prefix_rows(ensemble, cfg.students.arch, data_spec, splits, trained["teacher"]["flops"],
                               torch.device("cpu"))
    teacher_test = predict_logits(teacher, data_spec, splits["test"].inputs, torch.device("cpu"))
    figures = end_of_run_figures({**trained, "prefixes": rows}, ensemble, teacher, data_spec, splits, logits,
                                 teacher_test)
    assert set(figures) == {"anytime", "anytime_val_fitted", "anytime_auc", "combiners", "teacher_tests"}
    assert figures["teacher_tests"] == trained["teacher_tests"]
    rerun = compare_to_teacher(tiny_run)
    assert [(t["k"], t["prefix_only"], t["teacher_only"], t["verdict"]) for t in figures["teacher_tests"]] == [
        (k, test.a_only, test.b_only, test.verdict) for k, test in rerun]
    assert all(t["p_value"] == pytest.approx(test.p_value) for t, (_, test) in zip(figures["teacher_tests"], rerun))
    for name, combined in figures["combiners"].items():  # every combiner's figures, as training wrote them
        for key in ("prefix_acc", "prefix_val_acc", "true_prob_drop", "right_to_wrong"):
            assert combined[key] == pytest.approx(trained["combiners"][name][key], abs=1e-9), (name, key)
    for key in ("anytime", "anytime_val_fitted"):
        assert len(figures[key]) == len(trained[key])
        for got, want in zip(figures[key], trained[key]):
            assert got == pytest.approx(want, rel=1e-5, abs=1e-6)
    assert figures["anytime_auc"] == pytest.approx(trained["anytime_auc"], rel=1e-9)
    planned = {**trained, "prefixes": rows, "k_planned": len(rows) + 1}
    assert end_of_run_figures(planned, ensemble, teacher, data_spec, splits, logits, teacher_test) == {}


def test_runs_and_predict_cli(tiny_run, tmp_path):
    out = pkd_ok("runs", str(tiny_run.path.parent)).stdout
    assert tiny_run.name in out and "done" in out
    from PIL import Image

    from pkd.data import load_split
    digit = load_split("mnist", "test").inputs[0, 0]  # a 7
    Image.fromarray((digit.numpy() * 255).astype("uint8")).resize((140, 140)).save(tmp_path / "digit.png")
    out = pkd_ok("predict", str(tiny_run.path), str(tmp_path / "digit.png"), "--k", "2").stdout
    assert "prediction:" in out and "FLOPs" in out
    Image.new("L", (50, 50)).save(tmp_path / "blank.png")
    proc = pkd("predict", str(tiny_run.path), str(tmp_path / "blank.png"))
    assert proc.returncode == 2 and "blank" in proc.stdout
    (tmp_path / "notimage.png").write_text("hello")
    proc = pkd("predict", str(tiny_run.path), str(tmp_path / "notimage.png"))
    assert proc.returncode == 2 and "error:" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_base_to_novel_classifies_each_side_among_its_own_classes():
    """ViFi-CLIP's protocol on hand-made scores: a base clip may only pick a base class, a novel clip a novel one;
    the harmonic mean of the two accuracies; nothing without novel classes."""
    import torch

    from pkd.data import get_dataset_spec
    from pkd.data.moving_mnist import novel_classes
    from pkd.evaluate import base_to_novel

    novel = [2, 3]  # classes 0, 1 are base
    scores = torch.tensor([[0.0, 1.0, 5.0, 0.0],   # base clip of class 1: class 2 is novel, so it picks 1: right
                           [3.0, 1.0, 0.0, 0.0],   # base clip of class 1: picks 0: wrong
                           [9.0, 0.0, 0.0, 1.0],   # novel clip of class 3: class 0 is base, so it picks 3: right
                           [0.0, 0.0, 2.0, 1.0]])  # novel clip of class 3: picks 2: wrong
    labels = torch.tensor([1, 1, 3, 3])
    assert base_to_novel(scores, labels, novel) == {"base_acc": 0.5, "novel_acc": 0.5, "hm": 0.5}
    assert base_to_novel(scores[[0, 2]], labels[[0, 2]], novel) == {"base_acc": 1.0, "novel_acc": 1.0, "hm": 1.0}
    assert base_to_novel(scores[[1, 3]], labels[[1, 3]], novel)["hm"] == 0.0
    assert base_to_novel(scores, labels, []) == {}
    assert get_dataset_spec("moving_mnist_b2n").novel_classes == novel_classes()
    assert get_dataset_spec("moving_mnist").novel_classes == ()
