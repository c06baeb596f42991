"""Seed groups end to end, as a user makes them: `pkd train --seeds` on configs/tiny.yaml in a real subprocess (it
trains every member in its own `pkd train` process and prints the group per k), then `pkd group`, `pkd compare`
(two runs: McNemar; two groups: paired seeds) and `pkd eval --combiner` through the CLI's own main (in this process:
each subprocess would cost a torch import on a busy machine)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from pkd.cli import main
from pkd.groups import SeedGroup, compare_groups, find_groups, group_prefixes, runs_of
from pkd.runs import GROUP_FILE, Run, RunError, State
from pkd.runs.schema import CombinerFigures, GroupRecord, Manifest, PrefixRow, Summary, TeacherFigures
from pkd.stats import describe, spread
from tests.built_once import built_once
from tests.pkd_process import TINY, pkd_ok


@pytest.fixture(scope="session")
def groups(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two seed groups of tiny, seeds 0 and 1: residual (trains its teacher in seed-0) and independent (loads that
    teacher: every run of both groups distils the same one). Made once per session: xdist's workers share them."""
    root = built_once(tmp_path_factory, "seed-groups", _make_groups)
    return {"residual": root / "residual", "independent": root / "independent", "root": root}


def _make_groups(root: Path) -> None:
    out = pkd_ok("train", "--config", TINY, "--seeds", "0,1", "--run-dir", str(root / "residual"), "--no-progress")
    assert re.search(r"^\s+2\s+2\s+[\d,]+\s+\d+\.\d\d ± \d+\.\d\d", out.stdout, re.M), out.stdout  # k=2, 2 runs
    teacher = Run(root / "residual" / "seed-0").teacher_path()
    pkd_ok("train", "--config", TINY, "--seeds", "1,0", "--run-dir", str(root / "independent"), "--no-progress",
           "distill.mode=independent", "distill.learn_prev_scale=false", f"teacher.checkpoint={teacher}")


def cli(capsys: pytest.CaptureFixture, *args: str, code: int = 0) -> tuple[str, str]:
    """`python -m pkd ARGS` through pkd.cli.main here: (stdout, stderr), the exit code checked."""
    capsys.readouterr()
    assert main(list(args)) == code
    return capsys.readouterr()


def test_a_seed_group_is_runs_differing_only_in_seed_sharing_one_teacher(groups):
    group = SeedGroup(groups["residual"])
    assert group.seeds() == [0, 1]
    first, second = group.members()
    assert [first.state(), second.state()] == [State.DONE, State.DONE]
    assert [first.manifest()[Manifest.SEED], second.manifest()[Manifest.SEED]] == [0, 1]
    assert second.teacher_path().resolve() == first.teacher_path().resolve()  # shared by reference, no copy
    assert not (second.path / "teacher.pt").exists()

    def settings(run: Run) -> dict:
        config = run.config()
        config.pop("seed")
        config["teacher"].pop("checkpoint")
        return config

    assert settings(first) == settings(second)
    record = json.loads((group.path / GROUP_FILE).read_text())
    assert record[GroupRecord.SEEDS] == [0, 1] and record[GroupRecord.TEACHER] is None
    assert {run.path for run in runs_of(groups["root"] / "residual")} == {first.path, second.path}


def test_pkd_group_prints_mean_and_se_over_seeds(groups, capsys):
    runs = SeedGroup(groups["residual"]).members()
    accs = [[row[PrefixRow.PREFIX_ACC] for row in run.prefix_table()] for run in runs]
    out, _ = cli(capsys, "group", str(groups["residual"]))
    for k, prefix in enumerate(group_prefixes(runs), start=1):
        by_hand = spread([acc[k - 1] for acc in accs])
        assert (prefix.n, prefix.test.mean, prefix.test.se) == (2, by_hand.mean, by_hand.se)
        assert f"{100 * by_hand.mean:.2f} ± {100 * by_hand.se:.2f}" in out


def test_pkd_compare_two_runs_is_mcnemar_per_k(groups, capsys):
    a, b = (groups["residual"] / f"seed-{s}" for s in (0, 1))
    out, _ = cli(capsys, "compare", str(a), str(b))
    rows = re.findall(r"^\s+(\d)\s+(\d+)\s+(\d+)\s+(\S+)\s+(.*)$", out, re.M)
    assert [int(r[0]) for r in rows] == [1, 2], out
    for _, a_only, b_only, p, verdict in rows:
        a_only, b_only, p = int(a_only), int(b_only), float(p)
        if p >= 0.05:
            assert verdict.startswith("within noise"), verdict
        else:
            assert verdict.startswith("ahead" if a_only > b_only else "behind"), verdict
        assert "test accuracy, 512 samples" in verdict


