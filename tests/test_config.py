"""Config loading: strict keys and types, ranges, overrides, safe YAML."""

from pathlib import Path

import pytest

from pkd.config import ConfigError, RunConfig, apply_overrides, load_config

ROOT = Path(__file__).resolve().parents[1]


SHARED_TEACHER = {"mnist-quick": "mnist", "mnist-independent": "mnist", "moving-mnist-digits": "moving-mnist",
                  "moving-mnist-digits-residual": "moving-mnist", "fashion-mnist-quick": "fashion-mnist/seed-0",
                  "fashion-mnist-independent": "fashion-mnist/seed-0", "fashion-mnist-stem": "fashion-mnist/seed-0"}


@pytest.mark.parametrize("name", ["tiny", "mnist", "mnist-quick", "cifar10", "mnist-independent",
                                  "moving-mnist-digits", "moving-mnist-digits-residual", "fashion-mnist",
                                  "fashion-mnist-quick", "fashion-mnist-independent", "fashion-mnist-stem"])
def test_shipped_configs_load(name):
    path = ROOT / "configs" / f"{name}.yaml"
    if name in SHARED_TEACHER:  # reuses a shipped teacher, which the validation checks exists
        teacher = ROOT / "pretrained" / SHARED_TEACHER[name] / "teacher.pt"
        assert teacher.is_file() or pytest.skip("pretrained run not built")
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig) and cfg.students.k >= 1


def test_defaults_and_overrides():
    cfg = load_config(None, ["distill.alpha=0.5", "students.optim.epochs=3", "seed=7"])
    assert cfg.distill.alpha == 0.5 and cfg.students.optim.epochs == 3 and cfg.seed == 7
    assert cfg.teacher.optim.epochs == RunConfig().teacher.optim.epochs  # untouched sections keep defaults


@pytest.mark.parametrize("overrides, field", [
    (["distill.alpah=1"], "distill.alpah"),
    (["bogus=1"], "bogus"),
    (["distill.alpha=1.5"], "distill.alpha"),
    (["distill.alpha=-0.1"], "distill.alpha"),
    (["distill.temperature=0"], "distill.temperature"),
    (["distill.temperature=-2"], "distill.temperature"),
    (["distill.mode=boosted"], "distill.mode"),
    (["distill.mode=independent", "distill.learn_prev_scale=true"], "distill.learn_prev_scale"),
    (["distill.learn_prev_scale=maybe"], "distill.learn_prev_scale"),
    (["distill.solo_weight=1.5"], "distill.solo_weight"),
    (["distill.mode=independent", "distill.solo_weight=0.5"], "distill.solo_weight"),
    (["distill.mode=independent", "distill.prefix_loss=mean"], "distill.prefix_loss"),
    (["distill.prefix_loss=median"], "distill.prefix_loss"),
    (["students.schedule=[]"], "students.schedule"),
    (["students.optim.epochs=x"], "students.optim.epochs"),
    (["students.optim.epochs=0"], "students.optim.epochs"),
    (["students.optim.batch_size=-4"], "students.optim.batch_size"),
    (["students.optim.lr=0"], "students.optim.lr"),
    (["students.optim=3"], "students.optim"),
    (["students.schedule=[{d_model: 100000}]"], "d_model"),
    (["students.schedule=[5]"], "students.schedule[0]"),
    (["teacher.checkpoint=/no/such/teacher.pt"], "teacher.checkpoint"),
    (["teacher.optim.epochs=0"], "teacher.optim.epochs"),
    (["data.root=/no/such/dir"], "data.root"),
    (["data.train_limit=0"], "data.train_limit"),
    (["device=tpu"], "device"),
    (["seed=true"], "seed"),
    (["name=../evil"], "name"),
    (["distill.alpha"], "key=value"),
])
def test_bad_values_name_the_field(overrides, field):
    with pytest.raises(ConfigError) as info:
        load_config(None, overrides)
    message = str(info.value)
    assert field in message and "\n" not in message


def test_yaml_file_errors(tmp_path):
    cases = {"list.yaml": "- a\n- b\n", "bad.yaml": "a: [1, 2\n", "tag.yaml": "a: !!python/object/apply:os.system ['echo hi']\n"}
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(ConfigError, match=name):
            load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    huge = tmp_path / "huge.yaml"
    with open(huge, "wb") as fh:
        fh.truncate(50 * 1024 * 1024)
    with pytest.raises(ConfigError, match="bytes"):
        load_config(huge)


def test_apply_overrides_does_not_mutate():
    base = {"distill": {"alpha": 0.1}}
    out = apply_overrides(base, ["distill.alpha=0.9"])
    assert base["distill"]["alpha"] == 0.1 and out["distill"]["alpha"] == 0.9
