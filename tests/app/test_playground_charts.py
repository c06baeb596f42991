"""The Playground's tables (app/charts/playground.py) on plain prediction reports, without Streamlit."""

from __future__ import annotations

from app.charts import playground as playground_charts


def test_prefix_predictions_table():
    report = {"prefix_probs": [[0.2, 0.8], [0.9, 0.1]], "student_probs": [[0.2, 0.8], [0.7, 0.3]],
              "cumulative_flops": [10, 30], "share_of_teacher": [0.1, 0.3]}
    frame = playground_charts.prefix_predictions_frame(report, ["zero", "one"])
    assert list(frame["students used"]) == ["student 1", "students 1–2"]
    assert list(frame["together they say"]) == ["one", "zero"]
    assert list(frame["last student's own vote (alone)"]) == ["one", "zero"]
    assert list(frame["% of the teacher's"]) == ["10.00%", "30.00%"]


def test_step_frame_says_what_each_added_student_changed():
    report = {"prefix_probs": [[0.4, 0.6], [0.7, 0.3], [0.9, 0.1], [0.9, 0.1]],
              "student_probs": [[0.4, 0.6]] * 4, "cumulative_flops": [10, 30, 70, 150],
              "share_of_teacher": [0.01, 0.03, 0.07, 0.15]}
    frame = playground_charts.step_frame(report, 3, ["zero", "one"])
    assert list(frame["step"]) == ["add student 1", "add student 2", "add student 3"]  # only the students added
    assert list(frame["answer so far"]) == ["one", "zero", "zero"]
    assert list(frame["what changed"]) == ["first answer", "changed its mind: one → zero",
                                           "same answer, more sure (+20.0 points)"]
    assert list(frame["added FLOPs"]) == ["10", "20", "40"] and list(frame["FLOPs so far"]) == ["10", "30", "70"]
    assert len(playground_charts.step_frame(report, 4, ["zero", "one"])) == 4
    assert playground_charts.change_text((0, 0.9), (0, 0.9), ["a"]) == "same answer, as sure"
