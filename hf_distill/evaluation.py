"""Score sets: train fresh models on them under a named `Protocol` and test once on the real test split (APM
protocol, spec §7). The one engine behind `DistillationTrainer.evaluate` and `hf-distill evaluate`."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from typing import Callable, ContextManager, Mapping, Union

import torch
import torch.nn as nn
from accelerate import Accelerator
from accelerate.utils import gather_object
from tqdm.auto import tqdm

from .augment import DEFAULT_STRATEGY
from .data import ImageClassificationData
from .distilled import DistilledSet
from .models import create_model
from .preprocessing import Preprocessing
from .records import PROTOCOL_ALIASES, EvalResults, EvalSettings, Summary
from .training import FitConfig, accuracy, fit, predict

logger = logging.getLogger(__name__)

EVAL_SEED_OFFSET = 10_000
RANDOM_DRAW_OFFSET = 20_000  # seeds of the per-run random-subset draws
NO_AUGMENTATION = "none"  # an augmentation value that trains evaluation models on the images as they are


@dataclass(frozen=True)
class Protocol:
    """How a set is scored: the loss and targets, and the training budget of each fresh model (SGD momentum 0.9,
    weight decay 5e-4, lr x0.1 at half)."""

    name: str
    loss: str  # 'l1' or 'kd' to the teacher logits (soft labels), 'ce' on class ids
    epochs: int
    lr: float
    augmentation: str = DEFAULT_STRATEGY  # DSA op groups, or 'none'
    kd_temperature: float = 4.0

    @property
    def soft(self) -> bool:
        """Whether the targets are the teacher's logits (else class ids)."""
        return self.loss != "ce"

    def describe(self) -> str:
        targets = {"l1": "L1 to the teacher logits", "ce": "cross-entropy on class ids",
                   "kd": f"KL to the teacher logits at temperature {self.kd_temperature:g}"}[self.loss]
        augmentation = "no augmentation" if self.augmentation == NO_AUGMENTATION else "DSA"
        return f"{targets}, {augmentation}, {self.epochs} epochs, lr {self.lr:g}"

    def fit_config(self, batch_size: int, compile: bool = False) -> FitConfig:
        return FitConfig(epochs=self.epochs, lr=self.lr, batch_size=batch_size, loss=self.loss,
                         augment=self.augmentation != NO_AUGMENTATION, dsa_strategy=self.augmentation,
                         kd_temperature=self.kd_temperature, compile=compile)


# The named protocols of `hf-distill evaluate` (apm: APM's; hard: DC, DSA, DM, MTT's). A run's own evaluation uses
# these names with its --eval_epochs, --eval_lr and --eval_dsa_strategy.
PROTOCOLS = {
    "apm": Protocol("apm", "l1", 1000, 0.02),
    "hard": Protocol("hard", "ce", 1000, 0.01),
    "kd": Protocol("kd", "kd", 1000, 0.02),
}


def protocol_name(name: str) -> str:
    """The protocol's name in `PROTOCOLS`, from it or an alias; raise for anything else."""
    name = PROTOCOL_ALIASES.get(name, name)
    if name not in PROTOCOLS:
        raise ValueError(f"Unknown protocol {name!r}; choose from {list(PROTOCOLS)} (or {list(PROTOCOL_ALIASES)}).")
    return name


def get_protocol(name: str, **changes) -> Protocol:
    """The protocol `name` (or an alias) with `changes` (epochs, lr, augmentation, kd_temperature) where not None."""
    return dataclasses.replace(PROTOCOLS[protocol_name(name)], **{k: v for k, v in changes.items() if v is not None})


@dataclass
class LabelledSet:
    """Images in model input space, their class ids and, for soft-label protocols, the teacher's logits."""

    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor | None = None


SetSource = Union[LabelledSet, Callable[[int], LabelledSet]]  # one set, or a new one for each run (random draws)


@dataclass
class EvalJob:
    """One evaluation model: which set, protocol, architecture and run index."""

    set_name: str
    protocol: str
    model: str
    run: int


@dataclass
class JobScore:
    """The test top-1 (%) of one job's model, and the seconds it took to train and test."""

    job: EvalJob
    accuracy: float
    seconds: float


