"""The README is the front door: short, every relative link in it and in docs/ leads to a file, its *Project layout*
names the tree (every path it names exists, every package is named), and its headline table quotes the shipped
runs. The full tables live in docs/results/ (tests/test_pretrained.py checks those)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pkd.runs import Run

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 200
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")  # [text](target)
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LAYOUT_HEADING = "## Project layout"
LAYOUT_LINE = re.compile(r"^- `[^`]+`(, `[^`]+`)* — \S")  # "- `path/` — what it is"
LAYOUT_ROOTS = ("pkd", "app")


def markdown_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").rglob("*.md"))]


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) < MAX_README_LINES, f"README.md has {len(lines)} lines: move details to docs/"


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_lead_to_files(path):
    text = FENCE.sub("", path.read_text())  # code blocks hold no links
    broken = []
    for target in LINK.findall(text):
        if target.startswith("#") or re.match(r"[a-z][a-z0-9+.-]*:", target):  # an anchor here, http:, mailto:
            continue
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{path.relative_to(ROOT)} links to missing files: {broken}"


def layout_lines() -> list[str]:
    """The list items of the README's *Project layout* section."""
    text = README.read_text()
    assert LAYOUT_HEADING in text
    section = text.split(LAYOUT_HEADING, 1)[1].split("\n## ", 1)[0]
    return [line for line in section.splitlines() if line.startswith("- ")]


def named_paths() -> set[str]:
    """Every `pkd/...` or `app/...` path the layout section names (a folder ends with /)."""
    return {span for line in layout_lines() for span in re.findall(r"`([^`]+)`", line)
            if span.split("/")[0] in LAYOUT_ROOTS}


def package_folders() -> set[str]:
    """Every folder of code under pkd/ (a package: it has __init__.py) and app/ (any folder of modules)."""
    folders = set()
    for root in LAYOUT_ROOTS:
        for folder in (ROOT / root).rglob("*"):
            if not folder.is_dir() or "__pycache__" in folder.parts:
                continue
            if (folder / "__init__.py").exists() or (root == "app" and any(folder.glob("*.py"))):
                folders.add(f"{folder.relative_to(ROOT).as_posix()}/")
    return folders


def test_layout_lines_have_one_form():
    bad = [line for line in layout_lines() if not LAYOUT_LINE.match(line)]
    assert layout_lines() and not bad, f"layout lines not of the form '- `path/` — what it is': {bad}"


def test_layout_section_names_the_tree():
    named = named_paths()
    missing = sorted(path for path in named if not (ROOT / path).exists())
    unnamed = sorted(package_folders() - named)
    assert not missing and not unnamed, f"named but absent: {missing}; packages not named: {unnamed}"


def percent(share: float) -> str:
    return f"{100 * share:.2f}%"


def test_headline_quotes_the_shipped_runs():
    readme = README.read_text()
    mnist = Run(ROOT / "pretrained" / "mnist")
    rows, summary = mnist.prefix_table(), mnist.summary()
    teacher = summary["teacher"]
    quoted = [f"{percent(teacher['test_acc'])}: a CNN of {teacher['flops']:,} FLOPs",
              f"{percent(rows[0]['prefix_acc'])} at {percent(rows[0]['share_of_teacher'])}",
              f"{percent(rows[-1]['prefix_acc'])} at {percent(rows[-1]['share_of_teacher'])}"]
    early_exit = {f"{percent(p['acc'])} at {percent(p['mean_flops'] / teacher['flops'])} of the teacher's FLOPs"
                  for p in summary["anytime_val_fitted"]}
    assert any(point in readme for point in early_exit), sorted(early_exit)
    video = Run(ROOT / "pretrained" / "moving-mnist")
    rows, summary = video.prefix_table(), video.summary()
    clips = summary["video"]
    quoted += [f"{percent(summary['teacher']['test_acc'])} (digit {percent(clips['teacher_digit_acc'])})",
               f"{percent(rows[-1]['prefix_acc'])} at {percent(rows[-1]['share_of_teacher'])} of the teacher's FLOPs",
               f"changes on {percent(clips['prefix_reversal_change'][-1])} of reversed clips "
               f"(teacher {percent(clips['teacher_reversal_change'])})"]
    digits = Run(ROOT / "pretrained" / "moving-mnist-digits")
    rows, clips = digits.prefix_table(), digits.summary()["video"]
    quoted.append(f"digit identity {percent(clips['prefix_digit_acc'][-1])} at {percent(rows[-1]['share_of_teacher'])}")
    missing = [figure for figure in quoted if figure not in readme]
    assert not missing, missing


def test_ci_runs_exactly_the_readmes_set_up_commands():
    """The README's first two commands are the whole set-up: CI's last command is the second one, word for word."""
    blocks = re.findall(r"```bash\n(.*?)\n```", (ROOT / "README.md").read_text(), flags=re.S)
    assert len(blocks) >= 2 and "streamlit run app/main.py" in blocks[0]
    ci_lines = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci_lines[-1] == blocks[1].strip()
