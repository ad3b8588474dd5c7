"""The leaderboard: rows of scores (`ScoreRow`) kept in a JSON file, and their Markdown tables."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from .files import write_json
from .ranking import RankingScores, attach_scores, dataset_name


@dataclass
class ScoreRow:
    """One line of a leaderboard: a set (or baseline) scored under a protocol on one architecture."""

    set: str
    method: str
    ipc: int
    protocol: str
    model: str
    mean: float
    std: float
    runs: list[float]
    test_split: str
    hardware: str
    epochs: int
    lr: float
    seconds: float | None = None  # wall time of training and testing the runs (None: written before it was recorded)
    fingerprint: str | None = None  # of the set scored, or of the teacher pool that labels or is the row; None: a
    # hard-label random subset (only the source data), or a row written before fingerprints were recorded
    model_fingerprint: str | None = None  # `model_fingerprint` of the architecture that was trained; None: a teacher
    # row, or a row written before it was recorded
    dataset: str | None = None  # the source dataset whose train split gave the baselines and whose test split scored
    test_size: int | None = None  # images in that test split
    augmentation: str | None = None  # None: the default DSA; 'none': trained without augmentation; else the DSA ops
    space: str | None = None  # the models' input space (`sets.space_name`); None: a row written before it was kept
    scores: RankingScores | None = None  # DD-Ranking's scores of a set row (`ranking.score_rows`), kept up to date

    def __post_init__(self):
        if isinstance(self.scores, dict):
            self.scores = RankingScores.from_dict(self.scores)

    def to_dict(self) -> dict:
        return {**asdict(self), "scores": self.scores.to_dict() if self.scores else None}

    def same_training(self, other: "ScoreRow") -> bool:
        """Whether the two rows trained the same models on the same data (scores, times and hardware aside)."""
        return _trained(self) == _trained(other)


def read_rows(path: str | os.PathLike) -> list[ScoreRow]:
    """The rows of the leaderboard JSON at `path` (none if there is no file)."""
    path = Path(path)
    return [ScoreRow(**row) for row in json.loads(path.read_text())["rows"]] if path.exists() else []


def append_leaderboard(path: str | os.PathLike, rows: list[ScoreRow]) -> Path:
    """Add `rows` to the leaderboard JSON at `path` (created if needed), atomically, and refresh every set row's
    DD-Ranking scores; a row equal to one already there in every field but its time (a baseline scored again with the
    same seeds) is not added twice."""
    existing = read_rows(path)
    for row in rows:
        if _untimed(row) not in [_untimed(r) for r in existing]:
            existing.append(row)
    attach_scores(existing)
    write_json(path, {"rows": [row.to_dict() for row in existing]})
    return Path(path)


def _untimed(row: ScoreRow) -> dict:
    return {k: v for k, v in asdict(row).items() if k not in ("seconds", "scores")}


def _trained(row: ScoreRow) -> dict:
    kept = {k: v for k, v in asdict(row).items() if k not in ("seconds", "scores", "hardware", "mean", "std")}
    return {**kept, "runs": len(row.runs), "dataset": dataset_name(row.dataset)}


def render_rows(rows: list[ScoreRow]) -> str:
    """A Markdown table of score rows."""
    lines = ["| set | method | IPC | protocol | model | top-1 % | runs | data (test images) | epochs | lr | time "
             "| fingerprint |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.set} | {r.method} | {r.ipc or '-'} | {shown_protocol(r)} | {r.model} | {r.mean:.1f} ± {r.std:.1f} "
                     f"| {len(r.runs)} | {source_name(r)} | {r.epochs or '-'} | {r.lr or '-'} | {_minutes(r.seconds)} "
                     f"| {r.fingerprint or '-'} |")
    return "\n".join(lines)


def shown_protocol(row: ScoreRow) -> str:
    """The row's protocol, marked when its models trained without augmentation."""
    return f"{row.protocol} (no aug.)" if row.augmentation == "none" else row.protocol


def source_name(row: ScoreRow) -> str:
    """The row's source dataset by its folder or repo name, with the size of the test split it was scored on."""
    name = dataset_name(row.dataset)
    return f"{name} {row.test_split} ({row.test_size:,})" if row.test_size else f"{name} {row.test_split}"


