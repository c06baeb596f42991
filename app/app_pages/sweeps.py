"""Sweeps: every (run, k) point of a sweep on the accuracy-vs-FLOPs plane with its Pareto front; a point opens its
run on Results or Playground; start, continue or stop a sweep (a detached `python -m pkd sweep`); Optuna's
parameter importances."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import common, glossary, widgets
from app.charts import format as fmt
from app.charts import sweeps as sweep_charts
from pkd import sweep as pkd_sweep
from pkd.config import ConfigError, load_config
from pkd.devices import DEVICES
from pkd.runs import RunError

ss = st.session_state
PICK, POINT, CHART = "sweeps_pick", "sweeps_point", "sweeps_chart"


def folders() -> list[Path]:
    return [common.pretrained_dir(), common.runs_dir()]


def open_run(path: str, page: str) -> None:
    ss[common.RUN_KEY] = path  # a callback runs before the sidebar's picker exists, so it may set its value
    ss[common.GOTO_KEY] = page


def chart_selected() -> None:
    """A click on the chart picks that point (its customdata is [run, k])."""
    event = ss.get(CHART)
    points = (event or {}).get("selection", {}).get("points", []) if isinstance(event, dict) else \
        getattr(getattr(event, "selection", None), "points", [])
    for point in points or []:
        data = point.get("customdata")
        if isinstance(data, list) and len(data) == 2:
            ss[POINT] = f"{data[0]}|{data[1]}"
            return


def start(kind: str) -> None:
    """Start a new sweep from the form, or more trials of the chosen one (callbacks: before any widget exists)."""
    try:
        if kind == "new":
            base, space = CONFIGS[ss.sweeps_base], SPACES[ss.sweeps_space]
            load_config(base)  # one-line errors naming the field before anything starts
            pkd_sweep.load_space(space)
            found = pkd_sweep.start_sweep(int(ss.sweeps_trials), base, space, runs_dir=common.runs_dir(),
                                          workers=int(ss.sweeps_workers), device=ss.sweeps_device,
                                          build_kernel=bool(ss.sweeps_build_kernel))
        else:
            found = pkd_sweep.Sweep(Path(ss[PICK]))
            total = ss.sweeps_done + int(ss.sweeps_more)
            pkd_sweep.start_sweep(total, sweep_dir=found.path, build_kernel=bool(ss.get("sweeps_build_kernel", True)))
    except (pkd_sweep.SweepError, ConfigError, RunError, ValueError, OSError) as exc:
        ss.sweeps_message = ("error", f"Could not start the sweep: {exc}")
        return
    ss[PICK] = str(found.path)
    ss.sweeps_message = ("success", f"Started **{found.name}**: it keeps running if you close this tab; its points "
                                    "appear here as its trials finish.")


def stop(path: str) -> None:
    try:
        count = pkd_sweep.stop_sweep(pkd_sweep.Sweep(Path(path)))
    except (pkd_sweep.SweepError, OSError) as exc:  # a lock folder or file that is not pkd's (a link, a FIFO)
        ss.sweeps_message = ("error", f"Could not stop the sweep: {exc}")
        return
    ss.sweeps_message = ("info", f"Asked {count} worker process(es) to stop; the running trials save a checkpoint "
                                 "and continue when the sweep is continued." if count else
                         "No worker of this sweep runs on this machine.")


CONFIGS = {p.stem: p for p in sorted(common.CONFIGS_DIR.glob("*.yaml")) if not p.stem.startswith("sweep-")}
SPACES = {p.stem: p for p in sorted(common.CONFIGS_DIR.glob("sweep-*.yaml"))}


def start_form() -> None:
    with st.form("sweeps_form"):
        cols = st.columns([2, 2, 1, 1])
        base = [n for n in ("tiny", "mnist-quick") if n in CONFIGS] or list(CONFIGS)
        cols[0].selectbox("Base config", list(CONFIGS), index=list(CONFIGS).index(base[0]) if CONFIGS else 0,
                          key="sweeps_base", help="Every trial is this config with the space's values laid over.")
        cols[1].selectbox("Search space", list(SPACES), key="sweeps_space", help="configs/sweep-*.yaml")
        cols[2].number_input("Trials", 1, 500, value=4, key="sweeps_trials")
        cols[3].number_input("Workers", 1, 16, value=1, key="sweeps_workers",
                             help="Trials trained at the same time on this machine")
        cols = st.columns([1, 1, 2])
        cols[0].selectbox("Device", DEVICES, key="sweeps_device", help=glossary.HELP["device"])
        cols[1].checkbox("Fast CPU kernel", value=True, key="sweeps_build_kernel", help=glossary.HELP["kernel"])
        st.form_submit_button("Start the sweep", type="primary", key="sweeps_start", on_click=start, args=("new",),
                              disabled=not (CONFIGS and SPACES))


st.title("Sweeps")
st.markdown(
    "A **sweep** trains many runs of one base config, each with other settings (α, temperature, ensemble mode, the "
    "students' number and sizes) chosen by Optuna to find the best trade-offs between accuracy and computing. "
    "Every **point** is an ensemble of a run's first k students; the black line is the **Pareto front**: the "
    "points that no other point beats by being both cheaper and at least as accurate. Click a point to pick it.")
message = ss.pop("sweeps_message", None)
if message:
    getattr(st, message[0])(message[1])
sweeps = pkd_sweep.find_sweeps(folders())
if not common.lesson_mode():
    with st.expander("Start a new sweep", expanded=not sweeps):
        start_form()
if not sweeps:
    st.info(f"No sweeps yet in `{common.pretrained_dir()}` or `{common.runs_dir()}`: start one above, or with "
            "`python -m pkd sweep --config BASE --space SPACE --trials N`.")
    common.end_page()

paths = [str(s.path) for s in sweeps]
if ss.get(PICK) not in paths:
    ss[PICK] = paths[0]
chosen = pkd_sweep.Sweep(Path(st.selectbox("Sweep", paths, key=PICK, format_func=lambda p: Path(p).name)))
try:
    meta, trials = chosen.meta(), pkd_sweep.trial_table(chosen)
    points = pkd_sweep.sweep_points(chosen)
except (pkd_sweep.SweepError, RunError, OSError, ValueError, KeyError) as exc:
    st.error(f"Cannot read the sweep {chosen.name}: {exc}")
    common.end_page()
active = chosen.active()
counts = {word: sum(t["state"] == word for t in trials) for word in pkd_sweep.TRIAL_WORDS.values()}
ss.sweeps_done = counts["complete"] + counts["training"]
st.caption(f"`{chosen.path}` · base `{Path(meta.get('base_config', '?')).name}` · objective **{meta['objective']}** "
           f"· {counts['complete']} trials complete, {counts['training']} training, {counts['fail']} failed · "
           + ("**running**" if active else "not running")
           + (f" · study `{chosen.study_name()}` in `{pkd_sweep.masked(chosen.database())}` (all machines' trials)"
              if chosen.database() else ""))
remote = bool(chosen.database()) and counts["training"] > 0  # trials training on other machines of a database sweep


@st.fragment(run_every=2 if active or remote else None)
def watch() -> None:
    """While the sweep runs: redraw the page when one of its runs (or, on a database, the study) has new results."""
    stamp = tuple((run.name, run.results_stamp()) for run in chosen.runs()) + \
        ((pkd_sweep.sweep_counts(chosen)["complete"],) if chosen.database() else ())
    if ss.get("sweeps_stamp", (None, None))[0] == str(chosen.path) and ss.sweeps_stamp[1] != stamp:
        ss.sweeps_stamp = (str(chosen.path), stamp)
        st.rerun()
    ss.sweeps_stamp = (str(chosen.path), stamp)


watch()
controls = st.columns([1, 1, 3])
split = controls[0].radio("Accuracy", ["val", "test"], key="sweeps_split", horizontal=True,
                          format_func=sweep_charts.SPLITS.get,
                          help="The front is chosen on this split; validation accuracy drives the search.")
xscale = controls[1].radio("FLOPs axis", ["log", "linear"], key="sweeps_xscale", horizontal=True,
                           help="log: every step to the right is ×10 the work. " + glossary.HELP["flops"])
front = pkd_sweep.front(points, split)
if not points:
    st.info("No trial has finished a student yet; points appear here as they do.")
else:
    st.plotly_chart(sweep_charts.sweep_figure(points, front, split, log_x=xscale == "log"), key=CHART,
                    on_select=chart_selected, selection_mode="points", width="stretch")
    st.subheader(f"The front: {len(front)} of {len(points)} points")
    widgets.show_table(sweep_charts.front_frame(front), key="sweeps_front")
    by_key = {sweep_charts.point_key(p): p for p in sorted(points, key=lambda p: (p["flops"], p["name"], p["k"]))}
    if ss.get(POINT) not in by_key:
        ss[POINT] = sweep_charts.point_key(front[0]) if front else next(iter(by_key))
    cols = st.columns([3, 1, 1])
    key = cols[0].selectbox("Point", list(by_key), key=POINT, format_func=lambda k: (
        f"{by_key[k]['name']} · {fmt.students_text(by_key[k]['k'])} · {by_key[k]['flops']:,} FLOPs · "
        f"{split} {fmt.percent(by_key[k].get(f'{split}_acc'), 2)}"
        + (" · on the front" if by_key[k] in front else "")))
    picked = by_key[key]
    cols[1].button("Open in Results", key="sweeps_open_results", on_click=open_run, args=(picked["run"], "results"),
                   type="primary")
    cols[2].button("Open in Playground", key="sweeps_open_playground", on_click=open_run,
                   args=(picked["run"], "playground"))
    st.caption("How this run differs from the sweep's base: " + ("; ".join(picked["diff"]) or "it is the base"))



def continue_or_stop() -> None:
    """More trials of the chosen sweep, or stop it (not in lesson mode)."""
    cols = st.columns([1, 1, 3])
    cols[0].number_input("More trials", 1, 500, value=2, key="sweeps_more")
    cols[1].button("Continue this sweep", key="sweeps_continue", on_click=start, args=("more",),
                   disabled=active or chosen.path.resolve().is_relative_to(common.pretrained_dir()),
                   help="Adds trials (the running ones resume first)." if not active else "It is running.")
    cols[2].button("Stop", key="sweeps_stop", on_click=stop, args=(str(chosen.path),), disabled=not active,
                   help="Its running trials save a checkpoint; Continue resumes them.")


if not common.lesson_mode():
    continue_or_stop()

with st.expander(f"Trials ({len(trials)})"):
    names = pkd_sweep.OBJECTIVE_NAMES[meta["objective"]]
    widgets.show_table(sweep_charts.trials_frame(trials, names), key="sweeps_trials_table")
    tail = pkd_sweep.log_tail(chosen)
    if tail:
        st.code("\n".join(tail[-30:]))


@st.cache_resource(max_entries=4, show_spinner=False)
def settings_chart(trials: list[dict], names: tuple[str, ...], drawn: dict[str, list[str]]):
    """sweep_charts.settings_figure, kept between sessions for the same trials (a new tab reuses it)."""
    return sweep_charts.settings_figure(trials, names, drawn)


@st.cache_data(max_entries=8, show_spinner="Computing parameter importances ...")
def importances(path: str, stamp: float) -> dict:  # noqa: ARG001 - stamp is part of the cache key
    return pkd_sweep.param_importances(pkd_sweep.Sweep(Path(path)))


st.subheader("Which settings mattered")
journal = chosen.path / pkd_sweep.JOURNAL_FILE
names = pkd_sweep.OBJECTIVE_NAMES[meta["objective"]]
searched = list(dict.fromkeys(p for t in trials if t["state"] == "complete" for p in t["params"]))
drawn = {name: [p for p in searched if pkd_sweep.can_change(p, name)] for name in names}
fixed = {name: [p for p in searched if p not in drawn[name]] for name in names}
never = "; ".join(f"{', '.join(f'`{p}`' for p in ps)} cannot change {name} (it depends on the students' sizes "
                  "alone), so they are not ranked or drawn for it" for name, ps in fixed.items() if ps)
if counts["complete"] < pkd_sweep.MIN_TRIALS_FOR_IMPORTANCE:
    st.warning(f"With {counts['complete']} complete trials (fewer than {pkd_sweep.MIN_TRIALS_FOR_IMPORTANCE}), a "
               "ranking of the settings by importance is not reliable: it fits noise. Below is each setting "
               "against each objective instead, one dot per trial with its trend; a trend over a few dots is a "
               "hint to test with seeds, not a finding.")
    if searched:
        st.plotly_chart(settings_chart(trials, tuple(names), drawn), key="sweeps_settings", width="stretch")
    if never:
        st.caption(never + ".")
    common.end_page()
try:
    found = importances(str(chosen.path), journal.stat().st_mtime if journal.is_file() else counts["complete"])
except (pkd_sweep.SweepError, ValueError, KeyError, RuntimeError, OSError) as exc:
    found = {}
    st.warning(f"No parameter importances: {exc}")
if found:
    st.plotly_chart(sweep_charts.importance_figure(found), key="sweeps_importance", width="stretch")
    st.caption("Optuna's importance of each searched setting for each objective (PED-ANOVA, its default: how much "
               f"the setting decides whether a trial is among the best), over {counts['complete']} complete trials. "
               "schedule.j.* are student j's sizes. " + (never + "." if never else ""))
