"""`pkd export RUN --web`'s refusals (each one line, nothing written), onnxruntime-web's sources (a folder, a tarball,
the cache; every file checked against its pinned sha256), a video run's clip page (its model and records) and the
Results page's "Download this run as a web page" (a digit run and a video run). The pages themselves, in Chromium:
tests/browser/test_web_page.py and tests/browser/test_web_clips.py."""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import zipfile
from pathlib import Path

import pytest

from pkd.procs import proc_start_time
from pkd.runs import Run, State
from pkd.web import runtime
from pkd.web.build import export_web
from tests.pkd_process import ROOT, child_env
from tests.pkd_process import pkd as run_pkd
from tests.web_runtime import require_web_runtime


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory) -> Run:
    path = tmp_path_factory.mktemp("web-runs") / "tiny"
    shutil.copytree(tiny_run.path, path)
    return Run(path)


def one_line_error(args: list[str], message: str, env: dict | None = None) -> None:
    proc = run_pkd("export", *args, env=env)
    assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, proc.stderr)


def test_the_cli_refuses_in_one_line_and_writes_nothing(run_copy, tmp_path):
    training = Run(Path(shutil.copytree(run_copy.path, tmp_path / "training")))
    training.write_status(state=State.RUNNING, pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
    photos = Run(Path(shutil.copytree(run_copy.path, tmp_path / "photos")))  # a page shows digits and clips only
    manifest = json.loads((photos.path / "manifest.json").read_text())
    manifest["config"]["data"]["dataset"] = "cifar10"
    (photos.path / "manifest.json").write_text(json.dumps(manifest))
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("kept")
    (tmp_path / "a-file").write_text("kept")
    cases = [  # through the CLI in a subprocess (each starts torch: a few), then the rest in this process
        ([str(training.path), "--web", "--out", str(tmp_path / "a")], "still training"),
        ([str(run_copy.path), "--web", "--k", "3", "--out", str(tmp_path / "b")], "has 2 saved students"),
        ([str(run_copy.path), "--web", "--out", str(full)], "already exists and is not empty"),
        ([str(photos.path), "--web", "--out", str(tmp_path / "d")], "for 28x28 digit runs; run photos uses cifar10"),
    ]
    for args, message in cases:
        one_line_error(args, message)
    for k, out, message in [(0, tmp_path / "c", "choose --k 1..2"), (None, tmp_path / "a-file", "is a file"),
                            (None, tmp_path / "no" / "page", "does not exist"),
                            (None, training.path / "page", "inside another run directory")]:
        with pytest.raises(ValueError, match=message):
            export_web(run_copy, k, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full", "photos", "training"]
    assert [p.name for p in full.iterdir()] == ["mine.txt"] and not (run_copy.path / "export").exists()
    assert not (training.path / "page").exists()


def test_a_runtime_that_is_missing_or_not_the_pinned_one_is_refused(run_copy, tmp_path):
    require_web_runtime()
    files = runtime.runtime_files(download=False)
    folder = tmp_path / "dist"
    folder.mkdir()
    for name, data in files.items():
        (folder / name).write_bytes(data)
    assert runtime.runtime_files(folder) == files  # a folder (e.g. node_modules/onnxruntime-web/dist)
    tarball = tmp_path / "onnxruntime-web.tgz"
    with tarfile.open(tarball, "w:gz") as tar:  # the npm tarball's layout, one file changed
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/dist/{name}")
            data = data + b"//" if name.endswith(".js") else data
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(ValueError, match="ort.wasm.min.js in .* is not version 1.31.1's file"):
        runtime.runtime_files(tarball)
    (folder / "ort-wasm-simd-threaded.wasm").unlink()
    with pytest.raises(ValueError, match="has no ort-wasm-simd-threaded.wasm; set PKD_ORT_WEB"):
        runtime.runtime_files(folder)
    env = child_env(PKD_ORT_WEB=str(tarball))  # the CLI: one line, before any export work, nothing written
    one_line_error([str(run_copy.path), "--web", "--out", str(tmp_path / "page")], "is not version 1.31.1's file",
                   env=env)
    assert not (tmp_path / "page").exists()


def test_an_empty_cache_without_download_says_how_to_fill_it(tmp_path, monkeypatch):
    monkeypatch.setenv("PKD_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv("PKD_ORT_WEB", raising=False)
    assert runtime.cached_files() is None
    with pytest.raises(ValueError, match="not in the cache .* run `python -m pkd.web.runtime` with network"):
        runtime.runtime_files(download=False)


@pytest.mark.parametrize("kind", ["digits", "clips"])
def test_results_page_offers_the_run_as_a_web_page(kind, run_copy, video_run, tmp_path, monkeypatch):
    """The Results page builds the page in a temporary folder and offers it as a zip: one folder, index.html; for a
    digit run and for a video run."""
    from streamlit.testing.v1 import AppTest

    require_web_runtime()
    runs = tmp_path / "runs"
    runs.mkdir()
    source = run_copy if kind == "digits" else video_run
    copy = Run(Path(shutil.copytree(source.path, runs / "tiny")))
    monkeypatch.setenv("PKD_RUNS_DIR", str(runs))
    monkeypatch.setenv("PKD_PRETRAINED_DIR", str(tmp_path / "no-pretrained"))
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    at.button(key="results_web_build").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    built = at.session_state["results_web"]
    names = zipfile.ZipFile(io.BytesIO(built["data"])).namelist()
    assert "tiny-web/index.html" in names and "tiny-web/assets/model.js" in names
    labels = [b.proto.label for b in at.get("download_button")]
    assert any(label.startswith("Download this run as a web page") for label in labels), labels
    what = "a clip made from your drawing" if kind == "clips" else "draw a digit"
    assert any(what in c.value for c in at.caption), [c.value for c in at.caption]
    assert sorted(p.name for p in copy.path.iterdir()) == sorted(p.name for p in source.path.iterdir())


def test_a_video_run_exports_its_clip_page(tmp_path_factory, video_run):
    """The tiny video run's page (exported by the CLI in a subprocess): the clip scripts, the clip records (the
    generator's sizes, reversed classes, real test clips with the teacher's answers) and the model, which gives pkd's
    every-prefix probabilities on those clips."""
    import base64

    import numpy as np
    import torch

    from pkd.artifacts import load_teacher
    from pkd.data import get_dataset_spec
    from pkd.data.moving_mnist import reverse_label
    from pkd.export import onnx_session
    from pkd.preprocess import clip_config
    from tests.web_clip_page import clip_page_path, clip_reference

    page = clip_page_path(tmp_path_factory, video_run)
    spec = get_dataset_spec(video_run.setting("data", "dataset"))
    assert {"clipmaker.js", "clips.js", "pkd.js", "model.js", "run.js"} <= {p.name for p in (page / "assets").iterdir()}
    records = json.loads((page / "run.json").read_text())
    assert records["mode"] == "clip" and records["testDigits"] is None and records["sampleShape"] == [4, 1, 40, 40]
    assert records["teacherDigitAcc"] == video_run.summary()["video"]["teacher_digit_acc"]
    cfg = clip_config(spec)
    assert records["clips"]["clipConfig"] == {"frames": 4, "canvas": 40, "speed": cfg.speed_max, "zoom": list(cfg.zoom)}
    assert records["clips"]["reverseClass"] == [reverse_label(c) for c in range(60)]
    tests = records["testClips"]
    clips = torch.from_numpy(np.frombuffer(base64.b64decode(tests["pixels"]), dtype=np.uint8).copy())
    clips = clips.view(-1, 4, 1, 40, 40).float() / 255  # (N, T, 1, S, S)
    assert len(clips) == len(tests["labels"]) == 12 and len({c % 6 for c in tests["labels"]}) == 6  # every motion
    with torch.no_grad():
        teacher = load_teacher(video_run).eval()
        want = torch.softmax(teacher(spec.normalize(clips)).float(), -1)  # normalised as `pkd eval` feeds it
        assert torch.allclose(want, torch.softmax(teacher(spec.normalize(clips.flip(1))).float(), -1), atol=1e-6)
    assert np.abs(np.array(tests["teacher"]) - want.numpy()).max() <= 5e-5  # rounded to 1e-4
    text = (page / "assets" / "model.js").read_text()  # window.PKD_MODEL = "<base64 .ort model>";
    model = tmp_path_factory.mktemp("clip-model") / "model.ort"
    model.write_bytes(base64.b64decode(json.loads(text.split("=", 1)[1].strip().rstrip(";"))))
    got = onnx_session(model, threads=1).run(["prefix_probs"], {"pixels": clips.numpy()})[0]
    assert np.abs(got - clip_reference(video_run)(clips)).max() <= 1e-4


def test_the_clip_page_quotes_the_shipped_teachers_real_answers():
    """The shipped video teacher knows digits (98.55% on test) but not motion: on the page's test clips its answers
    name the clip's digit. (The page's first version fed it unnormalised frames: "3 shrinking" for a 6, a 5, a 5.)"""
    import numpy as np

    from pkd.data import get_dataset_spec
    from pkd.runs import Run
    from pkd.web.clips import test_clips

    run = Run(Path(__file__).resolve().parents[1] / "pretrained" / "moving-mnist")
    records = test_clips(run, get_dataset_spec(run.setting("data", "dataset")))
    digits = [label // 6 for label in records["labels"]]  # class = digit * 6 + motion
    answered = [int(np.argmax(p)) // 6 for p in records["teacher"]]
    assert sum(a == d for a, d in zip(answered, digits)) >= len(digits) - 1, (digits, answered)