@dataclass
class EvalPlan:
    """Every evaluation model to train, each for its protocol's epochs of `steps_per_epoch` SGD steps."""

    jobs: list[EvalJob]
    protocols: Mapping[str, Protocol]
    steps_per_epoch: int

    @property
    def total_epochs(self) -> int:
        return sum(self.protocols[job.protocol].epochs for job in self.jobs)

    def describe(self) -> str:
        """One line: models by set and protocol, architectures, runs, epochs and steps."""
        modes: dict[str, list[str]] = {}
        for job in self.jobs:
            modes.setdefault(job.set_name, [])
            if job.protocol not in modes[job.set_name]:
                modes[job.set_name].append(job.protocol)
        sets = ", ".join(f"{name} ({' + '.join(m)})" for name, m in modes.items())
        architectures = sorted({job.model for job in self.jobs})
        runs = len({job.run for job in self.jobs})
        epochs = sorted({self.protocols[job.protocol].epochs for job in self.jobs})
        return (f"Evaluation plan: {len(self.jobs)} models = [{sets}] x {len(architectures)} architecture(s) "
                f"{architectures} x {runs} runs; each {'/'.join(map(str, epochs))} epochs x {self.steps_per_epoch} "
                f"steps: {self.total_epochs * self.steps_per_epoch:,} training steps in all.")

    def estimate(self, seconds: float, world: int = 1, whole_model: bool = False, compiled: bool = False) -> str:
        """The expected wall time on `world` processes, from the first model's first epoch (training only; its second
        epoch when `compiled`, since the first one compiles) or, with `whole_model`, from the first whole model
        (training and test scoring, compiling included when `compiled`). The first model is of the first architecture."""
        models = math.ceil(len(self.jobs) / world)
        first, others = self.jobs[0].model, len({job.model for job in self.jobs}) - 1
        other = [f"measured on {first}: the {others} other architecture(s) may cost far more or less"] if others else []
        if whole_model:
            caveats = ([f"it includes compiling {first}"] if compiled else []) + other
            caveat = f" ({'; '.join(caveats)})" if caveats else ""
            return (f"First evaluation model took {seconds:.1f} s with its test scoring: the evaluation should take "
                    f"about {format_duration(seconds * models)} ({len(self.jobs)} models on {world} process(es))"
                    f"{caveat}.")
        epochs = self.total_epochs / len(self.jobs) * models
        caveat = f" ({other[0]})" if other else ""
        return (f"{'Second' if compiled else 'First'} evaluation epoch took {seconds:.2f} s: training the "
                f"{len(self.jobs)} models should take about {format_duration(seconds * epochs)} on {world} process(es); "
                f"{'compiling and test scoring come' if compiled else 'test scoring comes'} on top{caveat}.")


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


