"""Score a synthetic set: train fresh models on it, test once on the real test split (APM protocol, spec §7)."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import statistics
from dataclasses import dataclass
from typing import Callable, ContextManager

import torch

from .data import ImageClassificationData
from .models import create_model
from .preprocessing import Preprocessing
from .training import FitConfig, accuracy, fit

LABEL_MODE_LOSSES = {"logits_l1": "l1", "kd": "kd", "hard": "ce"}
EVAL_SEED_OFFSET = 10_000
RANDOM_DRAW_OFFSET = 20_000  # seeds of the per-run random-subset draws


@dataclass
class EvalJob:
    """One evaluation model: which set, label mode, architecture and run index."""

    set_name: str
    label_mode: str
    model: str
    run: int


@dataclass
class EvalPlan:
    """Every evaluation model to train, each for `epochs` epochs of `steps_per_epoch` SGD steps."""

    jobs: list[EvalJob]
    epochs: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return len(self.jobs) * self.epochs * self.steps_per_epoch

    def describe(self) -> str:
        """One line: models by set and label mode, architectures, runs, epochs and steps."""
        modes: dict[str, list[str]] = {}
        for job in self.jobs:
            modes.setdefault(job.set_name, [])
            if job.label_mode not in modes[job.set_name]:
                modes[job.set_name].append(job.label_mode)
        sets = ", ".join(f"{name} ({' + '.join(m)})" for name, m in modes.items())
        architectures = sorted({job.model for job in self.jobs})
        runs = len({job.run for job in self.jobs})
        return (f"Evaluation plan: {len(self.jobs)} models = [{sets}] x {len(architectures)} architecture(s) "
                f"{architectures} x {runs} runs; each {self.epochs} epochs x {self.steps_per_epoch} steps: "
                f"{self.total_steps:,} training steps in all.")

    def estimate(self, seconds: float, world: int = 1, whole_model: bool = False) -> str:
        """The expected wall time on `world` processes, from the first model's first epoch (training only) or, with
        `whole_model`, from the first whole model (training and test scoring)."""
        models = math.ceil(len(self.jobs) / world)
        if whole_model:
            return (f"First evaluation model took {seconds:.1f} s with its test scoring: the evaluation should take "
                    f"about {format_duration(seconds * models)} ({len(self.jobs)} models on {world} process(es)).")
        return (f"First evaluation epoch took {seconds:.2f} s: training the {len(self.jobs)} models should take about "
                f"{format_duration(seconds * self.epochs * models)} on {world} process(es); test scoring comes on top.")


def format_duration(seconds: float) -> str:
    """'45 s', '12.5 min' or '3.2 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def check_ipc(labels: torch.Tensor, ipc: int, num_classes: int) -> None:
    """Raise if some class has fewer than `ipc` training images (real init and the random subset need them)."""
    counts = labels.bincount(minlength=num_classes)
    if counts.min() < ipc:
        c = int(counts.argmin())
        raise ValueError(f"Class {c} has {int(counts[c])} training images, fewer than ipc={ipc}: neither a real "
                         f"initialisation nor the random-subset baseline can be drawn. Lower --ipc.")


def sample_real_subset(labels: torch.Tensor, ipc: int, num_classes: int, generator: torch.Generator) -> torch.Tensor:
    """Indices of `ipc` random examples of each class, class-major."""
    check_ipc(labels, ipc, num_classes)
    by_class = labels.argsort(stable=True).split(labels.bincount(minlength=num_classes).tolist())
    return torch.cat([members[torch.randperm(len(members), generator=generator)[:ipc]] for members in by_class])


def random_draw(labels: torch.Tensor, ipc: int, num_classes: int, seed: int, run: int) -> torch.Tensor:
    """Indices of the random real subset of evaluation run `run`: a new draw for each run, so the spread of its
    scores includes the subset-to-subset spread."""
    return sample_real_subset(labels, ipc, num_classes, torch.Generator().manual_seed(seed + RANDOM_DRAW_OFFSET + run))


def train_and_test(
    job: EvalJob,
    images: torch.Tensor,
    labels: torch.Tensor,
    soft_labels: torch.Tensor,
    data: ImageClassificationData,
    preprocessing: Preprocessing,
    fit_config: FitConfig,
    seed: int,
    model_kwargs: dict | None = None,
    device: torch.device | str = "cpu",
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    on_epoch_end: Callable[[int], None] | None = None,
) -> float:
    """Train a fresh `job.model` on the set with the job's label mode; return its test top-1 (%), scored batch by
    batch. `on_epoch_end(epoch)` is called after each training epoch."""
    run_seed = seed + EVAL_SEED_OFFSET + job.run
    torch.manual_seed(run_seed)
    model = create_model(job.model, data.num_classes, data.channels, data.resolution, **(model_kwargs or {})).to(device)
    targets = labels if job.label_mode == "hard" else soft_labels
    config = dataclasses.replace(fit_config, loss=LABEL_MODE_LOSSES[job.label_mode])
    fit(model, images.to(device), targets.to(device), config, torch.Generator().manual_seed(run_seed), autocast=autocast,
        on_epoch_end=on_epoch_end)
    return accuracy(model, data.test_images, data.test_labels, preprocessing, autocast=autocast)


