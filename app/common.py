"""What every page shares (Streamlit side): where runs live, how a run is named and picked, the URL's state and
cached model loading. The UI pieces that draw (the sidebar, the tables) are in app/widgets.py."""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import streamlit as st

from app import shared, url_state
from pkd.data import get_dataset_spec
from pkd.runs import Run, RunError, State, default_runs_dir, is_sweep_dir, printable
from pkd.runs.schema import RunInfo

ROOT = Path(__file__).resolve().parents[1]
CONFIGS_DIR = ROOT / "configs"
PRETRAINED_ENV = "PKD_PRETRAINED_DIR"  # where shipped runs live (default: the repository's pretrained/)
SHIPPED_NAME = "mnist"  # the run the app opens on: <pretrained>/mnist
RUN_KEY = "run"  # session-state key of the sidebar run picker (a run directory path)
GOTO_KEY = "goto"  # a callback sets this to a page name; main.py switches to it
LESSON_KEY = "lesson"  # session-state key of the sidebar's lesson-mode toggle
URL_READ_KEY = "url_read"  # the pages whose state this session has taken from the URL
APP_TORCH_THREADS = int(os.environ.get("PKD_APP_THREADS", "1"))  # torch threads of the app process


def app_torch():
    """torch, with the app's thread count (APP_TORCH_THREADS) set. Every path of the app that runs a model loads
    it, or the test set, through the cached_* functions below, which call this first: torch is imported there, not
    when the app starts, so a page that only reads run records draws without it (importing torch costs 2-3 s of
    CPU on a fresh server). One image at a time gains nothing from a second thread, and on a busy machine (training
    beside the app) a 2-thread batch-1 forward pass waits for a free core: measured 7 ms with 1 thread vs 74 ms
    with 2."""
    import torch

    if torch.get_num_threads() != APP_TORCH_THREADS:
        torch.set_num_threads(APP_TORCH_THREADS)
    return torch


def release_freed_memory(every_s: float = 5.0) -> None:
    """Hand the pages of memory the process has freed back to the system (glibc's malloc_trim), at most once every
    `every_s` seconds. A page that runs models on many inputs frees its temporary tensors, but glibc keeps their
    pages, so the server's resident memory would stay at its peak (measured: 89 MB returned after every page on the
    default run). A few ms; nothing where the C library has no malloc_trim."""
    global _TRIMMED_AT
    now = time.monotonic()
    if now - _TRIMMED_AT < every_s:
        return
    _TRIMMED_AT = now
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (AttributeError, OSError):
        pass


_TRIMMED_AT = float("-inf")


def pretrained_dir() -> Path:
    """Folder of shipped runs: $PKD_PRETRAINED_DIR, else pretrained/ in the repository."""
    return Path(os.environ.get(PRETRAINED_ENV) or ROOT / "pretrained").resolve()


def runs_dir() -> Path:
    """Folder where the app starts new runs ($PKD_RUNS_DIR or ./runs), absolute."""
    return default_runs_dir().resolve()


def all_runs() -> list[Run]:
    """Shipped runs under pretrained/ and the runs in the runs folder, newest first (kept between sessions until
    a folder changes: app/shared.py)."""
    return shared.runs_in([pretrained_dir(), runs_dir()])


def run_info(run: Run) -> dict:
    """run.info() (never raises: a bad run carries its one-line `problem`), kept between sessions until one of the
    run's files changes (app/shared.py)."""
    return shared.info(run)


def location(run: Run) -> str:
    """'pretrained' or 'runs folder' (only the latter may be deleted from the app)."""
    try:
        Path(run.path).resolve().relative_to(pretrained_dir())
        return "pretrained"
    except ValueError:
        return "runs folder"


def dataset_kind(dataset: object) -> str | None:
    """"image" or "clip": what a run's dataset (by name) holds; None for a dataset pkd does not know."""
    try:
        return get_dataset_spec(str(dataset)).kind
    except (KeyError, ValueError):
        return None


def run_infos() -> list[tuple[Run, dict]]:
    """Every run with its Run.info(), which never raises: a bad run carries its one-line `problem` instead."""
    return [(run, run_info(run)) for run in all_runs()]


def video_runs() -> dict[str, str]:
    """Sound video runs with students -> their picker labels (path -> label), newest first: the Clips page's choices;
    the first is its pick on an image run, which the warm-up (app/warmup.py) loads too."""
    out = {}
    for run, info in run_infos():
        if dataset_kind(info["dataset"]) == "clip" and not info[RunInfo.PROBLEM] and info[RunInfo.K_DONE] > 0:
            out[str(run.path)] = label(run, info)
    return out