def real_start(data: ImageClassificationData, ipc: int, preprocessing: Preprocessing,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A run's starting images under `--init real`, in model input space, and their class ids: `ipc` train images per
    class drawn with `generator`. The paired random-subset baseline is these same images."""
    index = sample_real_subset(data.train_labels, ipc, data.num_classes, generator)
    return preprocessing(data.train_images[index]), data.train_labels[index]


def random_draw(labels: torch.Tensor, ipc: int, num_classes: int, seed: int, run: int) -> torch.Tensor:
    """Indices of the random real subset of evaluation run `run`: a new draw for each run, so the spread of its
    scores includes the subset-to-subset spread."""
    return sample_real_subset(labels, ipc, num_classes, torch.Generator().manual_seed(seed + RANDOM_DRAW_OFFSET + run))


def random_draws(data: ImageClassificationData, ipc: int, seed: int, preprocessing: Preprocessing,
                 teacher: nn.Module | None = None, teacher_preprocessing: Preprocessing | None = None,
                 device: torch.device | str = "cpu",
                 autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> Callable[[int], LabelledSet]:
    """The random real subset of each run (`random_draw`), in `preprocessing`'s space, labelled by `teacher` (seeing
    the images through `teacher_preprocessing`, default the same) when one is given."""
    def draw(run: int) -> LabelledSet:
        index = random_draw(data.train_labels, ipc, data.num_classes, seed, run)
        images = preprocessing(data.train_images[index])
        soft = None
        if teacher is not None:
            seen = images if teacher_preprocessing is None else teacher_preprocessing(data.train_images[index])
            soft = predict(teacher, seen.to(device), autocast=autocast)
        return LabelledSet(images, data.train_labels[index], soft)
    return draw


HEADLINE_ONLY = ("distilled_8bit", "random_draws")  # scored under the headline protocol only, to bound the cost


def distilled_sets(distilled: DistilledSet, data: ImageClassificationData, teacher: nn.Module, seed: int,
                   device: torch.device | str = "cpu",
                   autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> dict[str, SetSource]:
    """What a run's evaluation scores: `distilled`; `distilled_8bit` (the published `image` column: 8-bit pixels
    preprocessed again, same soft labels); `random_subset` (real images drawn with `seed`, the starting images under
    `--init real`, labelled by `teacher`, paired run by run with `distilled`); `random_draws` (a new real subset per
    run, labelled by `teacher`)."""
    preprocessing = distilled.preprocessing
    subset_images, subset_labels = real_start(data, distilled.ipc, preprocessing, torch.Generator().manual_seed(seed))
    return {
        "distilled": LabelledSet(distilled.images, distilled.labels, distilled.soft_labels),
        "distilled_8bit": LabelledSet(preprocessing(distilled.pixels_uint8()), distilled.labels, distilled.soft_labels),
        "random_subset": LabelledSet(subset_images, subset_labels,
                                     predict(teacher, subset_images, autocast=autocast)),
        "random_draws": random_draws(data, distilled.ipc, seed, preprocessing, teacher, device=device,
                                     autocast=autocast),
    }


def plan_jobs(sets: Mapping[str, SetSource], protocols: list[str], models: list[str], runs: int) -> list[EvalJob]:
    """Every (set, protocol, architecture, run), protocols outermost; `HEADLINE_ONLY` sets under the first protocol."""
    return [EvalJob(s, p, m, r) for p in protocols for s in sets for m in models for r in range(runs)
            if s not in HEADLINE_ONLY or p == protocols[0]]


def train_and_test(
    job: EvalJob,
    labelled: LabelledSet,
    protocol: Protocol,
    data: ImageClassificationData,
    preprocessing: Preprocessing,
    seed: int,
    batch_size: int = 256,
    compile: bool = False,
    model_kwargs: dict | None = None,
    device: torch.device | str = "cpu",
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    on_epoch_end: Callable[[int], None] | None = None,
) -> float:
    """Train a fresh `job.model` on the set under `protocol`; return its test top-1 (%), scored batch by batch.
    `on_epoch_end(epoch)` is called after each training epoch."""
    run_seed = seed + EVAL_SEED_OFFSET + job.run
    torch.manual_seed(run_seed)
    model = create_model(job.model, data.num_classes, data.channels, data.resolution, **(model_kwargs or {})).to(device)
    if protocol.soft and labelled.soft_labels is None:
        raise ValueError(f"Protocol {protocol.name!r} trains on teacher logits, but set {job.set_name!r} has none.")
    targets = labelled.soft_labels if protocol.soft else labelled.labels
    fit(model, labelled.images.to(device), targets.to(device), protocol.fit_config(batch_size, compile),
        torch.Generator().manual_seed(run_seed), autocast=autocast, on_epoch_end=on_epoch_end)
    return accuracy(model, data.test_images, data.test_labels, preprocessing, autocast=autocast)


def evaluate_jobs(
    jobs: list[EvalJob],
    sets: Mapping[str, SetSource],
    protocols: Mapping[str, Protocol],
    data: ImageClassificationData,
    preprocessing: Preprocessing,
    seed: int,
    batch_size: int = 256,
    compile: bool = False,
    model_kwargs: Mapping[str, dict] | None = None,
    device: torch.device | str = "cpu",
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    shard: tuple[int, int] = (0, 1),
    gather: Callable[[list], list] | None = None,
    on_score: Callable[[JobScore], None] | None = None,
) -> list[JobScore]:
    """Train and test every job (this process takes `jobs[rank::world]` of `shard`; `gather` collects the scores of
    all processes) and return their scores in the order of `jobs`. Logs the plan and, from the first model, the
    expected duration.

    Args:
        sets: by name, a `LabelledSet` or a function of the run index giving one (a new draw per run).
        protocols: by name, the protocol of each `job.protocol`.
        model_kwargs: keyword arguments of `create_model` by architecture (default none).
        on_score: called with each score of this process as soon as its model is tested (to keep it at once).
    """
    rank, world = shard
    main = rank == 0
    first = next((s for s in sets.values() if isinstance(s, LabelledSet)), None) or next(iter(sets.values()))(0)
    plan = EvalPlan(jobs, protocols, math.ceil(len(first.labels) / batch_size))
    if main:
        logger.info(plan.describe())
    mine: list[tuple[int, JobScore]] = []
    for index in tqdm(range(rank, len(jobs), world), desc="evaluate", disable=not main):
        job, start = jobs[index], time.perf_counter()
        source = sets[job.set_name]
        labelled = source if isinstance(source, LabelledSet) else source(job.run)
        hook = _estimate_after_first_epoch(plan, world, compile) if not mine and main else None
        score = train_and_test(job, labelled, protocols[job.protocol], data, preprocessing, seed, batch_size, compile,
                               (model_kwargs or {}).get(job.model), device, autocast, hook)
        mine.append((index, JobScore(job, score, time.perf_counter() - start)))
        if on_score is not None:
            on_score(mine[-1][1])
        if len(mine) == 1 and main:
            logger.info(plan.estimate(mine[0][1].seconds, world, whole_model=True, compiled=compile))
    scores = dict(gather(mine) if gather is not None and world > 1 else mine)
    return [scores[i] for i in range(len(jobs))]


def evaluate_distilled(distilled: DistilledSet, data: ImageClassificationData, teachers: list[nn.Module],
                       settings: EvalSettings, seed: int, compile: bool, model_kwargs: Mapping[str, dict],
                       accelerator: Accelerator) -> tuple[list[JobScore], list[float]]:
    """A run's evaluation: the scores of `distilled` and its real baselines (`distilled_sets`) under each protocol of
    `settings` on each architecture (its processes share the models), and the teachers' test accuracies."""
    acc, preprocessing = accelerator, distilled.preprocessing
    sets = distilled_sets(distilled, data, teachers[0], seed, acc.device, acc.autocast)
    protocols = {name: get_protocol(name, epochs=settings.epochs, lr=settings.lr, augmentation=settings.augmentation,
                                    kd_temperature=settings.kd_temperature) for name in settings.protocols}
    jobs = plan_jobs(sets, settings.protocols, settings.models, settings.runs)
    scores = evaluate_jobs(jobs, sets, protocols, data, preprocessing, seed, settings.batch_size, compile, model_kwargs,
                           acc.device, acc.autocast, (acc.process_index, acc.num_processes), gather_object)
    return scores, [accuracy(t, data.test_images, data.test_labels, preprocessing, acc.autocast) for t in teachers]