def test_pkd_compare_one_run_tests_every_prefix_against_its_teacher(groups, capsys):
    run = Run(groups["residual"] / "seed-1")
    out, _ = cli(capsys, "compare", str(run.path))
    rows = re.findall(r"^\s+(\d)\s+(\d+)\s+(\d+)\s+(\S+)\s+(.*)$", out, re.M)
    teacher_acc = run.summary()[Summary.TEACHER][TeacherFigures.TEST_ACC]
    assert "B = its teacher" in out and len(rows) == 2
    for (k, a_only, b_only, _, verdict), row in zip(rows, run.prefix_table()):
        assert int(a_only) - int(b_only) == round(512 * (row[PrefixRow.PREFIX_ACC] - teacher_acc)), (k, verdict)
    assert [g.path for g in find_groups([groups["root"]])] == [groups["independent"], groups["residual"]]


def test_pkd_compare_two_groups_pairs_seeds(groups, capsys):
    pairings = compare_groups(runs_of(groups["residual"]), runs_of(groups["independent"]))
    out, _ = cli(capsys, "compare", str(groups["residual"]), str(groups["independent"]))
    assert "paired by seed" in out
    for p in pairings:
        assert p.seeds == (0, 1) and p.diff.wins + p.diff.losses + p.diff.ties == 2
        assert describe(p.diff.mean, p.diff.verdict, p.diff.se) in out
    assert cli(capsys, "compare", str(groups["residual"]), str(groups["residual"]))[0].count("within noise") == 2


def test_prefix_csv_monotonicity_matches_the_native_combiner(groups, tmp_path, capsys):
    """prefix.csv's shares (from the training loop's running sums) are the summary's "sum" combiner's; `pkd eval
    --combiner product` prints the product of experts' table from the same summary."""
    run = Run(shutil.copytree(groups["residual"] / "seed-1", tmp_path / "run", symlinks=True))
    rows, figures = run.prefix_table(), run.summary()[Summary.COMBINERS]
    assert rows[0][PrefixRow.TRUE_PROB_DROP] is None
    native = figures["sum"]
    assert [r[PrefixRow.PREFIX_ACC] for r in rows] == pytest.approx(native[CombinerFigures.PREFIX_ACC], abs=1e-9)
    assert rows[1][PrefixRow.TRUE_PROB_DROP] == pytest.approx(native[CombinerFigures.TRUE_PROB_DROP][0], abs=2 / 512)
    assert rows[1][PrefixRow.RIGHT_TO_WRONG] == pytest.approx(native[CombinerFigures.RIGHT_TO_WRONG][0], abs=2 / 512)
    assert set(figures) == {"sum", "mean-prob", "product"}
    out, _ = cli(capsys, "eval", str(run.path), "--combiner", "product")
    product = run.summary()[Summary.COMBINERS]["product"]
    assert "combiner product" in out
    assert re.search(rf"^\s+2\s+{product[CombinerFigures.PREFIX_ACC][1]:.4f}\s+"
                     rf"{product[CombinerFigures.PREFIX_VAL_ACC][1]:.4f}\s+"
                     rf"{product[CombinerFigures.TRUE_PROB_DROP][0]:.4f}", out, re.M), out


def test_resume_keeps_done_members_and_bad_seeds_create_nothing(groups, tmp_path, capsys):
    before = (groups["residual"] / "seed-1" / "prefix.csv").read_text()
    assert "over seeds" in cli(capsys, "train", "--resume", str(groups["residual"]), "--no-progress")[0]
    assert (groups["residual"] / "seed-1" / "prefix.csv").read_text() == before
    for seeds, words in (("0,0", "different seeds"), ("a,b", "whole numbers")):
        _, err = cli(capsys, "train", "--config", TINY, "--seeds", seeds, "--run-dir", str(tmp_path / "g"), code=2)
        assert words in err and len(err.strip().splitlines()) == 1
        assert not (tmp_path / "g").exists()
    _, err = cli(capsys, "compare", str(groups["residual"]), str(groups["residual"] / "seed-0"), code=2)
    assert "not one of each" in err


