"""Which runs a web page can show (`pkd export RUN --web`): apart from pkd.web.build, so that the app can ask without
importing the export (and with it the models)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pkd.data import get_dataset_spec

if TYPE_CHECKING:
    from pkd.runs import Run


def unsupported_reason(run: Run) -> str | None:
    """Why the page cannot show this run (clips, photos, other shapes), or None."""
    spec = get_dataset_spec(run.setting("data", "dataset"))
    if spec.kind != "image":
        return (f"--web makes a draw-a-digit page; run {run.name} reads clips ({spec.name}), which the page does not "
                "play yet: export its students with --k K instead")
    if tuple(spec.sample_shape) != (1, 28, 28) or spec.photos:
        return (f"--web makes a draw-a-digit page for 28x28 digit runs; run {run.name} uses {spec.name}: export its "
                "students with --k K instead")
    return None
