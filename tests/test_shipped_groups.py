"""The shipped seed groups (pretrained/fashion-mnist*, pretrained/mnist-*seeds, pretrained/moving-mnist-*seeds):
members that differ only in their seed and share one teacher file, and docs that quote what their records say (mean
± SE per k, the paired-seed verdicts). Reads records only: re-evaluating a member is tests/test_pretrained.py's job
(one member per image group; the video groups' evaluations were checked by hand, see there)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pkd.groups import SeedGroup, compare_groups, group_prefixes
from pkd.runs import State
from pkd.runs.schema import Manifest
from pkd.stats import describe, format_spread

ROOT = Path(__file__).resolve().parents[1]
PAIRS = {  # residual group, independent group, the page that quotes them
    "fashion-mnist": ("fashion-mnist", "fashion-mnist-independent", "docs/results/fashion-mnist.md"),
    "mnist": ("mnist-seeds", "mnist-independent-seeds", "docs/results/mnist.md"),
    "moving-mnist": ("moving-mnist-seeds", "moving-mnist-independent-seeds", "docs/results/video.md"),
}
GROUPS = [name for pair in PAIRS.values() for name in pair[:2]]
SAME_IN_EVERY_MEMBER = ("data", "students", "distill")  # the teacher section differs: seed-0 may train it


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", GROUPS)
def test_a_shipped_group_is_three_seeds_of_one_config_on_one_teacher(name):
    group = SeedGroup(ROOT / "pretrained" / name)
    members = group.members()
    assert len(members) >= 3 and [m.manifest()[Manifest.SEED] for m in members] == group.seeds()
    assert all(m.state() == State.DONE for m in members)
    configs = [m.config() for m in members]
    for section in SAME_IN_EVERY_MEMBER:
        assert all(c[section] == configs[0][section] for c in configs), (name, section)
    assert len({sha256(m.teacher_path()) for m in members}) == 1


def spread_cells(name: str) -> list[str]:
    """'86.84 ± 0.16' per k: the group's test accuracy over its seeds, as `pkd group` prints it."""
    return [format_spread(p.test) for p in group_prefixes(SeedGroup(ROOT / "pretrained" / name).members())]


@pytest.mark.parametrize("dataset", PAIRS)
def test_the_docs_quote_the_shipped_groups(dataset):
    """Every k's mean ± SE of both groups and the paired verdict (`pkd compare A B`) stand in the results page."""
    residual, independent, page = PAIRS[dataset]
    text = (ROOT / page).read_text()
    for name in (residual, independent):
        for cell in spread_cells(name):
            assert cell in text, (page, name, cell)
    pairings = compare_groups(SeedGroup(ROOT / "pretrained" / residual).members(),
                              SeedGroup(ROOT / "pretrained" / independent).members())
    for p in pairings:
        assert describe(p.diff.mean, p.diff.verdict, p.diff.se) in text, (page, p.k)


def test_compare_says_the_shipped_groups_share_one_teacher_not_that_its_paths_differ():
    """The Fashion runs record their shared teacher by different paths and stage settings (seed-0 trained it, the
    others load it, on two machines); the Compare table names none of that, and names the teacher file when
    runs distil different teachers (the MNIST run against the Fashion ones)."""
    from pkd.groups import runs_of
    from pkd.side_by_side import TEACHER_ID, read_runs, run_table, teacher_id

    fashion = [run for name in PAIRS["fashion-mnist"][:2] for run in runs_of(ROOT / "pretrained" / name)]
    keys, _ = run_table(read_runs(fashion)[0])
    assert keys == ["distill.learn_prev_scale", "distill.mode", "seed"]
    shared = sha256(ROOT / "pretrained" / "fashion-mnist" / "seed-0" / "teacher.pt")[:12]
    assert {teacher_id(run) for run in fashion} == {shared}
    keys, rows = run_table(read_runs(fashion[:1] + runs_of(ROOT / "pretrained" / "mnist"))[0])
    assert TEACHER_ID in keys and "data.dataset" in keys
    assert [row[TEACHER_ID] for row in rows] == [shared, sha256(ROOT / "pretrained" / "mnist" / "teacher.pt")[:12]]
