"""`pkd export RUN --web`: a run's students as one static web page that answers drawings in the browser.

The folder holds `index.html` and `assets/`: onnxruntime-web (pkd.web.runtime; its WebAssembly gzipped and
base64-encoded in a script, since a page opened from file:// may load scripts but not fetch files), the model (the
ONNX export of every prefix's probabilities, `pkd.export.PrefixModel(all_prefixes=True)`, saved in onnxruntime's own
.ort format by onnxruntime of the same version: the browser loads it faster, with no optimisation pass), the run's
records (`run.js`) and the page's own scripts (`pkd/web/page/`: the preprocessing, the clips, the chart, the page).
No server code: it opens from the file system or any static host.

One page, two modes, picked by the records' "mode": "digit" (28x28 image runs: draw a digit, test digits) and
"clip" (Moving MNIST runs: test clips and clips made from a drawing, played forwards and backwards; pkd.web.clips).
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np
import torch

from pkd import __version__, ssm
from pkd.data import get_dataset_spec
from pkd.export import EXPORT_DIR, _check_not_in_a_run, check_request, export_bytes, onnx_session
from pkd.runs import Run, get_field
from pkd.runs.schema import AnytimePoint, PrefixRow, Summary, TeacherFigures, VideoFigures
from pkd.web.clips import clip_settings, test_clips
from pkd.web.supported import unsupported_reason
from pkd.web.runtime import ORT_WEB_VERSION, runtime_files

PAGE_DIR = Path(__file__).with_name("page")  # index.html and the page's scripts, copied as they are
PAGE_SCRIPTS = ("preprocess.js", "clipmaker.js", "clips.js", "chart.js", "pkd.js")
WEB_DIR = "web"  # the default folder: <run>/export/web
TEST_DIGITS = 50  # test images the page can show ("A test digit"), a seeded pick
OPTIMIZED_TOLERANCE = 1e-5  # the .ort model against the exported ONNX file, every output


def check_web_request(run: Run, k: int | None) -> int:
    """Refuse runs the page cannot show, a run still training and a k outside 1..(saved students); returns k
    (default: every saved student)."""
    reason = unsupported_reason(run)
    if reason:
        raise ValueError(reason)
    return check_request(run, run.students_saved() if k is None else k, "onnx")


def out_folder(run: Run, out: str | os.PathLike | None) -> Path:
    """The page's folder: --out (new, or empty), default <run>/export/web; one-line refusals for an existing
    non-empty folder, a file, a link, a missing parent and a place inside a run directory."""
    if out is None:
        export = run.path.resolve() / EXPORT_DIR
        if export.is_symlink():
            raise ValueError(f"{export} is a symbolic link; a run directory is written only inside itself: give --out")
        export.mkdir(exist_ok=True)
        target, shown = export / WEB_DIR, f"{export / WEB_DIR}"
    else:
        given = Path(out).expanduser()
        if given.is_symlink():
            raise ValueError(f"--out {out} is a symbolic link; give the path of a real folder")
        target, shown = given.resolve(), f"--out {out}"
    if target.exists() and not target.is_dir():
        raise ValueError(f"{shown} is a file; give a new or empty folder")
    if target.is_dir() and any(target.iterdir()):
        raise ValueError(f"{shown} already exists and is not empty; remove it or choose a new folder")
    if not target.parent.is_dir():
        raise ValueError(f"{shown}: folder {target.parent} does not exist; create it first")
    _check_not_in_a_run(run, target)
    return target


def ort_format_model(onnx: bytes, sample_shape: tuple[int, ...]) -> bytes:
    """The exported graph in onnxruntime's own format (.ort, a flatbuffer) after its basic graph passes, checked
    against the ONNX file on seeded inputs. The browser loads it with graph optimisation off: a session is made in
    0.3-0.55 s instead of 0.6-0.7 s from the ONNX file, and 1.7 s with the optimisation pass (busy 2-core machine).
    The format is tied to the runtime's version: the page's onnxruntime-web is the same 1.31.1. `sample_shape`: the
    model's input per sample, (1, 28, 28) or a clip's (T, 1, S, S)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="pkd-web-") as tmp:
        src, dst = Path(tmp) / "model.onnx", Path(tmp) / "model.ort"
        src.write_bytes(onnx)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(dst)
        options.add_session_config_entry("session.save_model_format", "ORT")
        options.log_severity_level = 3
        ort.InferenceSession(str(src), options, providers=["CPUExecutionProvider"])
        pixels = np.random.default_rng(2).random((9, *sample_shape), dtype=np.float32)
        want = onnx_session(src, threads=1).run(None, {"pixels": pixels})
        got = onnx_session(dst, threads=1).run(None, {"pixels": pixels})
        diff = max(float(np.abs(g - w).max()) for g, w in zip(got, want))
        if not diff <= OPTIMIZED_TOLERANCE:
            raise RuntimeError(f"onnxruntime's .ort model differs from the exported ONNX file by {diff:.1e}; "
                               "please report this with the run")
        return dst.read_bytes()


