"""Seed groups: runs of one config that differ only in their seed, read together.

`pkd train --config C --seeds 0,1,2` (pkd.train.seeds) makes one folder:

    group.json   what the group is (GroupRecord: the resolved config, the seeds, the shared teacher, created)
    seed-0/      an ordinary run with seed 0: it trains the teacher (unless the config names teacher.checkpoint)
    seed-1/ ...  ordinary runs with the other seeds, sharing that teacher (teacher-ref.json, no copy)

The members are plain run directories (`pkd runs`, `pkd eval`, the app read them as any run; list_runs finds them
one level down). This module aggregates any list of runs per prefix k (mean ± SE over seeds, min, max:
`group_prefixes`) and compares two groups seed by seed (`compare_groups`: the paired difference per k, pkd.stats).
Comparing two single runs sample by sample (McNemar) needs their models: pkd.compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pkd.runs.files import GROUP_FILE, RunError
from pkd.runs.io import read_json
from pkd.runs.listing import list_runs
from pkd.runs.run import Run
from pkd.runs.schema import GroupRecord, Manifest, PrefixRow
from pkd.stats import PairedDifference, Spread, paired_difference, spread

MEMBER_PREFIX = "seed-"


def member_name(seed: int) -> str:
    """The folder of a group's member with this seed: seed-<seed>."""
    return f"{MEMBER_PREFIX}{int(seed)}"


def parse_seeds(text: str) -> list[int]:
    """`--seeds 0,1,2` -> [0, 1, 2]: whole numbers, at least one, none twice; ValueError saying what to write."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(f"--seeds {text!r}: give whole numbers separated by commas, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds) or any(s < 0 for s in seeds):
        raise ValueError(f"--seeds {text!r}: give one or more different seeds >= 0, e.g. --seeds 0,1,2")
    return seeds


@dataclass(frozen=True)
class SeedGroup:
    """A seed group's folder (one holding group.json)."""

    path: Path

    def record(self) -> dict:
        """group.json, checked: RunError naming the file when it is missing or not a group record."""
        where = self.path / GROUP_FILE
        try:
            record = read_json(where)
        except FileNotFoundError:
            raise RunError(f"{self.path}: not a seed group (no {GROUP_FILE}); make one with "
                           "`pkd train --config C --seeds 0,1,2`") from None
        seeds = record.get(GroupRecord.SEEDS) if isinstance(record, dict) else None
        if not isinstance(seeds, list) or not seeds or not all(type(s) is int and s >= 0 for s in seeds) \
                or not isinstance(record.get(GroupRecord.CONFIG), dict):
            raise RunError(f"{where}: not a seed group record (seeds, config); the file is damaged")
        return record

    def seeds(self) -> list[int]:
        return list(self.record()[GroupRecord.SEEDS])

    def member_path(self, seed: int) -> Path:
        return self.path / member_name(seed)

    def members(self) -> list[Run]:
        """The members that exist so far, in the order of the group's seeds."""
        return [Run(self.member_path(s)) for s in self.seeds() if self.member_path(s).is_dir()]


def runs_of(path: str | Path) -> list[Run]:
    """The runs a path names: a seed group's members (in seed order), one run, or every run in a folder."""
    path = Path(path)
    if (path / GROUP_FILE).is_file():
        return SeedGroup(path).members()
    runs = list_runs([path]) if path.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"{path}: no pkd run, seed group or folder of runs there")
    return runs


def group_folder_of(run: Run) -> Path | None:
    """The folder of the seed group `run` seems to belong to (its parent holds group.json), without reading the
    record: cheap enough for every name in a listing. seed_group_of checks the membership."""
    parent = run.path.parent
    return parent if (parent / GROUP_FILE).is_file() else None


def seed_group_members(run: Run) -> list[Run]:
    """The members of the seed group `run` is a member of, `run` among them (group.json read once), or [] for a
    plain run, a sweep's trial, a stray folder beside a group's members, or a damaged group record."""
    folder = group_folder_of(run)
    if folder is None:
        return []
    try:
        members = SeedGroup(folder).members()
    except RunError:
        return []
    return members if any(m.path == run.path for m in members) else []


