"""The Runs page's table (app/charts/runs.py) on plain Run.info() dicts, without Streamlit."""

from __future__ import annotations

from app.charts import format as fmt
from app.charts import runs as runs_charts


def test_runs_frame():
    info = {"name": "r", "path": "/x/r", "state": "done", "dataset": "mnist", "mode": "residual", "k_done": 2,
            "k_planned": 3, "teacher_acc": 0.99, "final_acc": 0.9, "final_share": 0.04, "created": 0}
    frame = runs_charts.runs_frame([info], {"/x/r": "runs folder"})
    assert frame.loc[0, "students"] == "2/3" and frame.loc[0, "final accuracy"] == 90.0
    assert frame.loc[0, "where"] == "runs folder" and frame.loc[0, "run"] == "r"
    assert {"teacher's accuracy", "final accuracy", "% of the teacher's FLOPs"} <= fmt.PERCENT_COLUMNS
    named = runs_charts.runs_frame([info], names={"/x/r": "sweep-a / trial-001"})
    assert named.loc[0, "run"] == "sweep-a / trial-001"
