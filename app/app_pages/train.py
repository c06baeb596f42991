"""Train: start a run as a detached `python -m pkd train` process and watch it live (stop / resume)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import streamlit as st

from app import common, glossary, train_form
from app.charts import results as results_charts
from app.charts import train as train_charts
from pkd import launch
from pkd.config import ConfigError, load_config
from pkd.devices import DEVICES
from pkd.runs import ACTIVE_STATES, LIVE_METRICS_BYTES, RESUMABLE_STATES, Run, RunError, State, list_runs
from pkd.runs.schema import Metric, MetricEvent, RunInfo, Status, Summary

ss = st.session_state
FORM_KEYS = {name: f"train_{name}" for name in ("dataset", "k", "schedule", "base", "custom", "mode",
                                                "learn_prev_scale", "alpha", "temperature", "teacher_epochs",
                                                "student_epochs", "device")}
WATCH_KEY = "train_watch"  # the run this browser session started last
STARTED_KEY = "train_started"  # the line saying it started, shown after the rerun that disables Start
TOY_CONFIG = "mnist-toy"  # seconds: offered first, for a class that cannot wait a minute


def config_files() -> dict[str, Path]:
    """The shipped configs by name (configs/*.yaml), the classroom ones first: the toy run, then the quick one."""
    first = (TOY_CONFIG, "mnist-quick")
    paths = sorted(common.CONFIGS_DIR.glob("*.yaml"), key=lambda p: (first.index(p.stem) if p.stem in first
                                                                      else len(first), p.stem))
    return {p.stem: p for p in paths}


def load_defaults() -> None:
    """Fill the form's widgets from the chosen config (called when the config changes)."""
    path = config_files().get(ss.get("train_config"))
    if path is None:
        return
    try:
        defaults = train_form.form_defaults(path)
    except (ConfigError, ValueError, OSError) as exc:
        ss.train_config_error = str(exc)
        return
    ss.train_config_error = None
    ss.train_defaults = defaults
    for name, key in FORM_KEYS.items():
        ss[key] = defaults[name]


def device_info() -> str:
    import torch

    from pkd import ssm

    gpu = f"GPU: **{torch.cuda.get_device_name(0)}**" if torch.cuda.is_available() else "GPU: none (CPU only)"
    parts = [gpu]
    if hasattr(ssm, "available_backends") and hasattr(ssm, "scan_backend"):
        try:
            fast = ssm.available_backends().get("cuda") is True
            cpu = ssm.scan_backend("cpu")
        except (ValueError, RuntimeError, OSError) as exc:
            return f"{gpu} · scan backends: {exc}"
        parts.append("mamba-ssm fast path (CUDA scan): **active**" if fast else
                     "mamba-ssm fast path (CUDA scan): not available")
        parts.append(f"CPU scan: **{cpu}**" + (" (fused C++ kernel)" if cpu == "cpp" else
                                                " (build the fused kernel below for speed)"))
    return " · ".join(parts)


def start(config_path: Path, overrides: list[str], device: str, build_kernel: bool, processes: int = 1) -> None:
    """Launch the run, remember it as this browser's, and rerun: Start is then drawn disabled until it ends."""
    threads = launch.threads_for_load()
    try:
        load_config(config_path, overrides)  # fail here, with the field named, before launching anything
        with st.spinner("Starting the training process ..."):
            run = launch.start_run(config_path, overrides, common.runs_dir(), device, build_kernel=build_kernel,
                                   processes=processes, threads=threads)
    except (ConfigError, RunError, ValueError, OSError) as exc:
        st.error(f"Could not start training: {exc}")
        return
    ss[WATCH_KEY] = str(run.path)
    busy = (f" The machine is busy (load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores), so each training "
            "process uses 1 thread: 2 threads are many times slower there." if threads == 1 else "")
    ss[STARTED_KEY] = (f"Started **{run.name}** (pid {run.status().get('pid', '?')}). It keeps running if you close "
                       f"this tab; come back to this page to watch it.{busy}  \nOverrides: "
                       + (" ".join(f"`{o}`" for o in overrides) or "none"))
    st.rerun()


def active_runs() -> tuple[Run | None, list[Run]]:
    """This browser's run while it trains (the one it started), and the other runs training now."""
    mine = ss.get(WATCH_KEY)
    active = [run for run in list_runs(common.runs_dir()) if run.state() in ACTIVE_STATES]
    own = next((run for run in active if str(run.path) == mine), None)
    return own, [run for run in active if run is not own]


# ------------------------------------------------------------------------------------------------ the form
st.title("Train")
st.markdown("Train a teacher and then K small students, one after another; each student learns to fix what "
            "the students before it still get wrong. Training runs as its own process: you can close the tab, "
            "reload, or restart the app, and come back to it here.")
if not common.lesson_mode():
    st.caption(device_info())


def default_config(configs: dict[str, Path]) -> str:
    """The toy classroom config if it can run here (its teacher file exists), else the quick one, else tiny, else
    the first."""
    for name in (TOY_CONFIG, "mnist-quick", "tiny"):
        if name in configs:
            try:
                load_config(configs[name])
                return name
            except (ConfigError, ValueError, OSError):
                continue
    return next(iter(configs))


def form_section() -> None:
    configs = config_files()
    if not configs:
        st.error(f"No config files in {common.CONFIGS_DIR}.")
        return
    if ss.get("train_config") not in configs:
        ss.train_config = default_config(configs)
    if "train_defaults" not in ss or ss.get("train_defaults_for") != ss.train_config:
        load_defaults()
        ss.train_defaults_for = ss.train_config
    st.selectbox("Start from config", list(configs), key="train_config", on_change=load_defaults,
                 help="The form below starts with this file's values; changes are passed as key=value overrides.")
    if ss.get("train_config_error"):
        st.error(f"This config cannot run here: {ss.train_config_error}")
        return
    defaults = ss.train_defaults

    if ss.train_config == TOY_CONFIG:
        st.caption("**mnist-toy** trains in seconds a student (3 tiny students, 5,000 training images, the shipped teacher): "
                   "for a class that cannot wait. **mnist-quick** is the real thing in a minute or two.")
    own, others = active_runs()
    with st.form("train_form"):
        form_fields()
        submitted = st.form_submit_button("Start training", type="primary", key="train_start",
                                          disabled=own is not None)
    if own is not None and ss.get(STARTED_KEY):
        st.success(ss[STARTED_KEY])  # kept while that run trains (its pid, the overrides it got)
    elif own is None:
        ss.pop(STARTED_KEY, None)
    if own is not None:
        st.info(f"**{own.name}**, launched from this browser, is training: Start is off until it ends (or you "
                "press Stop below), so a second press does not start a second run.")
    elif others:
        names = ", ".join(f"**{run.name}**" for run in others[:3])
        st.warning(f"Another run is training on this machine ({names}): a new run now shares the CPU with it and "
                   "both go slower.")
    if submitted and own is None:
        # in lesson mode the advanced widgets are not drawn: their values are the config's
        values = {name: ss.get(key, defaults[name]) for name, key in FORM_KEYS.items()}
        try:
            overrides = train_form.build_overrides(values, defaults)
        except ValueError as exc:
            st.error(str(exc))
        else:
            start(configs[ss.train_config], overrides, values["device"], bool(ss.get("train_build_kernel", True)),
                  int(ss.get("train_processes", 1)))


def form_fields() -> None:
    """The form's widgets: short labels, the explanation in each help= tooltip; lesson mode keeps the first row
    and the epochs."""
    from pkd import data as pkd_data

    lesson = common.lesson_mode()
    cols = st.columns(4)
    cols[0].selectbox("Dataset", sorted(pkd_data.DATASETS), key=FORM_KEYS["dataset"],
                      help="The pictures to learn: mnist = handwritten digits 0-9.")
    cols[1].number_input("Students (K)", 1, 32, key=FORM_KEYS["k"],
                         help="How many students to train, one after another.")
    cols[2].selectbox("Size schedule", train_form.SCHEDULES, key=FORM_KEYS["schedule"],
                      help="How the width (d_model) grows from one student to the next: doubling = d, 2d, 4d, ...  "
                           + glossary.HELP["width"])
    cols[3].number_input("First width (d_model)", 1, 1024, key=FORM_KEYS["base"],
                         help="Student 1's width. " + glossary.HELP["width"])
    if not lesson:
        st.text_input("Custom widths", key=FORM_KEYS["custom"],
                      help="Used when the schedule is 'custom': one width per student, e.g. 16, 32, 64.")
    cols = st.columns(4)
    cols[0].number_input("Teacher epochs", 0, 200, key=FORM_KEYS["teacher_epochs"],
                         help=glossary.HELP["epochs"] + " 0 = load the teacher named in the config.")
    cols[1].number_input("Epochs per student", 1, 200, key=FORM_KEYS["student_epochs"], help=glossary.HELP["epochs"])
    cols[2].radio("Ensemble mode", ["residual", "independent"], key=FORM_KEYS["mode"], help=glossary.HELP["mode"])
    if lesson:
        return
    cols = st.columns(4)
    cols[0].slider("α (alpha)", 0.0, 1.0, step=0.05, key=FORM_KEYS["alpha"], help=glossary.HELP["alpha"])
    cols[1].slider("Temperature T", 1.0, 10.0, step=0.5, key=FORM_KEYS["temperature"],
                   help=glossary.HELP["temperature"])
    cols[2].selectbox("Device", DEVICES, key=FORM_KEYS["device"], help=glossary.HELP["device"])
    cols[3].number_input("Processes", 1, 16, key="train_processes",
                         help="More than 1 trains data-parallel under torchrun: each process takes a share of "
                              "every batch (one GPU each on a multi-GPU machine, CPU cores otherwise).")
    ss.setdefault("train_build_kernel", True)
    cols = st.columns(2)  # checkboxes get wide columns: their labels never wrap or get cut
    cols[0].checkbox("Learn scales s_k", key=FORM_KEYS["learn_prev_scale"], help=glossary.HELP["scale"])
    cols[1].checkbox("Fast CPU kernel", key="train_build_kernel",
                     help=glossary.HELP["kernel"] + " Compiled before training starts, then every CPU run is faster.")


form_section()


# ------------------------------------------------------------------------------------------------ live panel
def pick_default(runs: list[Run]) -> str:
    """The run to watch: the one just started, else the newest running run, else the newest."""
    paths = [str(r.path) for r in runs]
    if ss.get(WATCH_KEY) in paths:
        return ss[WATCH_KEY]
    for run in runs:
        if run.state() == State.RUNNING:
            return str(run.path)
    return paths[0]


def any_running() -> bool:
    return any(run.state() in ACTIVE_STATES for run in list_runs(common.runs_dir()))


RUNNING = any_running()


# State and progress poll every second while something trains (every 3 s otherwise, so a run started elsewhere
# still shows up). The charts change only when an epoch or a student ends: the poll then reruns the page once,
# instead of redrawing two plotly charts every second (each redraw costs CPU that training would otherwise get).
@st.fragment(run_every=1 if RUNNING else 3)
def live_status() -> None:
    runs = list_runs(common.runs_dir())  # listed inside the fragment: new and finished runs show up live
    if not runs:
        st.info(f"None of your own runs yet: the runs folder `{common.runs_dir()}` is empty. (The shipped runs "
                "are listed in the sidebar and on the **Runs** page.) Fill in the form and press **Start "
                "training**.")
        return
    paths = [str(r.path) for r in runs]
    if ss.get("train_pick") not in paths or ss.pop("train_pick_reset", False):
        ss.train_pick = pick_default(runs)
    if ss.get(WATCH_KEY) in paths and ss.get("train_pick_for") != ss[WATCH_KEY]:
        ss.train_pick = ss[WATCH_KEY]  # a newly started run takes over the panel once
        ss.train_pick_for = ss[WATCH_KEY]
    st.selectbox("Watching", paths, key="train_pick", format_func=lambda p: common.display_name(Run(Path(p))),
                 help="Every run in the runs folder; a reload picks the newest running one.")
    run = Run(Path(ss.train_pick))
    if not ss.get("train_full_run") and ss.get("train_charts_for") != (str(run.path),
                                                                       run.results_stamp()):
        st.rerun()  # a fragment rerun saw a new epoch or student (or another run picked): redraw the charts
    status = run.status()
    state = State.of(status.get("state"))
    try:
        config = run.config()
        metrics = run.metrics(tail_bytes=LIVE_METRICS_BYTES)  # polled every second: a bounded read
        rows = run.prefix_table()
    except (RunError, OSError, KeyError) as exc:
        st.warning(f"{run.name}: {exc}")
        return
    problem = run.info()[RunInfo.PROBLEM]  # e.g. a damaged summary.json or status.json: the panel still shows the rest
    if problem:
        st.warning(f"{run.name} is broken: {problem}")
    k_planned = len(config.get("students", {}).get("schedule", []) or [])
    times = train_charts.stage_times(status, metrics, train_charts.stage_plan(config), time.time())
    status_header(run, status, state, len(rows), k_planned, times)
    status_messages(run, status, state, metrics, k_planned, times)


def status_header(run: Run, status: dict, state: State, done: int, k_planned: int, times: dict) -> None:
    """The watched run's state, stage, students done, time spent and left, its process line, and Stop / Resume."""
    stage = status.get("stage", "")
    where = "teacher" if stage == "teacher" else (f"student {status.get('student')}" if stage == "student" else "-")
    age = time.time() - float(status.get("updated") or time.time())
    cols = st.columns([1, 1.3, 1, 1, 1, 2])  # the stage ("student 3") gets room not to be cut
    cols[0].metric("state", str(state))
    cols[1].metric("stage", where if state in (State.RUNNING, *RESUMABLE_STATES) else "-")
    cols[2].metric("students done", f"{done}/{k_planned}")
    cols[3].metric("time so far", train_charts.clock(times["elapsed"]))
    cols[4].metric("about left", "-" if state != State.RUNNING else
                   train_charts.clock(times["left"]) if times["left"] is not None else "...",
                   help="From the pace of the stage in progress and the seconds per epoch of the students so far; "
                        "later students are wider, so the real time is rather longer.")
    with cols[5]:
        st.caption(f"{status.get('message', '')}  \nlast update {age:.0f} s ago · pid {status.get('pid', '-')} · "
                   f"scan {status.get(Status.SCAN_BACKEND, '?')} · {run.world_size()} process(es)  \n"
                   f"`{run.path}`")
        buttons = st.columns(2)
        live = state in ACTIVE_STATES
        if buttons[0].button("Stop", key="train_stop", disabled=not live,
                             help="Stops after saving a checkpoint; resume it later."):
            st.toast("Stop requested" if launch.stop_run(run) else "The process is not running")
        if buttons[1].button("Resume", key="train_resume", type="primary",
                             disabled=state not in RESUMABLE_STATES):
            try:
                launch.resume_run(run, build_kernel=bool(ss.get("train_build_kernel", True)),
                                  processes=run.world_size(), threads=launch.threads_for_load())
                st.toast(f"Resumed {run.name}")
            except (RunError, ValueError, OSError) as exc:
                st.error(str(exc))


def status_messages(run: Run, status: dict, state: State, metrics: list, k_planned: int, times: dict) -> None:
    """What went wrong (died, failed), the way to the finished run, the per-stage progress bars and, when useful,
    the console output."""
    if state == State.DONE:
        open_finished(run)
    if state == State.DIED:
        st.error("The training process is gone without finishing (killed, or the machine restarted). "
                 "Press **Resume** to continue from its last checkpoint.")
    elif state == State.FAILED:
        st.error(f"Training failed: {status.get('message', '')}")
    for item in train_charts.stage_progress(status, metrics, k_planned, times):
        st.progress(item["fraction"], text=item["text"])
    ended_badly = state in (State.FAILED, State.DIED)
    if ended_badly or (state not in (State.RUNNING, State.DONE) and launch.console_tail(run)):
        with st.expander("console output"):
            st.code(launch.console_tail(run)[-3000:] or "(empty)")


def open_finished(run: Run) -> None:
    """'Open this run in Results / Playground (/ Clips)': buttons that pick it in the sidebar and switch page."""
    pages = [("results", "Results"), ("playground", "Playground")]
    if common.dataset_kind(run.setting("data", "dataset")) == "clip":
        pages.append(("clips", "Clips"))
    st.success(f"**{common.display_name(run)}** is done. Open it:")
    cols = st.columns(len(pages) + 2)
    for col, (page, title) in zip(cols, pages):
        if col.button(f"in {title}", key=f"train_open_{page}", icon=":material/open_in_new:",
                      on_click=open_in, args=(str(run.path), page)):
            st.rerun(scope="app")  # a fragment's button reruns the fragment alone: main.py switches the page


def open_in(path: str, page: str) -> None:
    ss[common.RUN_KEY] = path
    ss[common.GOTO_KEY] = page


@st.cache_resource(max_entries=32, show_spinner=False)
def cached_live_figures(path: str, key: tuple):  # noqa: ARG001 - key is part of the cache key
    """The two figures for a run, rebuilt only when its metrics/results files change.

    Building plotly figures costs tens of ms; the live panel polls every second, so this keeps the app's share
    of the CPU small while training runs beside it.
    """
    run = Run(Path(path))
    metrics, rows, summary = run.metrics(tail_bytes=LIVE_METRICS_BYTES), run.prefix_table(), run.summary()
    trained = any(r.get(Metric.EVENT) == MetricEvent.EPOCH for r in metrics)
    curves = train_charts.training_curves_figure(metrics) if trained else None
    teacher = summary.get(Summary.TEACHER) or next(
        (r for r in metrics if r.get(Metric.EVENT) == MetricEvent.TEACHER_DONE), {})
    accuracy = results_charts.accuracy_flops_figure([results_charts.run_series(run.name, rows, summary, teacher)],
                                                    log_x=True) if rows else None
    return curves, accuracy


def live_charts() -> None:
    """Loss/accuracy curves and the accuracy-vs-FLOPs curve of the watched run (redrawn on full reruns only)."""
    path = ss.get("train_pick")
    if not path or not Path(path).is_dir():
        return
    run = Run(Path(path))
    key = run.results_stamp()
    ss.train_charts_for = (str(run.path), key)
    try:
        curves, accuracy = cached_live_figures(str(run.path), key)
    except (RunError, OSError) as exc:
        st.warning(f"{run.name}: {exc}")
        return
    chart_or_caption("Loss and validation accuracy per epoch, one panel per stage: each student has its own loss "
                     "(it learns what the students before it still get wrong), so compare within a panel, not "
                     "across", curves, "train_curves", "(appears after the first epoch)")
    left, _ = st.columns([2, 1])
    with left:
        chart_or_caption("Accuracy vs cumulative FLOPs, growing as students finish", accuracy, "train_curve",
                         "(appears when the first student has finished)")


def chart_or_caption(title: str, fig, key: str, missing: str) -> None:
    """A bold title over the figure, or over a caption saying when it appears (fig None)."""
    st.markdown(f"**{title}**")
    if fig is not None:
        st.plotly_chart(fig, key=key, width="stretch")
    else:
        st.caption(missing)


st.divider()
st.subheader("Runs in progress and finished")
ss.train_full_run = True  # live_status must not ask for a rerun before live_charts has drawn
live_status()
live_charts()
ss.train_full_run = False
