"""Which runs a web page can show (`pkd export RUN --web`: 28x28 digits, Moving MNIST clips): apart from
pkd.web.build, so that the app can ask without importing the export (and with it the models)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pkd.data import get_dataset_spec

if TYPE_CHECKING:
    from pkd.runs import Run


def unsupported_reason(run: Run) -> str | None:
    """Why the page cannot show this run (photos, other shapes, clips not of Moving MNIST's (T, 1, S, S)), or
    None: 28x28 digit runs get the draw-a-digit page, Moving MNIST clip runs the clip page."""
    spec = get_dataset_spec(run.setting("data", "dataset"))
    if spec.kind == "clip":
        _, channels, height, width = spec.sample_shape
        if channels != 1 or height != width or height < 28:
            return (f"--web plays Moving MNIST clips (T, 1, S, S) of S >= 28 px; run {run.name} "
                    f"reads {spec.name} {spec.sample_shape}: export its students with --k K instead")
        return None
    if spec.kind != "image":
        return (f"--web makes a page for digits and Moving MNIST clips; run {run.name} reads {spec.kind} data "
                f"({spec.name}): export its students with --k K instead")
    if tuple(spec.sample_shape) != (1, 28, 28) or spec.photos:
        return (f"--web makes a draw-a-digit page for 28x28 digit runs; run {run.name} uses {spec.name}: export its "
                "students with --k K instead")
    return None
