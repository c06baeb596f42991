"""Deploy one compute budget: students 1..k of a run as one ONNX or torch.export (.pt2) file, with a model card.

Mamba models are known not to export (mamba-ssm's CUDA/Triton scan is opaque to torch.export and ONNX, mamba.py's
in-place pscan breaks ONNX). pkd's scan has a path the exporters understand, so a chosen prefix of an ensemble
becomes one self-contained file that an edge runtime can load without Python, pkd or a compiler.

`PrefixModel` is the deployable network: raw pixels (B, *sample_shape) in [0, 1] -> the run's normalisation
(mean/std buffers) -> the run's own student modules (pkd.models, scan in pkd.ssm) combined by `Ensemble.all_prefixes`
(residual: E_k = s_k * E_(k-1) + z_k; independent: mean of probabilities) ->

    logits (B, C)           log-probabilities of students 1..k (softmax(logits) = probs), = Ensemble.forward_prefix
    probs (B, C)            their probabilities
    prefix_probs (B, k, C)  with all_prefixes: the probabilities of every prefix 1..k, so a runtime can stop early

with a dynamic batch size B. It is traced with the scan backend "export" (pkd.ssm: out-of-place aten ops), so the
file needs neither pkd nor a compiled kernel. `export_prefix` writes it (default `<run>/export/prefix_kK.onnx`), runs
it once in onnxruntime (or torch.export.load) against eager PyTorch, and writes `<file>.card.json` / `.card.md`
beside it. Letters: B batch, C classes, k students in the prefix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from pkd import __version__, ssm
from pkd.artifacts import load_ensemble
from pkd.data import DatasetSpec, get_dataset_spec
from pkd.models.ensemble import Ensemble
from pkd.runs import Run, get_field
from pkd.runs.place import clear_stale_temps, holder, write_output
from pkd.runs.schema import PrefixRow

FORMATS = ("onnx", "pt2")
SUFFIXES = {"onnx": ".onnx", "pt2": ".pt2"}
EXPORT_DIR = "export"  # inside a run directory, the one folder export writes to
OUTPUTS = ("logits", "probs", "prefix_probs")
TOLERANCE = 1e-4  # the exported file must match eager PyTorch within this, on every output
CHECK_SAMPLES = 16  # seeded uniform samples the file is checked on when it is written (and 1 more at batch 1)
ONNX_HINT = "pip install onnx==1.23.2 onnxscript==0.7.2 onnxruntime==1.31.1 (all in requirements.txt)"


class Normalize(nn.Module):
    """DatasetSpec.normalize as a module: (x - mean) / std per channel, mean/std as buffers (C, 1, 1)."""

    def __init__(self, spec: DatasetSpec) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(spec.mean, dtype=torch.float32).view(-1, 1, 1))  # (C, 1, 1)
        self.register_buffer("std", torch.tensor(spec.std, dtype=torch.float32).view(-1, 1, 1))  # (C, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Args: x: (B, *sample_shape) in [0, 1]. Returns: the same shape, standardised."""
        return (x - self.mean) / self.std


class PrefixModel(nn.Module):
    """Pixels (B, *sample_shape) in [0, 1] -> logits (B, C), probs (B, C) [, prefix_probs (B, k, C)].

    Args:
        ensemble: the first k students of a run (`load_ensemble(run, k=k)`); its modules are used as they are.
        spec: the run's dataset (shape and normalisation).
        all_prefixes: also return every prefix's probabilities.
    """

    def __init__(self, ensemble: Ensemble, spec: DatasetSpec, all_prefixes: bool = False) -> None:
        super().__init__()
        self.ensemble = ensemble
        self.normalize = Normalize(spec)
        self.sample_shape = tuple(spec.sample_shape)
        self.all_prefixes = all_prefixes

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Args: pixels: (B, *sample_shape) float32 in [0, 1]. Returns: logits, probs (B, C)[, (B, k, C)]."""
        prefixes = self.ensemble.all_prefixes(self.normalize(pixels))  # k x (B, C) log-probabilities
        logits = prefixes[-1]  # (B, C)
        if not self.all_prefixes:
            return logits, logits.exp()
        return logits, logits.exp(), torch.stack(prefixes, dim=1).exp()  # (B, C), (B, C), (B, k, C)


# ------------------------------------------------------------------------------------------------ checks


def check_request(run: Run, k: int, format: str) -> int:
    """Refuse a bad format, a k outside 1..(saved students) and a run that is still training; returns k."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose one of: {', '.join(FORMATS)}")
    if isinstance(k, bool) or not isinstance(k, int):
        raise ValueError(f"--k must be a whole number of students, got {k!r}")
    if run.is_active():
        raise ValueError(f"run {run.name} is still training (state {run.state()}); export it once it has finished "
                         "or after stopping it")
    saved = run.students_saved()
    if saved == 0:
        raise ValueError(f"run {run.name} has no saved students yet; nothing to export")
    if not 1 <= k <= saved:
        raise ValueError(f"--k {k} is out of range: run {run.name} has {saved} saved students; choose --k 1..{saved}")
    return k