def _minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def render_by_architecture(rows: list[ScoreRow]) -> str:
    """A Markdown table with one line per set (by fingerprint), protocol, IPC and epochs and one column per
    architecture, in the order they first appear (mean ± std over the runs, '-' where not scored), best first on the
    first architecture; teacher rows follow as text. A name scored under one protocol with several fingerprints
    shows them."""
    models = list(dict.fromkeys(r.model for r in rows if r.model != "-"))
    lines: dict[tuple, dict[str, ScoreRow]] = {}
    for r in rows:
        if r.model != "-":
            lines.setdefault((r.dataset, shown_protocol(r), r.ipc, r.set, r.method, r.epochs, r.fingerprint), {})[r.model] = r
    order = sorted(lines, key=lambda k: (str(k[0]), k[1], k[2], -lines[k].get(models[0],
                                                                                next(iter(lines[k].values()))).mean))
    text = [f"| data (test images) | set | method | IPC | protocol | epochs | runs | {' | '.join(models)} |",
            "|---" * (7 + len(models)) + "|"]
    for key in order:
        _, protocol, ipc, _, method, epochs, _ = key
        cells = [f"{lines[key][m].mean:.1f} ± {lines[key][m].std:.1f}" if m in lines[key] else "-" for m in models]
        runs = "/".join(sorted({str(len(r.runs)) for r in lines[key].values()}))
        first = next(iter(lines[key].values()))
        text.append(f"| {source_name(first)} | {_shown_name(first, rows)} | {method} | {ipc} | {protocol} | {epochs} "
                    f"| {runs} | {' | '.join(cells)} |")
    teachers = [f"{_shown_name(r, rows)} ({source_name(r)}): {r.mean:.1f} ± {r.std:.1f}" for r in rows if r.model == "-"]
    return "\n".join(text) + "".join(f"\n\n{t}." for t in teachers)


def _shown_name(row: ScoreRow, rows: list[ScoreRow]) -> str:
    """The row's set name, with its fingerprint when `rows` hold that name under its protocol with another one."""
    if len({r.fingerprint for r in rows if (r.set, r.protocol) == (row.set, row.protocol)}) == 1:
        return row.set
    return f"{row.set} [{row.fingerprint or 'no fingerprint'}]"


def render_scores(rows: list[ScoreRow]) -> str:
    """A Markdown table of the set rows that have DD-Ranking scores: accuracy and the scores (mean ± std over runs,
    fractions), '-' where a score lacks its rows."""
    lines = ["| data (test images) | set | method | IPC | protocol | model | epochs | top-1 % | IOR | HLR | LRS | ARS |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted((r for r in rows if r.scores), key=lambda r: (str(r.dataset), r.protocol, r.model, r.ipc,
                                                                 -r.scores.lrs.mean if r.scores.lrs else 0.0)):
        cells = [f"{v.mean:+.3f} ± {v.std:.3f}" if v else "-" for v in (r.scores.ior, r.scores.hlr)]
        cells += [f"{v.mean:.3f} ± {v.std:.3f}" if v else "-" for v in (r.scores.lrs, r.scores.ars)]
        lines.append(f"| {source_name(r)} | {_shown_name(r, rows)} | {r.method} | {r.ipc} | {shown_protocol(r)} | {r.model} "
                     f"| {r.epochs} | {r.mean:.1f} ± {r.std:.1f} | {' | '.join(cells)} |")
    return "\n".join(lines)


def render_leaderboard(path: str | os.PathLike, by_architecture: bool = False, scores: bool = False) -> str:
    """The leaderboard JSON at `path` as a Markdown table, grouped by protocol and architecture, best first (or
    `render_by_architecture`); with `scores`, the DD-Ranking scores of its current set rows follow (computed anew)."""
    rows, stale = current_rows(read_rows(path))
    footer = f"\n\nHardware: {'; '.join(sorted({r.hardware for r in rows}))}."
    if stale:
        footer += (f"\n\nLeft out: {len(stale)} row(s) trained on another definition of "
                   f"{', '.join(sorted({r.model for r in stale}))} than the latest (`model_fingerprint`).")
    if scores:
        attach_scores(rows)
        footer += ("\n\nDD-Ranking's scores (arXiv 2505.13300; fractions, mean ± std over runs; README: Scores):\n\n"
                   + render_scores(rows))
    if by_architecture:
        return render_by_architecture(rows) + footer
    rows.sort(key=lambda r: (r.protocol != "-", r.protocol, r.model, r.ipc, -r.mean))
    return render_rows(rows) + footer


def current_rows(rows: list[ScoreRow]) -> tuple[list[ScoreRow], list[ScoreRow]]:
    """`rows` split into those trained on each architecture's latest definition (the `model_fingerprint` of its last
    row in `rows`; rows that recorded none, teachers' and older ones, count as current) and the others."""
    latest = {r.model: r.model_fingerprint for r in rows if r.model_fingerprint}
    current = [r.model_fingerprint in (None, latest.get(r.model)) for r in rows]
    return [r for r, c in zip(rows, current) if c], [r for r, c in zip(rows, current) if not c]