def seed_group_of(run: Run) -> SeedGroup | None:
    """The seed group `run` is a member of (its folder is one of the seed-<s> members its parent's group.json
    lists), else None (a plain run, a sweep's trial, or a damaged group record)."""
    return SeedGroup(run.path.parent) if seed_group_members(run) else None


def find_groups(folders: list[str | Path]) -> list[SeedGroup]:
    """The seed groups in the given folders (a group folder itself, or one directly inside), each once, by path."""
    found: dict[Path, SeedGroup] = {}
    for folder in map(Path, folders):
        candidates = [folder] + (sorted(c for c in folder.iterdir() if not c.is_symlink()) if folder.is_dir() else [])
        found.update((c.resolve(), SeedGroup(c)) for c in candidates if (c / GROUP_FILE).is_file())
    return [found[path] for path in sorted(found)]


@dataclass(frozen=True)
class PrefixSpread:
    """Prefix k across the runs of a group: how many runs have it, its cumulative FLOPs per sample (the mean; runs
    of one config share them) and its test and val accuracy over the runs (val None when no run has it)."""

    k: int
    n: int
    cumulative_flops: float
    test: Spread
    val: Spread | None


def group_prefixes(runs: list[Run]) -> list[PrefixSpread]:
    """Per prefix k, the spread over `runs` of prefix.csv's accuracies (mean ± SE, min, max). A run that has not
    reached k yet counts only for the k it has (n says how many runs each k rests on)."""
    by_k: dict[int, list[dict]] = {}
    for run in runs:
        for row in run.prefix_table():
            by_k.setdefault(row[PrefixRow.K], []).append(row)
    out = []
    for k in sorted(by_k):
        rows = by_k[k]
        val = [r[PrefixRow.PREFIX_VAL_ACC] for r in rows if r.get(PrefixRow.PREFIX_VAL_ACC) is not None]
        out.append(PrefixSpread(k=k, n=len(rows),
                                cumulative_flops=sum(r[PrefixRow.CUMULATIVE_FLOPS] for r in rows) / len(rows),
                                test=spread([r[PrefixRow.PREFIX_ACC] for r in rows]),
                                val=spread(val) if val else None))
    return out


def seed_of(run: Run) -> int:
    """The seed a run was trained with (its manifest's)."""
    seed = run.manifest().get(Manifest.SEED)
    if type(seed) is not int:
        raise RunError(f"{run.path}: its manifest records no seed; it cannot be paired with another group's run")
    return seed


@dataclass(frozen=True)
class PrefixPairing:
    """Prefix k of group A against group B over the seeds both have trained to k: the paired difference of test
    accuracy A - B (pkd.stats.PairedDifference: mean ± SE, wins, losses, verdict) and the seeds it rests on."""

    k: int
    seeds: tuple[int, ...]
    diff: PairedDifference


def compare_groups(a: list[Run], b: list[Run]) -> list[PrefixPairing]:
    """Groups A and B paired by seed (runs with the same manifest seed), per prefix k both sides have.

    ValueError when the groups share no seed (nothing to pair)."""
    a_by_seed, b_by_seed = {seed_of(r): r for r in a}, {seed_of(r): r for r in b}
    shared = sorted(set(a_by_seed) & set(b_by_seed))
    if not shared:
        raise ValueError(f"the groups share no seed (A: {sorted(a_by_seed)}, B: {sorted(b_by_seed)}); a paired "
                         "comparison needs runs with the same seeds on both sides")
    tables = {seed: ({r[PrefixRow.K]: r[PrefixRow.PREFIX_ACC] for r in a_by_seed[seed].prefix_table()},
                     {r[PrefixRow.K]: r[PrefixRow.PREFIX_ACC] for r in b_by_seed[seed].prefix_table()})
              for seed in shared}
    ks = sorted({k for ta, tb in tables.values() for k in ta if k in tb})
    out = []
    for k in ks:
        seeds = tuple(s for s in shared if k in tables[s][0] and k in tables[s][1])
        out.append(PrefixPairing(k=k, seeds=seeds, diff=paired_difference([tables[s][0][k] for s in seeds],
                                                                          [tables[s][1][k] for s in seeds])))
    return out
