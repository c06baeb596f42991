"""Runs: every run with its state and final figures; open one in Results; delete one from the runs folder."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from app import common, widgets
from app.charts import runs as runs_charts
from pkd.runs import Run, RunError, State, delete_run
from pkd.runs.schema import RunInfo

ss = st.session_state


def open_in_results(path: str) -> None:
    ss[common.RUN_KEY] = path  # callbacks run before the sidebar widget exists, so this may set its value
    ss[common.GOTO_KEY] = "results"


def ask_delete(path: str) -> None:
    ss.runs_confirm = path


def cancel_delete() -> None:
    ss.pop("runs_confirm", None)


def do_delete(path: str) -> None:
    ss.pop("runs_confirm", None)
    name = Path(path).name
    try:
        relative = Path(path).resolve().relative_to(common.runs_dir()).as_posix()  # a sweep's trial: sweep/trial
        delete_run(common.runs_dir(), relative)
        ss.runs_message = ("success", f"Deleted run {name}.")
        if ss.get(common.RUN_KEY) == path:
            ss.pop(common.RUN_KEY, None)
    except ValueError:
        ss.runs_message = ("error", f"Not deleted: {path} does not lie inside the runs folder {common.runs_dir()}")
    except (RunError, OSError) as exc:
        ss.runs_message = ("error", f"Not deleted: {exc}")


def table(runs: list[Run], infos: dict[str, dict]) -> None:
    """Every run with its state and final figures (accuracies with % signs; a sweep's trial as sweep / trial)."""
    locations = {str(run.path): common.location(run) for run in runs}
    names = {str(run.path): common.display_name(run, infos[str(run.path)]) for run in runs}
    frame = runs_charts.runs_frame(list(infos.values()), locations, names)
    # when and where each run started is said for the chosen run below the table: the table fits a laptop's screen
    frame = frame.drop(columns=["started", "where"])
    if not (frame[RunInfo.PROBLEM] != "").any():  # a column for broken runs only when there is one
        frame = frame.drop(columns=[RunInfo.PROBLEM])
    if common.lesson_mode():  # the story: which run, how accurate, how cheap
        frame = frame.drop(columns=["dataset", RunInfo.PROBLEM], errors="ignore")
    widgets.show_table(frame, key="runs_table")
    st.caption("**students** = finished / planned.  **final accuracy** = all finished students together, on the "
               "test set; **% of the teacher's FLOPs** = their work per image as a share of the teacher's.  A "
               "sweep's runs show as *sweep / trial*.  A run whose process ended without finishing shows as "
               "**died**; resume it on the Train page.  A run with a damaged file shows as **broken**, with the "
               "reason in **problem**; it can still be deleted.")


def actions(run: Run, chosen: str) -> None:
    """Open in Results; Delete (not in lesson mode; only runs in the runs folder) with its confirmation."""
    cols = st.columns([1, 1, 3])
    cols[0].button("Open in Results", key="runs_open", on_click=open_in_results, args=(chosen,), type="primary")
    if common.lesson_mode():
        return
    deletable = common.location(run) == "runs folder"
    cols[1].button("Delete ...", key="runs_delete", on_click=ask_delete, args=(chosen,), disabled=not deletable,
                   help=None if deletable else "Shipped runs in pretrained/ cannot be deleted from the app.")
    if ss.get("runs_confirm") != chosen:
        return
    if run.state() == State.RUNNING:
        st.warning(f"**{run.name}** is still running: stop it on the Train page before deleting it.")
        st.button("OK", key="runs_delete_cancel", on_click=cancel_delete)
        return
    st.warning(f"Delete **{run.name}** and every file in `{run.path}`? This cannot be undone.")
    confirm = st.columns([1, 1, 4])
    confirm[0].button("Yes, delete it", key="runs_delete_confirm", on_click=do_delete, args=(chosen,), type="primary")
    confirm[1].button("Cancel", key="runs_delete_cancel", on_click=cancel_delete)


def details(run: Run) -> None:
    with st.expander("Details of this run"):
        try:
            manifest = run.manifest()
            st.json({"command": " ".join(manifest.get("command", [])), "versions": manifest.get("versions", {}),
                     "config": manifest.get("config", {}), "status": run.status()}, expanded=False)
        except (RunError, OSError) as exc:
            st.error(str(exc))


def main() -> None:
    st.title("Runs")
    runs = common.all_runs()
    message = ss.pop("runs_message", None)
    if message:
        getattr(st, message[0])(message[1])
    if not runs:
        st.info(f"No runs yet. Shipped runs live in `{common.pretrained_dir()}`, new ones go to "
                f"`{common.runs_dir()}`: start one on the **Train** page.")
        return
    infos = {str(run.path): common.run_info(run) for run in runs}
    table(runs, infos)
    paths = list(infos)
    labels = {str(run.path): common.label(run, infos[str(run.path)]) for run in runs}
    if ss.get("runs_pick") not in paths:
        ss.runs_pick = ss.get(common.RUN_KEY) if ss.get(common.RUN_KEY) in paths else paths[0]
    chosen = st.selectbox("Run", paths, key="runs_pick", format_func=lambda p: labels.get(p, p))
    run = Run(Path(chosen))
    row = runs_charts.runs_frame([infos[chosen]], {chosen: common.location(run)}).iloc[0]
    st.caption(f"Started {row['started'] or 'at an unknown time'} · "
               + ("shipped with pkd (in pretrained/)" if row["where"] == "pretrained" else "in your runs folder"))
    actions(run, chosen)
    if infos[chosen][RunInfo.PROBLEM]:
        st.error(f"**{infos[chosen]['name']}** is broken: {infos[chosen][RunInfo.PROBLEM]}")
    if not common.lesson_mode():
        details(run)


main()