def default_run(runs: list[Run], infos: dict[str, dict] | None = None) -> Run | None:
    """The shipped pretrained MNIST run if present, else the newest finished run, else the newest run (sound
    runs first: one with a `problem` is opened only when there is nothing else)."""
    infos = infos or {str(run.path): run_info(run) for run in runs}
    sound = [run for run in runs if not infos[str(run.path)][RunInfo.PROBLEM]]
    for run in sound:
        if Path(run.path).resolve() == pretrained_dir() / SHIPPED_NAME:
            return run
    for run in sound:
        if infos[str(run.path)]["state"] == State.DONE:
            return run
    return (sound or runs)[0] if runs else None


def sweep_of(run: Run) -> str | None:
    """The name of the sweep a run is a trial of (its parent folder is a sweep), else None."""
    return printable(run.path.parent.name, 80) if is_sweep_dir(run.path.parent) else None


def group_of(run: Run) -> str | None:
    """The name of the seed group a run seems to belong to (pkd.groups.group_folder_of), else None."""
    from pkd.groups import group_folder_of

    folder = group_folder_of(run)
    return printable(folder.name, 80) if folder else None


def display_name(run: Run, info: dict | None = None) -> str:
    """A run's name as pickers, tables and legends show it: 'sweep-quick / trial-002' for a sweep's trial,
    'fashion-mnist / seed-0' for a seed group's member (a bare 'seed-0' says nothing about what it learned)."""
    name = (info or {}).get("name") or printable(run.name, 160)
    outer = sweep_of(run) or group_of(run)
    return f"{outer} / {name}" if outer else name


def label(run: Run, info: dict | None = None) -> str:
    """A run as pickers show it: name, state and students, or why a broken run cannot be shown."""
    info = info or run_info(run)
    name = display_name(run, info)
    if info[RunInfo.PROBLEM]:
        return f"{name} (broken: {info[RunInfo.PROBLEM][:100]})"
    if info["state"] == str(State.DONE) and info[RunInfo.K_DONE] == info[RunInfo.K_PLANNED]:
        return name  # short: the sidebar is narrow, and its caption says the rest
    return f"{name} · {info[RunInfo.K_DONE]}/{info[RunInfo.K_PLANNED]} students · {info['state']}"


def lesson_mode() -> bool:
    """True when the sidebar's lesson mode is on: pages then hide their advanced controls."""
    return bool(st.session_state.get(LESSON_KEY, False))


def url_ids() -> dict[str, str]:
    """Short ids of every run and sweep for the URL ('mnist', 'sweep-quick/trial-002') -> their paths (kept between
    sessions until a folder changes)."""
    return shared.ids([pretrained_dir(), runs_dir()], _url_ids)


def sweep_dirs(root: Path) -> list[Path]:
    """The sweep folders pkd.sweep.find_sweeps lists in `root` (root itself, or the folders directly in it that
    hold a sweep.json), found without importing pkd.sweep: it imports the models, which a first page does not need."""
    if is_sweep_dir(root):
        return [root.resolve()]
    try:
        return [c.resolve() for c in sorted(root.iterdir()) if not c.is_symlink() and is_sweep_dir(c)]
    except OSError:
        return []


def _url_ids() -> dict[str, str]:
    paths = [str(run.path) for run in all_runs()]
    groups = []
    for label_, root in (("pretrained", pretrained_dir()), ("runs", runs_dir())):
        paths_here = paths + [str(path) for path in sweep_dirs(root)]
        items = []
        for path in paths_here:
            try:
                items.append((Path(path).resolve().relative_to(root).as_posix(), path))
            except ValueError:
                continue
        groups.append((label_, items))
    return url_state.run_ids(groups)


def read_url(page: str) -> None:
    """On a session's first visit of a page, take the run, lesson mode and the page's state from the URL (a shared
    link or a reload); malformed or unknown values are ignored, so the page shows its defaults."""
    read = st.session_state.setdefault(URL_READ_KEY, [])
    if page in read:
        return
    read.append(page)
    fields = url_state.GLOBAL_FIELDS + url_state.PAGE_FIELDS.get(page, [])
    st.session_state.update(url_state.read(st.query_params.to_dict(), fields, url_ids()))