def _estimate_after_first_epoch(plan: EvalPlan, world: int, compiled: bool) -> Callable[[int], None]:
    """An `on_epoch_end` hook that logs the evaluation's expected duration once its first epoch is done (its second,
    timed alone, when `compiled`: the first one compiles the model)."""
    last_end = time.perf_counter()

    def hook(epoch: int) -> None:
        nonlocal last_end
        now = time.perf_counter()
        if epoch == 1 + compiled:
            logger.info(plan.estimate(now - last_end, world, compiled=compiled))
        last_end = now
    return hook


def collect(scores: list[JobScore]) -> dict[str, dict[str, dict[str, Summary]]]:
    """Job scores as `[protocol][set][architecture]` summaries, runs in run order."""
    by_key: dict[tuple, list[float]] = {}
    for score in sorted(scores, key=lambda s: s.job.run):
        by_key.setdefault((score.job.protocol, score.job.set_name, score.job.model), []).append(score.accuracy)
    nested: dict = {}
    for (protocol, set_name, model), runs in by_key.items():
        nested.setdefault(protocol, {}).setdefault(set_name, {})[model] = Summary.of(runs)
    return nested


def verdict(difference: Summary, label: str) -> str:
    """One sentence on whether a paired difference distilled - random subset (`label`: its protocol and model)
    exceeds its run-to-run spread."""
    mean, std, n = difference.mean, difference.std, len(difference.runs)
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


def format_table(results: EvalResults) -> str:
    """A short text table of the results, ending with the paired differences and a verdict on the headline one."""
    lines = [f"{'set (protocol)':<44}{'model':<18}{'top-1 % (mean +- std)':>24}",
             f"{'teacher':<44}{'':<18}{results.teacher.mean:>17.2f} +- {results.teacher.std:.2f}"]
    for protocol, sets in results.scores.items():
        for set_name, models in sets.items():
            for model, r in models.items():
                name = f"{TABLE_NAMES.get(set_name, set_name)} ({protocol})"
                lines.append(f"{name:<44}{model:<18}{r.mean:>17.2f} +- {r.std:.2f}")
    paired = results.paired_difference
    for protocol, models in paired.items():
        for model, d in models.items():
            lines.append(f"{'distilled - random, paired (' + protocol + ')':<44}{model:<18}{d.mean:>+17.2f} +- {d.std:.2f}")
    if paired:
        protocol, models = next(iter(paired.items()))
        model, difference = next(iter(models.items()))
        lines.append(verdict(difference, f"{protocol}, {model}"))
    return "\n".join(lines)


def tracker_scalars(results: EvalResults) -> dict[str, float]:
    """The results' means as flat tracker scalars: eval/teacher, eval/<protocol>/<set>/<model>,
    eval/<protocol>/paired_difference/<model>."""
    scalars = {"eval/teacher": results.teacher.mean}
    for protocol, sets in results.scores.items():
        for set_name, models in sets.items():
            scalars.update({f"eval/{protocol}/{set_name}/{model}": r.mean for model, r in models.items()})
    for protocol, models in results.paired_difference.items():
        scalars.update({f"eval/{protocol}/paired_difference/{model}": d.mean for model, d in models.items()})
    return scalars
