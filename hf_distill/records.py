"""Typed records that travel between modules and into JSON: scores, compute, run metadata, evaluation results.

Each has `to_dict` / `from_dict` for its JSON. Prose that explains them belongs in the card templates, not here.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field, fields

import torch

from .host import hardware_description, peak_memory_mb

RESULTS_VERSION = 2  # eval_results.json: 2 names protocols apm/kd/hard; 1 (no "version" key) said logits_l1 for apm
PROTOCOL_ALIASES = {"logits_l1": "apm"}  # earlier spellings of protocol names, still accepted


@dataclass
class Summary:
    """Top-1 accuracies (%) of several runs, with their mean and sample standard deviation."""

    mean: float
    std: float
    runs: list[float]

    @classmethod
    def of(cls, runs: list[float]) -> "Summary":
        return cls(statistics.fmean(runs), statistics.stdev(runs) if len(runs) > 1 else 0.0, list(runs))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: dict) -> "Summary":
        return cls(entry["mean"], entry["std"], list(entry["runs"]))


@dataclass
class IterationTime:
    """Wall time of one APM iteration of one process: the student refresh (0 when none) and the image step."""

    step: int
    refresh_s: float
    image_step_s: float


@dataclass
class Compute:
    """What a run cost: wall time since it started, peak memory (`host.peak_memory_mb`) and where it ran."""

    wall_time_s: float
    peak_memory_mb: float
    device: str = "cpu"
    num_processes: int = 1
    hardware: str = ""
    torch: str = ""

    @classmethod
    def since(cls, start: float, device: torch.device | str, num_processes: int) -> "Compute":
        """The cost from `start` (a `time.time()`) to now, on this machine."""
        return cls(time.time() - start, peak_memory_mb(), str(device), num_processes, hardware_description(),
                   torch.__version__)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: dict) -> "Compute":
        return cls(**{f.name: entry[f.name] for f in fields(cls) if f.name in entry})


@dataclass
class PoolSummary:
    """The teacher pool a set was made with, as its card shows it."""

    architecture: str = "unknown"
    count: int = 0
    source: str | None = None
    epochs: list[int] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)


@dataclass
class RunMetadata:
    """How a distilled set was made (stored in `distilled.safetensors`, rendered on its card)."""

    model: str | None = None
    args: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    resolution: int | None = None
    channels: int | None = None
    preprocessing: dict = field(default_factory=dict)
    soft_labels: str = "teacher logits"
    iterations_done: int | None = None
    compute: Compute | None = None
    teachers: PoolSummary = field(default_factory=PoolSummary)
    method: str = "APM"
    paper: str = "arXiv:2312.08912"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, entry: dict) -> "RunMetadata":
        """Read the metadata JSON of a set; keys it does not know (or a set written by another version) are left out."""
        known = {f.name: entry[f.name] for f in fields(cls) if f.name in entry}
        if known.get("compute"):
            known["compute"] = Compute.from_dict(known["compute"])
        known["teachers"] = PoolSummary(**{f.name: v for f in fields(PoolSummary)
                                           if (v := (known.get("teachers") or {}).get(f.name)) is not None})
        return cls(**known)


@dataclass
class EvalSettings:
    """The protocol of an evaluation: protocols (the first is the headline), architectures, budget, test split."""

    protocols: list[str]
    models: list[str]
    epochs: int
    runs: int
    lr: float
    batch_size: int
    augmentation: str
    kd_temperature: float
    test_split: str | None
    test_size: int
    teachers: int

    @property
    def headline(self) -> str:
        return self.protocols[0]

    def to_dict(self) -> dict:
        return {"label_modes": self.protocols, "headline_label_mode": self.headline, "eval_models": self.models,
                "eval_epochs": self.epochs, "num_eval_runs": self.runs, "lr_net": self.lr,
                "batch_size": self.batch_size, "dsa_strategy": self.augmentation,
                "kd_temperature": self.kd_temperature, "test_split": self.test_split, "test_size": self.test_size,
                "teachers": self.teachers}

    @classmethod
    def from_dict(cls, entry: dict) -> "EvalSettings":
        return cls([PROTOCOL_ALIASES.get(p, p) for p in entry["label_modes"]], entry["eval_models"],
                   entry["eval_epochs"], entry["num_eval_runs"], entry["lr_net"], entry["batch_size"],
                   entry["dsa_strategy"], entry.get("kd_temperature", 4.0), entry.get("test_split"),
                   entry.get("test_size", 0), entry.get("teachers", 0))


Scores = dict[str, dict[str, dict[str, Summary]]]  # protocol -> set -> architecture -> runs


@dataclass
class EvalResults:
    """What `DistillationTrainer.evaluate` measured (`eval_results.json`).

    `scores[protocol][set][architecture]`; sets are `distilled`, `distilled_8bit` (the 8-bit `image` column),
    `random_subset` (the starting images, paired run by run with `distilled`) and `random_draws` (a new real subset
    per run). The JSON keeps the keys of version 1: `results.<set>.<architecture>` for the headline protocol,
    `results.label_modes.<protocol>...`, `results.paired_difference.<protocol>.<architecture>`."""

    dataset: str
    ipc: int
    model: str
    teacher: Summary
    scores: Scores
    settings: EvalSettings
    args: dict = field(default_factory=dict)
    compute: Compute | None = None

    @property
    def headline(self) -> dict[str, dict[str, Summary]]:
        """The sets' scores under the headline protocol."""
        return self.scores[self.settings.headline]

    @property
    def paired_difference(self) -> dict[str, dict[str, Summary]]:
        """distilled - random_subset, run by run (same model seeds), per protocol and architecture."""
        return {protocol: {model: Summary.of([d - r for d, r in zip(sets["distilled"][model].runs,
                                                                     sets["random_subset"][model].runs)])
                           for model in sets["distilled"]}
                for protocol, sets in self.scores.items() if "random_subset" in sets and "distilled" in sets}

    def to_dict(self) -> dict:
        def nested(sets: dict) -> dict:
            return {name: {model: s.to_dict() for model, s in models.items()} for name, models in sets.items()}
        results = {"teacher": self.teacher.to_dict(), **nested(self.headline),
                   "label_modes": {protocol: nested(sets) for protocol, sets in self.scores.items()},
                   "paired_difference": nested(self.paired_difference)}
        return {"version": RESULTS_VERSION, "dataset": self.dataset, "ipc": self.ipc, "model": self.model,
                "results": results, "protocol": self.settings.to_dict(), "args": self.args,
                "compute": self.compute.to_dict() if self.compute else None}

    @classmethod
    def from_dict(cls, entry: dict) -> "EvalResults":
        """Read `eval_results.json` of this version or of version 1 (whose protocol `logits_l1` is `apm`)."""
        scores = {PROTOCOL_ALIASES.get(protocol, protocol): {name: {model: Summary.from_dict(s)
                                                                      for model, s in models.items()}
                                                               for name, models in sets.items()}
                  for protocol, sets in entry["results"]["label_modes"].items()}
        return cls(entry["dataset"], entry["ipc"], entry["model"], Summary.from_dict(entry["results"]["teacher"]),
                   scores, EvalSettings.from_dict(entry["protocol"]), entry.get("args", {}),
                   Compute.from_dict(entry["compute"]) if entry.get("compute") else None)