def write_url(page: str) -> None:
    """Put the run, lesson mode and the page's state in the URL, so the address bar is a link to this view."""
    fields = url_state.GLOBAL_FIELDS + url_state.PAGE_FIELDS.get(page, [])
    wanted = url_state.write(st.session_state, fields, url_ids())
    if st.query_params.to_dict() != wanted:
        st.query_params.from_dict(wanted)


def selected_run() -> Run | None:
    """The run chosen in the sidebar (None if there is none)."""
    path = st.session_state.get(RUN_KEY)
    if not path or not Path(path).is_dir():
        return None
    return Run(Path(path))


@st.cache_resource(max_entries=4, show_spinner="Loading the students ...")
def cached_ensemble(path: str, key: tuple):  # noqa: ARG001 - key is part of the cache key
    app_torch()
    from pkd.artifacts import load_ensemble

    return load_ensemble(Run(Path(path)))


@st.cache_resource(max_entries=4, show_spinner="Loading the teacher ...")
def cached_teacher(path: str, key: tuple):  # noqa: ARG001 - key is part of the cache key
    app_torch()
    from pkd.artifacts import load_teacher

    return load_teacher(Run(Path(path)))


@st.cache_resource(max_entries=2, show_spinner="Loading the test set ...")
def cached_test_split(dataset: str):
    app_torch()
    from pkd import data as pkd_data

    return pkd_data.load_split(dataset, "test")


class PageEnd(Exception):
    """A page has said why it can show no more (no run, a broken one, too few trials): raised by end_page and caught
    by app/main.py, so the end every page shares still runs (the lesson card, Copy link, the warm-up, the memory
    trim). st.stop() would skip it: after st.stop(), Streamlit ends the script at its next element."""


def end_page() -> NoReturn:
    """End the current page here (its message already shown); the rest of app/main.py still runs."""
    raise PageEnd


def run_or_stop() -> Run:
    """The selected run, or an explanatory message (no run, or why the chosen one is broken) and end_page()."""
    run = selected_run()
    if run is None:
        st.info("There is no run to show yet. Start one on the **Train** page, or put the shipped run in "
                f"`{pretrained_dir() / SHIPPED_NAME}`.")
        end_page()
    info = run_info(run)
    if info[RunInfo.PROBLEM]:
        st.error(f"Cannot show run {info['name']}: {info[RunInfo.PROBLEM]}")
        end_page()
    return run


@dataclass
class RunModels:
    """What the Playground and the Clips page need of a run: its dataset, students, teacher and the teacher's FLOPs
    (None when the summary has none); `source` (the run's path and weights stamp) names these models in the keys of
    results kept between sessions."""

    spec: Any
    ensemble: Any
    teacher: Any
    teacher_flops: int | None
    source: tuple = ()

    @property
    def residual(self) -> bool:
        """Residual students answer as a sum: only the prefix's answer counts, not a student's alone."""
        return self.ensemble.mode == "residual"


def image_digest(image: Any) -> str:
    """A short name of an image tensor's shape and pixels, for the keys of results kept between sessions."""
    import hashlib

    array = image.detach().cpu().contiguous().numpy()
    return f"{tuple(array.shape)}:{array.dtype}:{hashlib.sha1(array.tobytes()).hexdigest()}"


def load_run_models(run: Run) -> RunModels:
    """The run's students and teacher (cached), or an error naming the run and end_page()."""
    try:
        spec = get_dataset_spec(run.setting("data", "dataset"))
        key = run.weights_stamp()
        ensemble = cached_ensemble(str(run.path), key)
        teacher = cached_teacher(str(run.path), key) if run.has_teacher() else None
        teacher_flops = run.summary().get("teacher", {}).get("flops")
    except (RunError, ValueError, OSError, KeyError) as exc:
        st.error(f"Cannot load the models of {display_name(run)}: {exc}")
        end_page()
    return RunModels(spec, ensemble, teacher, teacher_flops, (str(run.path), key))


@st.cache_data(max_entries=6, show_spinner="Running the models on the test set ...")
def cached_answers(path: str, stamp: tuple):  # noqa: ARG001 - stamp (the weights' mtimes) is part of the cache key
    """(labels (N,), prefixes' classes (K, N), teacher's classes (N,) or None) of a run on its test samples, as
    numpy arrays (pkd.compare): what paired tests (McNemar) and the per-sample diff need."""
    app_torch()
    from pkd.compare import run_answers, teacher_classes

    run = Run(Path(path))
    answers = run_answers(run)
    teacher = teacher_classes(run, answers.split) if run.has_teacher() else None
    return answers.split.labels.numpy(), answers.classes.numpy(), None if teacher is None else teacher.numpy()
