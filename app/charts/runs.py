"""The Runs page's table (also the Results page's table of the runs compared): Run.info() dicts -> a pandas table.

Nothing here imports Streamlit or touches files, so it is unit-tested on plain dicts.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from app.charts.format import pct

from pkd.runs.schema import RunInfo


def runs_frame(infos: list[dict], locations: dict[str, str] | None = None,
               names: dict[str, str] | None = None) -> pd.DataFrame:
    """The Runs page table from Run.info() dicts (newest first as given); `problem` says why a run is broken.

    Args:
        infos: Run.info() dicts.
        locations: path -> "pretrained" or "runs folder".
        names: path -> the name to show (a sweep's trial as "sweep / trial-002"); default the run's name.
    """
    locations, names = locations or {}, names or {}
    records = []
    for info in infos:
        created = info.get("created")
        records.append({
            "run": names.get(info.get("path", ""), info.get("name")),
            "state": info.get("state"),
            "dataset": info.get("dataset"),
            "mode": info.get("mode"),
            "students": f"{info.get(RunInfo.K_DONE, 0)}/{info.get(RunInfo.K_PLANNED, 0)}",
            "teacher's accuracy": pct(info.get(RunInfo.TEACHER_ACC)),
            "final accuracy": pct(info.get(RunInfo.FINAL_ACC)),
            "% of the teacher's FLOPs": pct(info.get(RunInfo.FINAL_SHARE)),
            "started": dt.datetime.fromtimestamp(created).strftime("%d %b %H:%M") if created else "",
            "where": locations.get(info.get("path", ""), ""),
            RunInfo.PROBLEM: info.get(RunInfo.PROBLEM) or "",
        })
    columns = ["run", "state", "dataset", "mode", "students", "teacher's accuracy", "final accuracy",
               "% of the teacher's FLOPs", "started", "where", RunInfo.PROBLEM]
    return pd.DataFrame.from_records(records, columns=columns)


def run_label(info: dict) -> str:
    """Short label for pickers and legends: name, mode and state."""
    state = info.get("state", "?")
    mode = info.get("mode", "?")
    return f"{info.get('name', '?')} ({mode}, {state})"