def summarize(runs: list[float]) -> dict:
    """mean, (sample) std and the runs, in percent."""
    return {"mean": statistics.fmean(runs), "std": statistics.stdev(runs) if len(runs) > 1 else 0.0, "runs": runs}


def assemble_results(jobs: list[EvalJob], scores: list[float], teacher_scores: list[float], headline_mode: str) -> dict:
    """Nest job scores as results.label_modes.<mode>.<set>.<model>, with the headline mode at the top level, and the
    paired differences distilled - random subset (run by run: same model seed, the subset being the distilled set's
    starting images) as results.paired_difference.<mode>.<model>."""
    by_key: dict[tuple, list[float]] = {}
    for job, score in sorted(zip(jobs, scores), key=lambda js: js[0].run):
        by_key.setdefault((job.label_mode, job.set_name, job.model), []).append(score)
    label_modes: dict = {}
    for (mode, set_name, model), runs in by_key.items():
        label_modes.setdefault(mode, {}).setdefault(set_name, {})[model] = summarize(runs)
    paired = {mode: {model: summarize([d - r for d, r in zip(sets["distilled"][model]["runs"],
                                                             sets["random_subset"][model]["runs"])])
                     for model in sets["distilled"]}
              for mode, sets in label_modes.items() if "random_subset" in sets}
    return {"teacher": summarize(teacher_scores), **label_modes[headline_mode], "label_modes": label_modes,
            "paired_difference": paired}


def verdict(difference: dict, label: str) -> str:
    """One sentence on whether a paired difference distilled - random subset (`label`: its label mode and model)
    exceeds its run-to-run spread."""
    mean, std, n = difference["mean"], difference["std"], len(difference["runs"])
    if n < 2:
        return f"Distilled - random subset ({label}): {mean:+.2f} points from one run, so no spread to compare it with."
    if abs(mean) <= std:
        return (f"Distilled - random subset ({label}): {mean:+.2f} +- {std:.2f} points over {n} paired runs, within its spread: "
                f"no difference is shown at this budget.")
    better = "better" if mean > 0 else "worse"
    return (f"Distilled - random subset ({label}): {mean:+.2f} +- {std:.2f} points over {n} paired runs, beyond its "
            f"spread: in these runs the distilled set did {better} than the same number of real images.")


TABLE_NAMES = {"distilled_8bit": "distilled, 8-bit", "random_subset": "random, paired (start images)",
               "random_draws": "random, new draw per run"}


def format_table(results: dict) -> str:
    """A short text table of the results, ending with the paired differences and a verdict on the headline one."""
    lines = [f"{'set (label mode)':<44}{'model':<18}{'top-1 % (mean +- std)':>24}",
             f"{'teacher':<44}{'':<18}{results['teacher']['mean']:>17.2f} +- {results['teacher']['std']:.2f}"]
    for mode, sets in results["label_modes"].items():
        for set_name, models in sets.items():
            for model, r in models.items():
                name = f"{TABLE_NAMES.get(set_name, set_name)} ({mode})"
                lines.append(f"{name:<44}{model:<18}{r['mean']:>17.2f} +- {r['std']:.2f}")
    paired = results.get("paired_difference", {})
    for mode, models in paired.items():
        for model, d in models.items():
            lines.append(f"{'distilled - random, paired (' + mode + ')':<44}{model:<18}{d['mean']:>+17.2f} +- {d['std']:.2f}")
    if paired:
        mode, models = next(iter(paired.items()))
        model, difference = next(iter(models.items()))
        lines.append(verdict(difference, f"{mode}, {model}"))
    return "\n".join(lines)


def tracker_scalars(results: dict) -> dict[str, float]:
    """The results' means as flat tracker scalars: eval/teacher, eval/<mode>/<set>/<model>,
    eval/<mode>/paired_difference/<model>."""
    scalars = {"eval/teacher": results["teacher"]["mean"]}
    for mode, sets in results["label_modes"].items():
        for set_name, models in sets.items():
            scalars.update({f"eval/{mode}/{set_name}/{model}": r["mean"] for model, r in models.items()})
    for mode, models in results.get("paired_difference", {}).items():
        scalars.update({f"eval/{mode}/paired_difference/{model}": d["mean"] for model, d in models.items()})
    return scalars
