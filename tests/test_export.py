"""pkd export on a real trained run: every prefix k as ONNX and torch.export files, checked against eager PyTorch on
the run's test split, the model card, the CLI in a subprocess, the app's download, and the refusals.

No mocks: the tiny run is trained by the real CLI (tests/conftest.py), the files are run in onnxruntime and with
torch.export.load. Everything is written under pytest's temporary folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

import pkd
from pkd import data as pkd_data
from pkd import export, ssm
from pkd.artifacts import load_ensemble
from pkd.data import get_dataset_spec
from pkd.procs import proc_start_time
from pkd.runs import MANIFEST_FILE, Run, State
from pkd.ssm.cpu_kernel import KERNEL
from tests.pkd_process import ROOT
from tests.pkd_process import pkd as run_pkd
from tests.pkd_process import pkd_ok

TOL = 1e-4
# What is exported once per module: (format, k, all_prefixes). With the tiny run's K = 2 this is every k in both
# formats; k = 2 also carries the all-prefixes output (the CLI test exports the plain k = 2 file).
EXPORTS = [("onnx", 1, False), ("onnx", 2, True), ("pt2", 1, False), ("pt2", 2, True)]


@pytest.fixture(scope="module")
def run_copy(tiny_run, tmp_path_factory) -> Run:
    """A copy of the session's tiny run that this module may write into (its export/ folder)."""
    path = tmp_path_factory.mktemp("export-runs") / "tiny"
    shutil.copytree(tiny_run.path, path)
    return Run(path)


@pytest.fixture(scope="module")
def exported(run_copy) -> dict[tuple, Path]:
    return {(fmt, k, every): export.export_prefix(run_copy, k, fmt, all_prefixes=every) for fmt, k, every in EXPORTS}


@pytest.fixture(scope="module")
def test_split(run_copy, mnist) -> torch.Tensor:
    """The tiny run's test split: its first test_limit MNIST test images, float32 (N, 1, 28, 28) in [0, 1]."""
    limit = run_copy.config()["data"]["test_limit"]
    return mnist["test"].inputs[:limit].float()


def eager_prefixes(run: Run, k: int, pixels: torch.Tensor) -> list[torch.Tensor]:
    """Every prefix's log-probabilities from the library's own ensemble on normalised inputs: k x (N, C)."""
    spec = pkd_data.get_dataset_spec("mnist")
    with torch.no_grad():
        return load_ensemble(run, k=k).all_prefixes(spec.normalize(pixels))


def run_exported(path: Path, fmt: str, pixels: torch.Tensor) -> list[torch.Tensor]:
    """The file's outputs, in batches of 256 plus one batch of 1 (the batch size is dynamic)."""
    run = export.load_file(path, fmt)
    parts = [run(pixels[:1])] + [run(pixels[i:i + 256]) for i in range(1, len(pixels), 256)]
    return [torch.cat(outs) for outs in zip(*parts)]


# ------------------------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("fmt, k, every", EXPORTS, ids=[f"{f}-k{k}{'-all' if a else ''}" for f, k, a in EXPORTS])
def test_exported_file_matches_eager_on_the_test_split(exported, run_copy, test_split, fmt, k, every):
    outputs = run_exported(exported[(fmt, k, every)], fmt, test_split)
    want = eager_prefixes(run_copy, k, test_split)
    assert len(outputs) == (3 if every else 2)
    logits, probs = outputs[:2]
    diff = max(float((logits - want[-1]).abs().max()), float((probs - want[-1].exp()).abs().max()))
    same = int((logits.argmax(-1) == want[-1].argmax(-1)).sum())
    print(f"{fmt} k={k}: max |exported - eager| {diff:.2e}, same predictions {same}/{len(test_split)}")
    assert diff <= TOL
    assert same == len(test_split)
    if every:  # (N, k, C): prefix j's probabilities = exp(Ensemble.all_prefixes(x)[j])
        assert outputs[2].shape == (len(test_split), k, 10)
        assert float((outputs[2] - torch.stack(want, dim=1).exp()).abs().max()) <= TOL


def test_pt2_program_is_plain_aten(exported):
    """The deployable .pt2 has no pkd custom op in it: it runs wherever torch runs, without pkd or a kernel."""
    program = torch.export.load(exported[("pt2", 2, True)])
    targets = {str(node.target) for node in program.graph.nodes if node.op == "call_function"}
    assert not [t for t in targets if "pkd" in t], targets