def card_paths(path: Path) -> tuple[Path, Path]:
    """The model card beside an exported file: <file>.card.json and <file>.card.md (prefix_k2.onnx.card.md)."""
    return path.with_name(path.name + ".card.json"), path.with_name(path.name + ".card.md")


def default_name(k: int, format: str, all_prefixes: bool = False) -> str:
    return f"prefix_k{k}{'_all' if all_prefixes else ''}{SUFFIXES[format]}"


def output_path(run: Run, name: str, out: str | os.PathLike | None, force: bool = False) -> Path:
    """Where the file goes: `<run>/export/<name>`, or --out (a file, or an existing folder to put <name> in).

    The path is resolved before it is checked; refused: a symbolic link at the out path, an out path inside
    another run directory (or inside this run outside its export/ folder), a missing folder, and files that
    exist already (unless force).
    """
    if out is None:
        folder = run.path.resolve() / EXPORT_DIR
        if folder.is_symlink():
            raise ValueError(f"{folder} is a symbolic link; a run directory is written only inside itself: remove "
                             "the link, or give --out")
        folder.mkdir(exist_ok=True)
        target = folder / name
    else:
        given = Path(out).expanduser()
        if given.is_symlink():
            raise ValueError(f"--out {out} is a symbolic link; give the path of a real file or folder")
        target = given.resolve()
        if target.is_dir():
            target = target / name
        elif target.suffix != Path(name).suffix:
            raise ValueError(f"--out {out} must end in {Path(name).suffix} for this format (or name a folder)")
        if not target.parent.is_dir():
            raise ValueError(f"--out {out}: folder {target.parent} does not exist; create it first")
    _check_not_in_a_run(run, target)
    for path in (target, *card_paths(target)):
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link; refusing to write through it: remove it or choose --out")
        if path.exists() and (not force or not path.is_file()):
            raise ValueError(f"{path} already exists; pass --force to replace it, or choose another --out")
    return target


def _check_not_in_a_run(run: Run, target: Path) -> None:
    """Refuse a resolved target inside a run directory (the nearest folder with a manifest above it), except
    this run's own export/ folder."""
    own = run.path.resolve()
    found = holder(target)
    if found is not None and found[1] == "sweep":
        raise ValueError(f"--out {target} lies inside the sweep folder {found[0]}; its files are written by the sweep "
                         "only: write outside it")
    holder_dir = found[0] if found is not None else None
    if holder_dir is None or (holder_dir == own and target.is_relative_to(own / EXPORT_DIR)):
        return
    if holder_dir == own:
        raise ValueError(f"--out {target} lies inside run {run.name} outside its {EXPORT_DIR}/ folder; write into "
                         f"{own / EXPORT_DIR} or outside the run")
    raise ValueError(f"--out {target} lies inside another run directory, {holder_dir}; write outside it (a run's files "
                     "are written only by that run)")


# ------------------------------------------------------------------------------------------------ exporters


def _export_program(model: PrefixModel) -> torch.export.ExportedProgram:
    """torch.export of the model with a dynamic batch, on the exportable scan; the nodes' stack traces (this
    machine's source paths) are dropped."""
    example = torch.rand(2, *model.sample_shape, generator=torch.Generator().manual_seed(0))
    batch = torch.export.Dim("batch", min=1)
    with ssm.use_backend("export"), torch.no_grad():
        program = torch.export.export(model, (example,), dynamic_shapes={"pixels": {0: batch}})
    for node in program.graph.nodes:
        node.meta.pop("stack_trace", None)
    return program


def _write_pt2(model: PrefixModel, path: Path, meta: dict) -> int | None:
    """torch.export's .pt2 archive, the card in its extra file pkd_card.json. Returns no opset (None)."""
    torch.export.save(_export_program(model), path, extra_files={"pkd_card.json": json.dumps(meta)})
    return None