def page_records(run: Run, k: int, card: dict) -> dict:
    """What the page shows besides its answers: its mode (digit or clip) and input shape, classes, each prefix's
    cost and test accuracy, the teacher and the early-exit curve, from the run's records (summary.json,
    prefix.csv)."""
    summary = run.summary()
    teacher = summary.get(Summary.TEACHER) or {}
    rows = [r for r in run.prefix_table() if r.get(PrefixRow.K) is not None and r[PrefixRow.K] <= k]
    curve = [p for p in summary.get(Summary.ANYTIME) or [] if p.get(AnytimePoint.MEAN_FLOPS)]
    shape = card["input"]["shape"][1:]  # the model's input per sample: (1, 28, 28) or (T, 1, S, S)
    return {
        "mode": "clip" if len(shape) == 4 else "digit", "sampleShape": shape,
        "runName": run.name, "datasetName": card["dataset"], "ensembleMode": card["mode"],
        "classNames": card["classes"], "pkdVersion": __version__, "runtimeVersion": ORT_WEB_VERSION,
        "teacherFlops": teacher.get(TeacherFigures.FLOPS), "teacherAcc": teacher.get(TeacherFigures.TEST_ACC),
        # a clip run's teacher on the digit alone (summary.json "video"): its digit-and-motion figure is low because
        # it averages the frames, not because it cannot read digits
        "teacherDigitAcc": (summary.get(Summary.VIDEO) or {}).get(VideoFigures.TEACHER_DIGIT_ACC),
        "prefixRows": [{"students": r[PrefixRow.K], "flops": r[PrefixRow.CUMULATIVE_FLOPS],
                        "share": r.get(PrefixRow.SHARE_OF_TEACHER), "accuracy": r.get(PrefixRow.PREFIX_ACC)}
                       for r in rows],
        # the early-exit curve is the whole run's: shown only when the page has every student
        "exitCurve": [{"confidence": p[AnytimePoint.CONFIDENCE], "accuracy": p[AnytimePoint.ACC],
                       "flops": p[AnytimePoint.MEAN_FLOPS]} for p in curve] if k == run.students_saved() else [],
        "exitLevels": sorted({p[AnytimePoint.CONFIDENCE] for p in curve} or {0.5, 0.8, 0.9, 0.95, 0.99}),
        "modelSha256": card["sha256"], "exportedAt": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def test_digits(run: Run) -> dict | None:
    """TEST_DIGITS images of the run's test split (a seeded pick) as base64 uint8 (n, 28, 28) and their labels, for
    the page's "A test digit"; None when the split cannot be read here (the page then has no such button)."""
    from pkd.data import load_split

    try:
        split = load_split(run.setting("data", "dataset"), "test", get_field(run.config(), "data", "root"))
    except (OSError, ValueError, RuntimeError):
        return None
    pick = np.random.default_rng(0).choice(len(split.labels), size=min(TEST_DIGITS, len(split.labels)), replace=False)
    pixels = (split.inputs[pick] * 255).round().clamp(0, 255).to(dtype=torch.uint8).numpy()  # (n, 1, 28, 28)
    return {"pixels": base64.b64encode(pixels.tobytes()).decode(), "labels": split.labels[pick].tolist()}


def _script(assignments: dict[str, str]) -> bytes:
    """A classic script setting window.NAME = "text" for each item (JSON-quoted)."""
    return "".join(f"window.{name} = {json.dumps(text)};\n" for name, text in assignments.items()).encode()


def page_files(run: Run, k: int, runtime: dict[str, bytes]) -> dict[str, bytes]:
    """{relative path: bytes} of the whole page for students 1..k."""
    with ssm.export_in_rounds():  # fewer graph nodes: the browser makes its session sooner (docs/web.md)
        onnx, card, _ = export_bytes(run, k, "onnx", all_prefixes=True)
    records = page_records(run, k, card)
    model = ort_format_model(onnx, tuple(records["sampleShape"]))
    wasm = gzip.compress(runtime["ort-wasm-simd-threaded.wasm"], 9, mtime=0)
    if records["mode"] == "clip":
        spec = get_dataset_spec(run.setting("data", "dataset"))
        records.update(testDigits=None, clips=clip_settings(spec), testClips=test_clips(run, spec))
    else:
        records.update(testDigits=test_digits(run), clips=None, testClips=None)
    title = f"{run.name}: {k} students" if k > 1 else f"{run.name}: 1 student"
    html = (PAGE_DIR / "index.html").read_text().replace("__TITLE__", title)
    files = {
        "index.html": html.replace("__WHAT__", "play a clip" if records["mode"] == "clip" else "draw a digit").encode(),
        "assets/ort.wasm.min.js": runtime["ort.wasm.min.js"],
        "assets/ort-wasm.js": _script({"PKD_ORT_GLUE": runtime["ort-wasm-simd-threaded.mjs"].decode(),
                                       "PKD_ORT_WASM_GZ": base64.b64encode(wasm).decode()}),
        "assets/model.js": _script({"PKD_MODEL": base64.b64encode(model).decode()}),
        "assets/run.js": f"window.PKD_RUN = {json.dumps(records, indent=1)};\n".encode(),
        "run.json": (json.dumps({**records, "modelCard": card}, indent=1) + "\n").encode(),
    }
    files.update({f"assets/{name}": (PAGE_DIR / name).read_bytes() for name in PAGE_SCRIPTS})
    return files


def export_web(run: Run, k: int | None = None, out: str | os.PathLike | None = None,
               runtime_source: str | os.PathLike | None = None) -> Path:
    """Write the page of students 1..k (default all) of `run` into a new or empty folder; returns the folder.

    The runtime is obtained first (pkd.web.runtime: $PKD_ORT_WEB, the cache or the npm registry), so a missing one
    is refused before the export's minute of work. The page is built in a temporary folder beside the target and
    renamed into place: an interrupted export leaves nothing half-written.
    """
    k = check_web_request(run, k)
    target = out_folder(run, out)
    runtime = runtime_files(runtime_source)
    files = page_files(run, k, runtime)
    building = Path(tempfile.mkdtemp(prefix=".pkd-web-", dir=target.parent))
    try:
        building.chmod(0o755)  # mkdtemp's 0700 would hide the page from a web server's user
        for name, data in files.items():
            (building / name).parent.mkdir(parents=True, exist_ok=True)
            (building / name).write_bytes(data)
        if target.is_dir():
            target.rmdir()  # empty (checked above); a file appearing meanwhile makes this fail, nothing is lost
        building.rename(target)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return target


def web_zip(run: Run, k: int | None = None) -> bytes:
    """The page as a zip (one folder, <run>-web/), built in a temporary folder (never in the run directory)."""
    with tempfile.TemporaryDirectory(prefix="pkd-web-") as tmp:
        folder = export_web(run, k, out=Path(tmp) / f"{run.name}-web")
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in sorted(folder.rglob("*")):
                if path.is_file():
                    archive.write(path, path.relative_to(folder.parent).as_posix())
        return buffer.getvalue()


def folder_bytes(folder: Path) -> int:
    """The page's size on disk: every file's bytes."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