def test_model_card(exported, run_copy):
    rows = {row["k"]: row for row in run_copy.prefix_table()}
    spec = pkd_data.get_dataset_spec("mnist")
    for (fmt, k, every), path in exported.items():
        card_json, card_md = export.card_paths(path)
        card = json.loads(card_json.read_text())
        assert path.parent == run_copy.path.resolve() / export.EXPORT_DIR
        assert card["run"] == run_copy.name and card["k"] == k and card["format"] == fmt
        assert card["classes"] == list(spec.class_names)
        assert card["input"]["shape"] == ["batch", 1, 28, 28] and card["input"]["range"] == [0.0, 1.0]
        assert card["input"]["mean"] == list(spec.mean) and card["input"]["std"] == list(spec.std)
        flops = load_ensemble(run_copy, k).cumulative_flops()[-1]
        assert card["flops_per_sample"] == rows[k]["cumulative_flops"] == flops
        assert card["test_acc"] == rows[k]["prefix_acc"]
        assert card["pkd_version"] == pkd.__version__
        assert card["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest() and card["bytes"] == path.stat().st_size
        assert (card["opset"] >= 18) if fmt == "onnx" else card["opset"] is None
        assert card["check"]["max_abs_diff"] <= TOL and card["check"]["same_predictions"] is True
        assert ("prefix_probs" in card["outputs"]) == every
        assert card["sha256"] in card_md.read_text()
    props = {p.key: p.value for p in onnx.load(exported[("onnx", 1, False)]).metadata_props}
    assert json.loads(props["pkd.k"]) == 1 and json.loads(props["pkd.run"]) == run_copy.name


# ------------------------------------------------------------------------------------------------ the scan


@pytest.mark.parametrize("length, rounds", [(16, False), (ssm.EXPORT_UNROLL_MAX + 3, False), (13, True)],
                         ids=["unrolled", "long-in-rounds", "in-rounds"])
def test_export_scan_matches_reference_and_runs_in_onnxruntime(length, rounds, tmp_path):
    g = torch.Generator().manual_seed(0)
    u, delta, z = (torch.randn(2, 8, length, generator=g) for _ in range(3))
    B, C = (torch.randn(2, 4, length, generator=g) for _ in range(2))
    A, D, bias = -torch.rand(8, 4, generator=g) - 0.1, torch.randn(8, generator=g), torch.rand(8, generator=g)
    want, want_last = ssm.selective_scan_ref(u, delta, A, B, C, D, z, bias, True, True)
    with ssm.export_in_rounds() if rounds else contextlib.nullcontext():
        got, got_last = ssm.selective_scan_export(u, delta, A, B, C, D, z, bias, True, True)
    assert float((got - want).abs().max()) <= 1e-5 and float((got_last - want_last).abs().max()) <= 1e-5

    class Scan(torch.nn.Module):  # the weights as a model holds them: buffers, not constants in a closure
        def __init__(self):
            super().__init__()
            for name, value in (("A", A), ("D", D), ("bias", bias)):
                self.register_buffer(name, value)

        def forward(self, u, delta, B, C, z):
            with ssm.use_backend("export"):
                return ssm.selective_scan(u, delta, self.A, B, C, self.D, z, self.bias, delta_softplus=True)

    batch = torch.export.Dim("batch", min=1)
    with ssm.export_in_rounds() if rounds else contextlib.nullcontext():
        program = torch.export.export(Scan(), (u, delta, B, C, z), dynamic_shapes=({0: batch},) * 5)
    torch.onnx.export(program, dynamo=True, verbose=False).save(tmp_path / "scan.onnx")
    nodes = len(onnx.load(tmp_path / "scan.onnx").graph.node)
    if length <= ssm.EXPORT_UNROLL_MAX:  # 13 steps in rounds: 46 nodes (99 unrolled); unrolled: six a step and more
        assert nodes < 60 if rounds else nodes > 6 * length
    session = export.onnx_session(tmp_path / "scan.onnx")
    inputs = (u, delta, B, C, z)
    assert len(session.get_inputs()) == len(inputs)
    feed = {meta.name: t.numpy() for meta, t in zip(session.get_inputs(), inputs)}  # in forward's order
    assert float(np.abs(session.run(None, feed)[0] - want.numpy()).max()) <= 1e-5


def test_a_clip_run_exports_to_onnx(tmp_path):
    """The shipped Moving MNIST students read 384 rows (> EXPORT_UNROLL_MAX), so their scan is exported in rounds;
    the file answers as eager PyTorch (torch's scan op, used before, stopped the ONNX exporter on a dynamic batch)."""
    run = Run(ROOT / "pretrained" / "moving-mnist-independent")
    spec = get_dataset_spec(run.setting("data", "dataset"))
    path = export.export_prefix(run, 2, "onnx", out=tmp_path / "clips.onnx", all_prefixes=True)
    clips = torch.rand(3, *spec.sample_shape, generator=torch.Generator().manual_seed(1))  # (3, T, 1, S, S)
    with torch.no_grad():
        want = export.PrefixModel(load_ensemble(run, k=2), spec, all_prefixes=True).eval()(clips)[2].numpy()
    got = export.onnx_session(path, threads=1).run(["prefix_probs"], {"pixels": clips.numpy()})[0]  # (3, 2, C)
    assert float(np.abs(got - want).max()) <= 1e-4 and (got.argmax(-1) == want.argmax(-1)).all()


def test_training_model_exports_with_the_fused_kernel(run_copy):
    """torch.export traces a student on the cpp backend through the pkd::scan_fwd custom op: same outputs as eager,
    and (training mode) the same gradients through the registered backward."""
    if not ssm.build_cpu_kernel(verbose=False):
        if os.environ.get("PKD_REQUIRE_KERNEL") == "1":
            pytest.fail(f"PKD_REQUIRE_KERNEL=1 but the fused kernel is unavailable: {KERNEL.error}")
        pytest.skip(f"fused kernel unavailable: {KERNEL.error}")
    student = load_ensemble(run_copy, k=2).students[1].train()
    x = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with ssm.use_backend("cpp"):
        program = torch.export.export(student, (x,), dynamic_shapes=({0: torch.export.Dim("batch", min=1)},))
        exported_module = program.module()
        want, got = student(x), exported_module(x)
        names = [name for name, _ in student.named_parameters()]
        want_grads = torch.autograd.grad(want.square().sum(), [p for _, p in student.named_parameters()])
        params = dict(exported_module.named_parameters())
        got_grads = torch.autograd.grad(got.square().sum(), [params[name] for name in names])
    assert any("pkd.scan_fwd" in str(node.target) for node in program.graph.nodes)
    assert torch.allclose(got, want, atol=1e-6, rtol=0)
    for name, g_got, g_want in zip(names, got_grads, want_grads):
        assert torch.allclose(g_got, g_want, atol=1e-5, rtol=1e-5), name
    with ssm.use_backend("cpp"), torch.no_grad():
        assert torch.allclose(exported_module(x[:1]), student(x[:1]), atol=1e-6, rtol=0)


def test_use_backend_is_scoped_and_checked(monkeypatch):
    monkeypatch.setenv(ssm.BACKEND_ENV, "torch")
    with ssm.use_backend("export"):
        assert ssm.scan_backend() == "export"
    assert ssm.scan_backend() == "torch"
    with pytest.raises(ValueError, match="choose one of"):
        with ssm.use_backend("fast"):
            pass


# ------------------------------------------------------------------------------------------------ the CLI and app


def test_cli_exports_through_a_real_subprocess(run_copy, test_split, tmp_path):
    out = tmp_path / "deploy" / "mnist-k2.onnx"
    out.parent.mkdir()
    proc = pkd_ok("export", str(run_copy.path), "--k", "2", "--out", str(out))
    assert str(out) in proc.stdout and "same predictions" in proc.stdout
    assert sorted(p.name for p in out.parent.iterdir()) == ["mnist-k2.onnx", "mnist-k2.onnx.card.json",
                                                          "mnist-k2.onnx.card.md"]
    logits, probs = run_exported(out, "onnx", test_split)
    want = eager_prefixes(run_copy, 2, test_split)[-1]
    assert float((logits - want).abs().max()) <= TOL and torch.equal(logits.argmax(-1), want.argmax(-1))
    again = run_pkd("export", str(run_copy.path), "--k", "2", "--out", str(out))
    assert again.returncode == 2 and "already exists" in again.stderr and "--force" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1


def copy_run(run: Run, to: Path) -> Run:
    """A copy of a run directory without what was exported from it."""
    return Run(Path(shutil.copytree(run.path, to, ignore=shutil.ignore_patterns(export.EXPORT_DIR))))


def active_copy(run: Run, where: Path) -> Run:
    """A copy of `run` whose status says this (live) test process is training it."""
    copy = copy_run(run, where / "training")
    copy.write_status(state=State.RUNNING, pid=os.getpid(), pid_start=proc_start_time(os.getpid()))
    assert copy.is_active()
    return copy


def test_cli_refuses_hostile_requests_in_one_line(run_copy, tmp_path):
    other = copy_run(run_copy, tmp_path / "other").path
    training = active_copy(run_copy, tmp_path)
    cases = [
        ([str(run_copy.path), "--k", "0"], "choose --k 1..2"),
        ([str(run_copy.path), "--k", "3"], "has 2 saved students"),
        ([str(training.path), "--k", "1"], "still training"),
        ([str(run_copy.path), "--k", "1", "--out", str(other / "x.onnx")], "inside another run directory"),
    ]
    for args, message in cases:
        proc = run_pkd("export", *args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (args, proc.stderr)
    assert not (other / "x.onnx").exists() and not (training.path / export.EXPORT_DIR).exists()


def test_app_results_page_offers_the_export(run_copy, tmp_path, monkeypatch):
    """The Results page builds the file in a temporary folder (the run directory is left alone) and offers it."""
    from streamlit.testing.v1 import AppTest

    runs = tmp_path / "runs"
    runs.mkdir()
    copy = copy_run(run_copy, runs / "tiny")
    monkeypatch.setenv("PKD_RUNS_DIR", str(runs))
    monkeypatch.setenv("PKD_PRETRAINED_DIR", str(tmp_path / "no-pretrained"))
    at = AppTest.from_file(str(Path(__file__).resolve().parents[1] / "app" / "main.py"), default_timeout=180)
    at.run()
    assert not at.exception, at.exception
    assert at.session_state["run"] == str(copy.path)
    at.selectbox(key="results_export_k").set_value(1)
    at.button(key="results_export_build").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    built = at.session_state["results_export"]
    assert built["k"] == 1 and built["card"]["k"] == 1 and len(built["data"]) == built["card"]["bytes"]
    assert hashlib.sha256(built["data"]).hexdigest() == built["card"]["sha256"]
    assert len(at.get("download_button")) >= 3  # the table CSV, the ONNX file, its card
    assert not (copy.path / export.EXPORT_DIR).exists()


# ------------------------------------------------------------------------------------------------ refusals


def test_bad_k_and_format_are_refused(run_copy):
    for k, message in [(0, "out of range"), (-1, "out of range"), (3, "choose --k 1..2"), (True, "whole number"),
                       ("2", "whole number"), (1.0, "whole number")]:
        with pytest.raises(ValueError, match=message):
            export.export_prefix(run_copy, k)
    with pytest.raises(ValueError, match="unknown export format 'tflite'; choose one of: onnx, pt2"):
        export.export_prefix(run_copy, 1, "tflite")


def test_a_run_still_training_is_refused(run_copy, tmp_path):
    training = active_copy(run_copy, tmp_path)
    with pytest.raises(ValueError, match=f"run {training.name} is still training"):
        export.export_prefix(training, 1)
    assert not (training.path / export.EXPORT_DIR).exists()


def test_out_paths_that_could_do_harm_are_refused(run_copy, tmp_path):
    other = copy_run(run_copy, tmp_path / "other").path
    before = sorted(p.relative_to(other) for p in other.rglob("*"))
    (tmp_path / "real.onnx").write_bytes(b"not mine")
    (tmp_path / "link.onnx").symlink_to(tmp_path / "real.onnx")
    (tmp_path / "dangling.onnx").symlink_to(tmp_path / "nowhere.onnx")
    (tmp_path / "into-other").symlink_to(other)
    (tmp_path / "exists.onnx.card.md").write_text("mine")
    cases = [
        (other / "x.onnx", "inside another run directory"),
        (other / "students" / "x.onnx", "inside another run directory"),
        (tmp_path / "into-other" / "x.onnx", "inside another run directory"),  # resolved before it is checked
        (tmp_path / "link.onnx", "symbolic link"),
        (tmp_path / "dangling.onnx", "symbolic link"),
        (tmp_path / "real.onnx", "already exists"),
        (tmp_path / "exists.onnx", "already exists"),  # its card would overwrite exists.onnx.card.md
        (run_copy.path / "x.onnx", "outside its export/ folder"),
        (run_copy.path / MANIFEST_FILE, "must end in .onnx"),
        (tmp_path / "x.pt2", "must end in .onnx"),
        (tmp_path / "missing" / "x.onnx", "does not exist"),
    ]
    for out, message in cases:
        with pytest.raises(ValueError, match=message):
            export.export_prefix(run_copy, 1, out=out)
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before
    assert (tmp_path / "real.onnx").read_bytes() == b"not mine"
    assert (tmp_path / "exists.onnx.card.md").read_text() == "mine"
    real = (tmp_path / "real.onnx").resolve()
    assert export.output_path(run_copy, "x.onnx", tmp_path / "real.onnx", force=True) == real
    assert export.output_path(run_copy, "x.onnx", tmp_path) == real.parent / "x.onnx"  # a folder: the default name


def test_a_linked_export_folder_is_refused(run_copy, tmp_path):
    linked = copy_run(run_copy, tmp_path / "linked")
    (tmp_path / "elsewhere").mkdir()
    (linked.path / export.EXPORT_DIR).symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match="symbolic link; a run directory is written only inside itself"):
        export.export_prefix(linked, 1)
    assert not any((tmp_path / "elsewhere").iterdir())
