"""The layout's rules, checked on the source: one-way imports, no module importing its own package's face, and
run-file names and run states spelled only in pkd/runs/files.py (the run directory's names)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN_FILES = {"status.json", "manifest.json", "metrics.jsonl", "prefix.csv", "summary.json", "teacher.pt",
             "checkpoint.pt", "train.log", "console.log"}  # (students/ is also a config section name)
RUN_STATES = {"running", "done", "failed", "stopped", "died", "broken"}
# package -> packages it must never import (training -> models -> ops; the app reads artifacts only)
FORBIDDEN = {
    "app": ("pkd.train", "pkd.sweep.study", "pkd.sweep.worker"),
    "pkd/models": ("pkd.train", "pkd.evaluate", "pkd.artifacts", "pkd.runs", "pkd.data"),
    "pkd/data": ("pkd.train", "pkd.models", "pkd.evaluate", "pkd.artifacts", "pkd.runs"),
    "pkd/ssm": ("pkd.models", "pkd.train"),
    "pkd/flops.py": ("pkd.models", "pkd.train"),
    "pkd/artifacts.py": ("pkd.train",),
    "pkd/export.py": ("pkd.train", "pkd.evaluate"),  # deploys saved students; never trains or evaluates
    "pkd/evaluate.py": ("pkd.train",),
    # a sweep's reading side (the app's) never imports its training side (study.py, worker.py build models)
    **{f"pkd/sweep/{name}.py": ("pkd.train", "pkd.sweep.study", "pkd.sweep.worker")
       for name in ("__init__", "space", "folder", "results", "control", "storage")},
    "pkd/procs.py": ("pkd",),  # the lowest layer: child processes and lock files, nothing of pkd
    "pkd/launch.py": ("pkd.train",),  # the app's: it starts training processes, never trains
    "pkd/console.py": ("pkd.train", "torch"),  # the CLI's printing: `python -m pkd --help` starts without torch
    "pkd/anytime_auc.py": ("torch", "pkd.models", "pkd.anytime"),  # recorded figures in: the app's pages, no torch
    "pkd/anytime.py": ("pkd.train", "pkd.evaluate", "pkd.artifacts", "pkd.runs", "pkd.data"),  # logits in, figures out
    "pkd/inference.py": ("pkd.train", "pkd.evaluate", "pkd.artifacts", "pkd.runs"),  # models in, one answer out
    "pkd/kd.py": ("pkd.train", "pkd.models", "pkd.runs", "pkd.data"),  # the KD loss: logits in, its parts out
    "pkd/hard_inputs.py": ("pkd.train", "pkd.evaluate", "pkd.artifacts", "pkd.runs"),  # models in, answers out
    "pkd/preprocess": ("pkd.train", "pkd.models", "pkd.evaluate", "pkd.artifacts", "pkd.runs", "pkd.inference"),
    "pkd/runs": ("pkd.train", "pkd.models", "pkd.data"),
    # the generic training path imports no video code (the video teacher's training is looked up by its arch)
    **{f"pkd/train/{name}.py": ("pkd.models.clip", "pkd.train.video_stage", "pkd.train.video_teacher",
                                "pkd.data.moving_mnist") for name in ("progressive", "teacher", "context", "specs")},
}
# exceptions to FORBIDDEN: the record keys anytime.py builds are spelled once, in the run schema (names only)
ALLOWED = {"pkd/anytime.py": ("pkd.runs.schema",)}
# packages whose modules import their siblings directly, never their own package's face (its __init__.py)
NO_RUNNING_BACK = tuple(sorted(folder.relative_to(ROOT).as_posix() for folder in (ROOT / "pkd").rglob("*")
                             if (folder / "__init__.py").is_file()))  # every package of pkd/, found


def sources(where: str) -> list[Path]:
    path = ROOT / where
    return [path] if path.is_file() else sorted(path.rglob("*.py"))


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("where", sorted(FORBIDDEN))
def test_imports_go_one_way(where):
    for path in sources(where):
        bad = [name for name in imported(path) for banned in FORBIDDEN[where]
               if (name == banned or name.startswith(banned + "."))
               and not any(name == ok or name.startswith(ok + ".") for ok in ALLOWED.get(where, ()))]
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_the_app_never_loads_the_trainer():
    """What the app imports from pkd loads no pkd.train module, even indirectly (the sweep's face leaves out
    study.py and worker.py, whose pre-flight builds models through the trainer)."""
    names = sorted({name for path in sources("app") for name in imported(path) if name.split(".")[0] == "pkd"})
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n"
            "    try:\n"
            "        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:\n"
            "        pass  # a class or a function imported from its module\n"
            "print(sorted(m for m in sys.modules if m == 'pkd.train' or m.startswith('pkd.train.')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr


RECORD_PAGES = tuple(f"app/{name}.py" for name in ("main", "app_pages/results", "app_pages/runs", "app_pages/sweeps",
                                                    "app_pages/compare"))  # the pages that read records only


def test_the_pages_that_read_records_import_no_torch():
    """What app/main.py and the Results, Runs, Sweeps and Compare pages import when they load leaves torch out (2-3 s
    of CPU on a fresh server's first page): torch is imported where models and tensors are used (see also
    tests/app/test_warmup.py, which draws the pages)."""
    nodes = [node for page in RECORD_PAGES for node in ast.parse((ROOT / page).read_text()).body]
    names = sorted({alias.name for node in nodes if isinstance(node, ast.Import) for alias in node.names}
                   | {f"{node.module}.{alias.name}" for node in nodes
                      if isinstance(node, ast.ImportFrom) and node.module != "__future__" for alias in node.names})
    assert {"app.common", "pkd.runs.Run", "streamlit"} <= set(names)
    code = (f"import importlib, sys\nfor name in {names!r}:\n    try:\n        importlib.import_module(name)\n"
            "    except ModuleNotFoundError:  # a name defined in a module\n"
            "        importlib.import_module(name.rpartition('.')[0])\n"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "False", out.stdout + out.stderr


def test_only_the_run_files_module_spells_run_files_and_states():
    offenders = []
    for path in sources("pkd") + sources("app"):
        if path == ROOT / "pkd" / "runs" / "files.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in RUN_FILES | RUN_STATES:
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.value!r}")
    assert not offenders, offenders


@pytest.mark.parametrize("package", NO_RUNNING_BACK)
def test_no_module_imports_its_own_package_face(package):
    """Inside a package a module imports its siblings directly (`from pkd.runs.io import read_json`), never the
    face that re-exports them (`from pkd.runs import read_json`, `from . import io`): the face imports every
    module, so running back up to it makes an import circle."""
    offenders = []
    for path in sources(package):
        parts = path.relative_to(ROOT).with_suffix("").parts  # ("pkd", "runs", "io")
        faces = {".".join(parts[:n]) for n in range(len(package.split("/")), len(parts))}  # own and enclosing ones
        if path.name == "__init__.py":
            faces.discard(".".join(parts[:-1]))  # a face imports its own modules
        offenders += [f"{path.relative_to(ROOT)}:{line} imports {name}"
                      for line, name in absolute_imports(path, parts[:-1]) if name in faces]
    assert not offenders, offenders


def absolute_imports(path: Path, package: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line, module) of each import in `path`, a module of `package`, relative ones made absolute."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            out.append((node.lineno, ".".join(base + ([node.module] if node.module else []))))
    return out


def test_only_the_video_teacher_imports_open_clip():
    # open_clip costs ~3 s to import (timm, huggingface_hub): image runs, the CLI and the app must never pay it, so
    # pkd/models/clip/open_clip.py alone imports it, and only inside functions (checked on import in its tests).
    allowed = ROOT / "pkd" / "models" / "clip" / "open_clip.py"
    offenders = [str(path.relative_to(ROOT)) for path in sources("pkd") + sources("app")
                 if path != allowed and any(name.split(".")[0] == "open_clip" for name in imported(path))]
    assert not offenders, offenders
    top_level = [node for node in ast.parse(allowed.read_text()).body if isinstance(node, (ast.Import, ast.ImportFrom))]
    assert not [n for n in top_level for name in imported_names(n) if name.split(".")[0] == "open_clip"]


def test_the_video_teacher_arch_is_spelled_once():
    """Its name is pkd.config.VIDEO_TEACHER: the model registers under it, the teacher stage looks its training up."""
    offenders = [f"{path.relative_to(ROOT)}:{node.lineno}" for path in sources("pkd") + sources("app")
                 if path != ROOT / "pkd" / "config.py" for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and node.value == "vifi_clip"]
    assert not offenders, offenders


def imported_names(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    return [node.module or ""]


# Run-record keys: every UPPERCASE text attribute of the classes in pkd/runs/schema.py. A single word ("k", "name",
# "epoch", "flops", "state") is also a key of other formats and cannot be told apart on the source, so only keys
# with an underscore are checked, and these single words explicitly (they name nothing else in pkd/ and app/).
RECORD_WORDS = {"problem", "prefixes", "anytime"}
# (file, key): the same text as a record key, but another format's key there
OTHER_FORMATS = {
    ("pkd/models/clip/weights.py", "state_dict"): "ViFi-CLIP's / open_clip's checkpoint key, not a run's file",
    **{(path, "scan_backend"): "the function pkd.ssm.scan_backend, not status.json's field"
       for path in ("pkd/ssm/__init__.py", "pkd/train/job.py", "app/app_pages/train.py")},
    ("app/app_pages/train.py", "train_"): "the training form's Streamlit widget keys",
    **{("pkd/sweep/space.py", "anytime_auc"): "the sweep objective's name",
       ("pkd/sweep/results.py", "anytime_auc"): "the sweep objective's name"},
    # a sweep's points and trials (pkd.sweep.results) and an export's model card (pkd.export) name their own fields
    **{(path, key): "a sweep point's / trial's own field" for key in ("val_acc", "test_acc", "_acc", "k_planned")
       for path in ("pkd/sweep/results.py", "app/charts/sweeps.py", "app/app_pages/sweeps.py", "pkd/console.py",
                    "pkd/commands/compare.py", "pkd/commands/run.py")},
    **{("pkd/export.py", key): "the model card's own field"
       for key in ("val_acc", "test_acc", "student_flops", "share_of_teacher")},
    **{("app/charts/playground.py", key): "a field of pkd.inference.DigitReport (one input's report)"
       for key in ("cumulative_flops", "share_of_teacher")},
}


def record_keys() -> set[str]:
    from pkd.runs import schema
    keys = {value for cls in vars(schema).values() if isinstance(cls, type) and cls.__module__ == schema.__name__
            for name, value in vars(cls).items() if name.isupper() and isinstance(value, str)}
    events = {value for name, value in vars(schema.MetricEvent).items() if name.isupper()}
    return {key for key in keys if "_" in key} | (RECORD_WORDS & keys) | (events - {"epoch"})


def test_only_the_schema_spells_run_record_keys():
    """Record keys are spelled through pkd.runs.schema's names (`row[PrefixRow.PREFIX_ACC]`), never as text, so a
    field is renamed or added in one place. ("epoch", a metric event, is also status.json's, a checkpoint's and a
    metrics record's field and a glossary term: a single word, as above.)"""
    keys, offenders = record_keys(), []
    assert {"prefix_acc", "problem", "prefixes", "anytime", "teacher_done", "student_done"} <= keys
    for path in sources("pkd") + sources("app"):
        where = str(path.relative_to(ROOT))
        if where == "pkd/runs/schema.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in keys
                    and (where, node.value) not in OTHER_FORMATS):
                offenders.append(f"{where}:{node.lineno} {node.value!r}")
    assert not offenders, offenders
