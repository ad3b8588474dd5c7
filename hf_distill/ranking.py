"""DD-Ranking's scores (Li et al., "DD-Ranking: Rethinking the Evaluation of Dataset Distillation", arXiv 2505.13300)
from leaderboard rows: how much a set improves on random real images, how much of the hard-label gap to the full
data it closes, and two robust scores that fold these into one number in [0, 1].

With accuracies as fractions in [0, 1] (`ddranking`'s code works on percentages; see README):

    IOR = acc(set, P) - acc(random, P)                      P: the row's protocol
    HLR = acc(full train split, hard) - acc(set, hard)
    LRS = (exp(w * IOR - (1 - w) * HLR) - exp(-1)) / (e - exp(-1))
    ARS = (exp(w * IOR_aug + (1 - w) * IOR_no_aug) - exp(-1)) / (e - exp(-1))      w = 0.5

Each score is computed run by run (run r of the set with run r of its baseline, as `ddranking` pairs its rounds) and
reported as the mean and std over runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .records import Summary

if TYPE_CHECKING:
    from .leaderboard import ScoreRow

WEIGHT = 0.5  # DD-Ranking's lambda for both LRS and ARS
RANDOM_SUBSET_ROW = "random subset, new draw per run"
FULL_DATA_METHOD = "full train split"


def normalised(x: float) -> float:
    """(exp(x) - exp(-1)) / (e - exp(-1)): maps [-1, 1] onto [0, 1]."""
    return (math.exp(x) - math.exp(-1)) / (math.e - math.exp(-1))


def ior(set_runs: list[float], random_runs: list[float]) -> list[float]:
    """Improvement over random, run by run, from top-1 % under one protocol (fractions)."""
    return [(s - r) / 100 for s, r in zip(set_runs, random_runs)]


def hlr(full_data: float, set_hard_runs: list[float]) -> list[float]:
    """Hard-label recovery, run by run: what the set (hard labels) still lacks of the full train split (fractions)."""
    return [(full_data - s) / 100 for s in set_hard_runs]


def lrs(iors: list[float], hlrs: list[float], weight: float = WEIGHT) -> list[float]:
    """Label-robust score, run by run."""
    return [normalised(weight * i - (1 - weight) * h) for i, h in zip(iors, hlrs)]


def ars(iors_augmented: list[float], iors_plain: list[float], weight: float = WEIGHT) -> list[float]:
    """Augmentation-robust score, run by run, from the improvements over random with and without augmentation."""
    return [normalised(weight * a + (1 - weight) * p) for a, p in zip(iors_augmented, iors_plain)]


@dataclass
class RankingScores:
    """The scores of one set row (None where the rows they need are missing), each a `Summary` of its per-run values
    (fractions, not %)."""

    ior: Summary | None = None
    hlr: Summary | None = None
    lrs: Summary | None = None
    ars: Summary | None = None

    def to_dict(self) -> dict:
        return {k: None if v is None else v.to_dict() for k, v in vars(self).items()}

    @classmethod
    def from_dict(cls, entry: dict | None) -> "RankingScores":
        return cls(**{k: None if v is None else Summary.from_dict(v) for k, v in (entry or {}).items()})

    def __bool__(self) -> bool:
        return any(v is not None for v in vars(self).values())


def dataset_name(dataset: str | None) -> str:
    """A row's source dataset by its folder or repo name (rows keep the path as it was given)."""
    return Path(dataset.rstrip("/")).name if dataset else "?"


def source_key(row: "ScoreRow") -> tuple:
    """The data a row was scored on: source dataset (by name), test split and its size."""
    return dataset_name(row.dataset), row.test_split, row.test_size


def full_data_key(row: "ScoreRow") -> tuple:
    """What ties a set row to its full-train-split row (HLR's reference): source data, input space, architecture
    (and its definition)."""
    return (*source_key(row), row.space, row.model, row.model_fingerprint)


def _setting(row: "ScoreRow") -> tuple:
    """What a set row and its baselines share: source data, input space, IPC, architecture (and its definition),
    epochs, number of runs, and last the lr (which a `hard` row may not share)."""
    return (*source_key(row), row.space, row.ipc, row.model, row.model_fingerprint, row.epochs, len(row.runs), row.lr)


def score_rows(rows: list["ScoreRow"]) -> dict[int, RankingScores]:
    """The scores of each set row of `rows` that has the rows they need, by its index in `rows`.

    A set row is matched with the random-subset row of the same `_setting`, protocol and augmentation (the last such
    row when there are several); HLR with the set's own `hard` row (which may have another lr) and a full-train-split
    row of the same data, input space and architecture. ARS needs the four rows with and without augmentation. Rows
    that recorded no input space (`space`: written before it was kept) get and give no scores."""
    known = [r for r in rows if r.space is not None]  # pairs in an unknown input space may mix spaces
    randoms = {(_setting(r), r.protocol, r.augmentation): r for r in known if r.set == RANDOM_SUBSET_ROW}
    full = {full_data_key(r): r for r in known if r.method == FULL_DATA_METHOD}
    sets = {(r.fingerprint, _setting(r), r.protocol, r.augmentation): r for r in known
            if r.set != RANDOM_SUBSET_ROW and r.model != "-" and r.method != FULL_DATA_METHOD}
    hards = {(r.fingerprint, *_setting(r)[:-1], r.augmentation): r for r in sets.values() if r.protocol == "hard"}
    scores = {}
    for index, row in enumerate(rows):
        key = (row.fingerprint, _setting(row), row.protocol, row.augmentation)
        if sets.get(key) is not row or row.augmentation == "none":
            continue
        found = RankingScores()
        random = randoms.get((_setting(row), row.protocol, row.augmentation))
        iors = ior(row.runs, random.runs) if random else None
        found.ior = Summary.of(iors) if iors else None
        hard = hards.get((row.fingerprint, *_setting(row)[:-1], row.augmentation))
        reference = full.get(full_data_key(row))
        if hard and reference:
            hlrs = hlr(reference.mean, hard.runs)
            found.hlr = Summary.of(hlrs)
            found.lrs = Summary.of(lrs(iors, hlrs)) if iors else None
        plain = sets.get((row.fingerprint, _setting(row), row.protocol, "none"))
        plain_random = randoms.get((_setting(row), row.protocol, "none"))
        if iors and plain and plain_random:
            found.ars = Summary.of(ars(iors, ior(plain.runs, plain_random.runs)))
        if found:
            scores[index] = found
    return scores


def attach_scores(rows: list["ScoreRow"]) -> None:
    """Set each row's `scores` from `score_rows(rows)`, clearing those of rows that no longer have the rows they need."""
    found = score_rows(rows)
    for index, row in enumerate(rows):
        row.scores = found.get(index)
