"""`pkd export RUN --web`'s refusals (each one line, nothing written), onnxruntime-web's sources (a folder, a tarball,
the cache; every file checked against its pinned sha256) and the Results page's "Download this run as a web page".
The page itself, in Chromium: tests/browser/test_web_page.py."""

from __future__ import annotations

import io
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
    full = tmp_path / "full"
    full.mkdir()
    (full / "mine.txt").write_text("kept")
    (tmp_path / "a-file").write_text("kept")
    cases = [  # through the CLI in a subprocess (each starts torch: a few), then the rest in this process
        ([str(training.path), "--web", "--out", str(tmp_path / "a")], "still training"),
        ([str(run_copy.path), "--web", "--k", "3", "--out", str(tmp_path / "b")], "has 2 saved students"),
        ([str(run_copy.path), "--web", "--out", str(full)], "already exists and is not empty"),
        ([str(ROOT / "pretrained" / "moving-mnist"), "--web", "--out", str(tmp_path / "d")], "reads clips"),
    ]
    for args, message in cases:
        one_line_error(args, message)
    for k, out, message in [(0, tmp_path / "c", "choose --k 1..2"), (None, tmp_path / "a-file", "is a file"),
                            (None, tmp_path / "no" / "page", "does not exist"),
                            (None, training.path / "page", "inside another run directory")]:
        with pytest.raises(ValueError, match=message):
            export_web(run_copy, k, out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "full", "training"]
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


def test_results_page_offers_the_run_as_a_web_page(run_copy, tmp_path, monkeypatch):
    """The Results page builds the page in a temporary folder and offers it as a zip: one folder, index.html."""
    from streamlit.testing.v1 import AppTest

    require_web_runtime()
    runs = tmp_path / "runs"
    runs.mkdir()
    copy = Run(Path(shutil.copytree(run_copy.path, runs / "tiny")))
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
    assert sorted(p.name for p in copy.path.iterdir()) == sorted(p.name for p in run_copy.path.iterdir())