@contextlib.contextmanager
def _quiet(*names: str):
    """Hold the named loggers at WARNING for a with-block (the ONNX optimiser logs every pass at INFO)."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(max(lg.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _write_onnx(model: PrefixModel, path: Path, meta: dict) -> int | None:
    """ONNX through the dynamo exporter (torch.export underneath); the card goes to metadata_props. Returns the
    opset."""
    try:
        import onnxscript  # noqa: F401 - the dynamo exporter's translation library
    except ImportError:
        raise RuntimeError(f"--format onnx needs the onnx exporter's packages: {ONNX_HINT}") from None
    names = list(OUTPUTS[:3 if model.all_prefixes else 2])
    program = _export_program(model)
    with warnings.catch_warnings(), _quiet("onnx_ir", "onnxscript"):
        warnings.simplefilter("ignore")  # the exporter's notes on axis names and its own deprecations
        onnx_program = torch.onnx.export(program, dynamo=True, input_names=["pixels"], output_names=names,
                                         verbose=False)
    for node in onnx_program.model.graph.all_nodes():
        node.metadata_props.clear()  # the exporter's per-node stack traces: 90% of the file, and local paths
    onnx_program.model.metadata_props.update({f"pkd.{key}": json.dumps(value) for key, value in meta.items()})
    onnx_program.save(path, external_data=False)
    return int(onnx_program.model.opset_imports[""])


def onnx_session(path: str | os.PathLike, threads: int | None = None, spinning: bool = True) -> Any:
    """An onnxruntime CPU session for an exported file, `threads` intra-op threads (default: torch's); without
    `spinning` its idle threads sleep at once instead of busy-waiting (fair beside torch in one process)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise RuntimeError(f"checking an ONNX file needs onnxruntime: {ONNX_HINT}") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def load_file(path: str | os.PathLike, format: str) -> Any:
    """An exported file as a function pixels (B, *sample_shape) -> list of output tensors: onnxruntime for ONNX,
    torch.export.load for pt2."""
    if format == "onnx":
        session = onnx_session(path)
        return lambda pixels: [torch.from_numpy(a) for a in session.run(None, {"pixels": pixels.numpy()})]
    module = torch.export.load(path).module()

    def run(pixels: torch.Tensor) -> list[torch.Tensor]:
        with torch.no_grad():
            return list(module(pixels))

    return run


def check_file(model: PrefixModel, path: Path, format: str) -> dict:
    """Run the written file on seeded uniform samples (a batch of CHECK_SAMPLES and one of 1) against the eager
    model on the usual scan backend; RuntimeError when an output differs by more than TOLERANCE."""
    pixels = torch.rand(CHECK_SAMPLES + 1, *model.sample_shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        want = model(pixels)
    run = load_file(path, format)
    got = [torch.cat(parts) for parts in zip(run(pixels[:-1]), run(pixels[-1:]))]
    diff = max(float((g - w).abs().max()) for g, w in zip(got, want))
    same = bool(torch.equal(got[0].argmax(-1), want[0].argmax(-1)))
    if not diff <= TOLERANCE or not same:
        raise RuntimeError(f"{path}: the exported file differs from eager PyTorch by {diff:.2e} (> {TOLERANCE:g}) "
                           f"or in its predictions; it was not kept; please report this with the run")
    runtime = "onnxruntime" if format == "onnx" else "torch.export.load"
    return {"runtime": runtime, "samples": CHECK_SAMPLES + 1, "inputs": "seeded uniform [0, 1], batch 16 and 1",
            "max_abs_diff": diff, "same_predictions": same, "eager_scan_backend": ssm.scan_backend("cpu")}


# ------------------------------------------------------------------------------------------------ the card


def card_fields(run: Run, k: int, format: str, ensemble: Ensemble, spec: DatasetSpec, all_prefixes: bool) -> dict:
    """What the model card says about the model itself (everything but the file's hash, opset and check)."""
    row = next((r for r in run.prefix_table() if r.get("k") == k), {})
    outputs = {"logits": "(batch, C) log-probabilities of students 1..k (softmax(logits) = probs)",
               "probs": "(batch, C) probabilities of students 1..k"}
    if all_prefixes:
        outputs["prefix_probs"] = f"(batch, {k}, C) probabilities of every prefix 1..{k}, for early exit"
    return {
        "pkd_version": __version__, "torch_version": torch.__version__, "format": format,
        "run": run.name, "k": k, "students_saved": run.students_saved(), "mode": ensemble.mode,
        "prev_scales": ensemble.prev_scales, "dataset": spec.name, "classes": list(spec.class_names),
        "input": {"name": "pixels", "shape": ["batch", *spec.sample_shape], "dtype": "float32", "range": [0.0, 1.0],
                  "preprocessing": "built in: (pixels - mean) / std per channel", "mean": list(spec.mean),
                  "std": list(spec.std)},
        "outputs": outputs,
        "flops_per_sample": ensemble.cumulative_flops()[k - 1], "student_flops": ensemble.student_flops,
        "share_of_teacher": row.get(PrefixRow.SHARE_OF_TEACHER), "test_acc": row.get(PrefixRow.PREFIX_ACC),
        "val_acc": row.get(PrefixRow.PREFIX_VAL_ACC), "test_limit": get_field(run.config(), "data", "test_limit"),
    }


def card_markdown(card: dict) -> str:
    """The model card as Markdown: what the file computes, its input and outputs, cost, accuracy and check."""
    acc = card["test_acc"]
    check = card["check"]
    lines = [
        f"# {card['run']}: students 1..{card['k']} ({card['format']})", "",
        f"Ensemble prefix k = {card['k']} of {card['students_saved']} saved students ({card['mode']} mode, "
        f"scales {card['prev_scales']}), exported by pkd {card['pkd_version']} with torch {card['torch_version']}.",
        "", "| | |", "|---|---|",
        f"| file | `{card['file']}` ({card['bytes']:,} bytes), sha256 `{card['sha256']}` |",
        f"| format | {card['format']}" + (f", opset {card['opset']}" if card["opset"] else "") + " |",
        f"| input | `pixels` float32 {card['input']['shape']} in [0, 1]; normalisation built in (mean "
        f"{card['input']['mean']}, std {card['input']['std']}) |",
        *[f"| output `{name}` | {text} |" for name, text in card["outputs"].items()],
        f"| classes | {', '.join(card['classes'])} |",
        f"| FLOPs per sample | {card['flops_per_sample']:,} (students: {card['student_flops']}) |",
        f"| test accuracy | {'n/a' if acc is None else f'{100 * acc:.2f}%'}"
        + (f" (first {card['test_limit']} test samples)" if card["test_limit"] else "") + " |",
        f"| check | {check['runtime']} vs eager PyTorch on {check['samples']} samples: max abs diff "
        f"{check['max_abs_diff']:.2e}, same predictions: {check['same_predictions']} |",
    ]
    return "\n".join(lines) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same folder + os.replace (pkd.runs.place: never half-written; a link planted at
    the path is replaced, not followed); OSError with one line naming the file."""
    write_output(path, data, "--out")


# ------------------------------------------------------------------------------------------------ the entry point


def export_prefix(run: Run, k: int, format: str = "onnx", out: str | os.PathLike | None = None,
                  all_prefixes: bool = False, force: bool = False) -> Path:
    """Export students 1..k of `run` as one file plus its model card; returns the file's path.

    Args:
        run: a run with at least k saved students, not being trained.
        k: the prefix (1..saved students). format: "onnx" or "pt2" (torch.export).
        out: file or existing folder (default `<run>/export/`). all_prefixes: add the (B, k, C) output.
        force: replace existing files at the destination.
    """
    check_request(run, k, format)
    path = output_path(run, default_name(k, format, all_prefixes), out, force)
    spec = get_dataset_spec(run.setting("data", "dataset"))
    ensemble = load_ensemble(run, k=k)
    model = PrefixModel(ensemble, spec, all_prefixes).eval()
    card = card_fields(run, k, format, ensemble, spec, all_prefixes)
    with tempfile.TemporaryDirectory(prefix="pkd-export-") as tmp:
        built = Path(tmp) / path.name
        opset = (_write_onnx if format == "onnx" else _write_pt2)(model, built, card)
        check = check_file(model, built, format)
        data = built.read_bytes()
    card.update(file=path.name, bytes=len(data), sha256=hashlib.sha256(data).hexdigest(), opset=opset, check=check,
                created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    card_json, card_md = card_paths(path)
    clear_stale_temps(path.parent)  # what an export killed mid-write left
    _write_atomic(path, data)
    _write_atomic(card_json, (json.dumps(card, indent=1) + "\n").encode())
    _write_atomic(card_md, card_markdown(card).encode())
    return path


def export_bytes(run: Run, k: int, format: str = "onnx", all_prefixes: bool = False) -> tuple[bytes, dict, str]:
    """Export into a temporary folder (never into the run directory), for a download.

    Returns:
        (the file's bytes, its model card, the card as Markdown).
    """
    with tempfile.TemporaryDirectory(prefix="pkd-export-") as tmp:
        path = export_prefix(run, k, format, out=tmp, all_prefixes=all_prefixes)
        card_json, card_md = card_paths(path)
        return path.read_bytes(), json.loads(card_json.read_text()), card_md.read_text()