def test_a_copied_group_shares_its_first_members_teacher_not_the_recorded_absolute_path(groups, tmp_path):
    """group.json records the teacher's absolute path on the machine that made the group; a clone of the shipped
    runs lacks it. The members to come share the first member's teacher, found relative to the copy."""
    from pkd.train.seeds import group_teacher

    shutil.copytree(groups["root"], tmp_path / "copy", ignore=shutil.ignore_patterns("*.lock"))
    for kind in ("residual", "independent"):
        copy = SeedGroup(tmp_path / "copy" / kind)
        record = json.loads((copy.path / GROUP_FILE).read_text())
        record[GroupRecord.TEACHER] = str(tmp_path / "gone" / "teacher.pt")
        (copy.path / GROUP_FILE).write_text(json.dumps(record))
        expected = tmp_path / "copy" / "residual" / "seed-0" / "teacher.pt"
        assert group_teacher(copy).resolve() == expected.resolve()
    fresh = tmp_path / "fresh"
    shutil.copytree(groups["residual"], fresh, ignore=shutil.ignore_patterns("seed-*"))
    assert group_teacher(SeedGroup(fresh)) is None  # no member yet, none recorded: the first member trains one


def test_seed_group_of_finds_a_members_group_and_nothing_else(groups, tmp_path):
    from pkd.groups import group_folder_of, seed_group_members, seed_group_of

    member = Run(groups["residual"] / "seed-1")
    assert seed_group_of(member).path == groups["residual"]
    alone = tmp_path / "seed-1"
    shutil.copytree(member.path, alone)
    assert seed_group_of(Run(alone)) is None  # the same run outside its group
    stray = groups["residual"] / "seed-7"  # a folder the group's seeds do not name
    assert seed_group_of(Run(stray)) is None
    assert [m.path.name for m in seed_group_members(member)] == ["seed-0", "seed-1"]
    assert seed_group_members(Run(alone)) == [] and seed_group_members(Run(stray)) == []
    assert group_folder_of(Run(stray)) == groups["residual"]  # the cheap check names the folder, not membership
    assert group_folder_of(Run(alone)) is None


def test_the_teacher_column_follows_a_changed_teacher_file(groups, tmp_path):
    """Compare's "teacher file" column is hashed once per file version: a teacher.pt rewritten in place (another
    size or time) gets its new digest, not the remembered one."""
    from pkd.side_by_side import teacher_id
    from pkd.runs import file_sha256

    run = tmp_path / "run"
    shutil.copytree(groups["residual"] / "seed-0", run)
    first = teacher_id(Run(run))
    assert first == file_sha256(run / "teacher.pt")[:12] == teacher_id(Run(run))
    with open(run / "teacher.pt", "ab") as fh:
        fh.write(b"\0")
    assert teacher_id(Run(run)) == file_sha256(run / "teacher.pt")[:12] != first


def test_a_member_evaluates_on_a_machine_where_its_teachers_first_path_is_gone(groups, tmp_path, capsys):
    """A member records where its teacher was loaded from on the machine that trained it (teacher.checkpoint, an
    absolute path; the shipped Fashion members name /tmp/fash28/...). On a fresh clone that path is gone: `pkd eval`
    and `pkd compare` read the teacher through teacher-ref.json, relative to the run, as training would."""
    source = Run(groups["independent"] / "seed-0")
    copy = tmp_path / "clone" / "independent" / "seed-0"
    shutil.copytree(source.path, copy)
    target = (copy / source.teacher_reference()["path"]).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.teacher_path(), target)
    manifest = json.loads((copy / "manifest.json").read_text())  # the run's resolved config is its manifest's
    manifest["config"]["teacher"]["checkpoint"] = str(tmp_path / "another-machine" / "teacher.pt")  # not here
    (copy / "manifest.json").write_text(json.dumps(manifest))
    out, _ = cli(capsys, "eval", str(copy))
    assert "teacher" in out
    assert Run(copy).prefix_table() == source.prefix_table()
    out, _ = cli(capsys, "compare", str(copy), str(source.path))
    assert "within noise (+0.00 points)" in out  # the same students on the same digits


def test_a_damaged_combiners_record_is_refused_by_name(groups, tmp_path):
    run = Run(shutil.copytree(groups["residual"] / "seed-0", tmp_path / "run", symlinks=True))
    summary = run.summary()
    summary[Summary.COMBINERS]["product"][CombinerFigures.RIGHT_TO_WRONG] = [1.5]
    (run.path / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(RunError, match=r"combiners.'product'.right_to_wrong\[0\] 1.5 is outside 0..1"):
        run.summary()
