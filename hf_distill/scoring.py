"""Score any distilled set under named protocols, next to its baselines: `evaluate_set` (`hf-distill evaluate`),
with the rows DD-Ranking's scores need (`ranking`) and a leaderboard file that keeps every finished row."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import time
from dataclasses import dataclass, field

import torch

from .allocator import keep_freed_memory
from .augment import DEFAULT_STRATEGY
from .data import ImageClassificationData, load_image_dataset
from .evaluation import (NO_AUGMENTATION, PROTOCOL_ALIASES, PROTOCOLS, EvalJob, JobScore, LabelledSet, evaluate_jobs,
                         get_protocol, protocol_name, random_draws)
from .host import hardware_description
from .leaderboard import ScoreRow, append_leaderboard, read_rows, render_rows, render_scores
from .models import create_model
from .ranking import FULL_DATA_METHOD, RANDOM_SUBSET_ROW, attach_scores, full_data_key
from .records import Summary
from .sets import SetToScore, fingerprint, read_set, same_space, space_name, space_warning
from .teachers import TEACHER_LR, TeacherPool, TeacherSpec, train_teacher
from .training import accuracy

NO_AUGMENTATION_SUFFIX = ", no augmentation"  # the protocol key of the scores' rows trained without augmentation
logger = logging.getLogger(__name__)


@dataclass
class SetEvaluation:
    """The rows of one `evaluate_set` call (the set, its baselines) and what could not be scored, and why."""

    rows: list[ScoreRow]
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        """The rows, DD-Ranking's scores where the rows allow them, and the notes."""
        scores = f"\n\n{render_scores(self.rows)}" if any(r.scores for r in self.rows) else ""
        return render_rows(self.rows) + scores + "".join(f"\n- {note}" for note in self.notes)


def model_fingerprint(model: str) -> str:
    """12 hex digits of the SHA-256 of architecture `model`'s modules and initial weights at seed 0, built for 10
    classes of 3 x 32 x 32 images: it changes with the model's layers, shapes or init (not with a change to its
    forward alone), so rows trained on another definition of a model under the same name are told apart."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model(model, 10, 3, 32)
    return hashlib.sha256((repr(net) + fingerprint(net.state_dict().values())).encode()).hexdigest()[:12]


FULL_DATA_EPOCHS = 50  # a full-train-split model trained here (the teachers' default `--teacher_epochs`)


def evaluate_set(
    set_source: str,
    dataset: str | ImageClassificationData,
    protocols: list[str] | None = None,
    models: list[str] | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    num_runs: int = 3,
    teachers: str | None = None,
    zca: bool | None = None,
    method: str | None = None,
    seed: int = 0,
    batch_size: int = 256,
    dsa_strategy: str = DEFAULT_STRATEGY,
    test_split: str | None = None,
    device: str | torch.device | None = None,
    random_subset: bool = True,
    torch_compile: bool = False,
    scores: bool = False,
    leaderboard: str | os.PathLike | None = None,
    label_column: str | None = None,
    image_column: str | None = None,
) -> SetEvaluation:
    """Score the set at `set_source` on `dataset`'s test split under each protocol and architecture, next to a random
    real subset at the same IPC (a new draw for every run, so its spread includes the subset-to-subset spread) and, for
    soft-label protocols, the teachers of `teachers` (a pool folder or 'hf-hub:org/name'), whose teacher 0 labels the
    random subsets.

    Args:
        protocols: names in `PROTOCOLS`; default `apm` for sets with soft labels (plus `hard`), else `hard`.
        epochs / lr: override the protocols' defaults.
        random_subset: score the random-subset baseline too (leave it out when another set of the same IPC has it).
        torch_compile: compile each fresh model's forward (`training.compile_model`); a graph is compiled once per
            architecture, mode (training, no-grad) and batch shape, and serves every later model that matches.
        scores: also train the rows DD-Ranking's scores need (`ranking`): `hard`, the first protocol without
            augmentation (set and random subset), and a full-train-split model per architecture.
        leaderboard: a leaderboard JSON: rows it already has are not trained again, and each new row is added to it
            as soon as its runs are done (a stopped evaluation resumes).
        label_column / image_column: the columns of a `datasets` set (default: by type, by name, or its only
            integer column).
    """
    data = dataset if isinstance(dataset, ImageClassificationData) else load_image_dataset(dataset, test_split=test_split)
    keep_freed_memory()  # after loading: what converting the data freed goes back to the system first
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scored = read_set(set_source, data, zca, method, label_column=label_column, image_column=image_column)
    if tuple(scored.images.shape[1:]) != (data.channels, data.resolution, data.resolution):
        raise ValueError(f"The set's images are {tuple(scored.images.shape[1:])} but {data.source['dataset']!r} has "
                         f"{(data.channels, data.resolution, data.resolution)}; score it on its own source dataset.")
    unknown = [p for p in protocols or [] if PROTOCOL_ALIASES.get(p, p) not in PROTOCOLS]
    if unknown:
        raise ValueError(f"Unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}.")
    notes = [warning] if (warning := space_warning(scored, data)) else []
    if warning:
        logger.warning(warning)
    names = [protocol_name(p) for p in protocols or (["apm", "hard"] if scored.soft_labels is not None else ["hard"])]
    if scored.soft_labels is None and any(PROTOCOLS[p].soft for p in names):
        notes.append(f"{scored.name} has no soft labels: scored with `hard` only.")
        names = ["hard"]
    names += ["hard"] if scores and "hard" not in names else []
    chosen = {name: get_protocol(name, epochs=epochs, lr=lr, augmentation=dsa_strategy) for name in names}
    if scores and dsa_strategy != NO_AUGMENTATION:  # the headline protocol without augmentation, for ARS
        chosen[names[0] + NO_AUGMENTATION_SUFFIX] = get_protocol(names[0], epochs=epochs, lr=lr,
                                                                 augmentation=NO_AUGMENTATION)
    pool = TeacherPool.open(teachers) if teachers else None
    teacher_models, teacher_configs = pool.load(data, device) if pool else ([], [])
    pool_print = pool_fingerprint(teacher_models) if pool else None
    models = models or ["convnet4" if data.resolution >= 64 else "convnet3"]
    model_prints = {model: model_fingerprint(model) for model in models}
    common = dict(test_split=str(data.source.get("test_split")), hardware=hardware_description(),
                  dataset=str(data.source.get("dataset")), test_size=len(data.test_labels))
    existing = read_rows(leaderboard) if leaderboard else []
    rows = []
    if pool:
        accuracies = [accuracy(t, data.test_images, data.test_labels, pool.preprocessing) for t in teacher_models]
        rows.append(ScoreRow(f"teachers ({len(accuracies)})", "teacher", 0, "-", "-", **_summary(accuracies), epochs=0,
                             lr=0.0, fingerprint=pool_print, space=space_name(pool.preprocessing), **common))
    common["space"] = space_name(scored.preprocessing)
    planned: dict[tuple[str, str, str], ScoreRow] = {}  # (set or random_subset, protocol key, model) -> row template
    for key, protocol in chosen.items():
        for model in models:
            row = dict(protocol=protocol.name, model=model, epochs=protocol.epochs, lr=protocol.lr, mean=0.0, std=0.0,
                       runs=[0.0] * num_runs, model_fingerprint=model_prints[model], **common,
                       augmentation=None if protocol.augmentation == DEFAULT_STRATEGY else protocol.augmentation)
            planned["set", key, model] = ScoreRow(scored.name, scored.method, scored.ipc,
                                                  fingerprint=scored.fingerprint, **row)
            if not random_subset:
                continue
            if protocol.soft and not pool:
                notes.append(f"No random-subset row under `{key}`: its soft labels need a teacher; pass --teachers.")
                continue
            planned["random_subset", key, model] = ScoreRow(RANDOM_SUBSET_ROW, "real images", scored.ipc,
                                                            fingerprint=pool_print if protocol.soft else None, **row)
    done = {group: next((r for r in existing if r.same_training(template)), None) for group, template in planned.items()}
    full = {model: _full_data_row(model, model_prints[model], data, scored, pool, teacher_models, teacher_configs,
                                  common, existing, notes) for model in models} if scores else {}
    kept = sum(row is not None for row in done.values()) + sum(source == "kept" for _, source in full.values())
    if kept:
        notes.append(f"{kept} row(s) already in {leaderboard} were not trained again.")
    to_train = [model for model, (_, source) in full.items() if source == "train"]
    if to_train:
        logger.info("Scores: after the evaluation models, %d full-train-split model(s) (%s), %d epochs on all %s "
                    "train images each.", len(to_train), ", ".join(to_train), FULL_DATA_EPOCHS,
                    f"{len(data.train_labels):,}")
    jobs = [EvalJob(set_name, key, model, run) for (set_name, key, model) in planned
            if done[set_name, key, model] is None for run in range(num_runs)]
    sets = {"set": LabelledSet(scored.images, scored.labels, scored.soft_labels),
            "random_subset": random_draws(data, scored.ipc, seed, scored.preprocessing,
                                          teacher_models[0] if pool else None, pool.preprocessing if pool else None,
                                          device)}
    finished: dict[tuple[str, str, str], list[JobScore]] = {}

    def keep(score: JobScore) -> None:
        group = (score.job.set_name, score.job.protocol, score.job.model)
        finished.setdefault(group, []).append(score)
        if len(finished[group]) == num_runs:
            runs = finished[group]
            done[group] = dataclasses.replace(planned[group], seconds=sum(s.seconds for s in runs),
                                              **_summary([s.accuracy for s in runs]))
            if leaderboard:
                append_leaderboard(leaderboard, [done[group]])

    if jobs:
        evaluate_jobs(jobs, sets, chosen, data, scored.preprocessing, seed, batch_size, torch_compile, device=device,
                      on_score=keep)
    for model in to_train:
        full[model] = _train_full_data(full[model][0], data, scored, seed, torch_compile, device, notes), "trained"
        if leaderboard:
            append_leaderboard(leaderboard, [full[model][0]])
    rows += [row for row, _ in full.values()] + [done[group] for group in planned]
    attach_scores(rows)
    if leaderboard:  # the teachers' row and a reused full-train-split row; rows already there are not added twice
        append_leaderboard(leaderboard, rows)
    return SetEvaluation(rows, notes)


def _full_data_row(model: str, model_print: str, data: ImageClassificationData, scored: SetToScore,
                   pool: TeacherPool | None, teachers: list[torch.nn.Module], configs: list, common: dict,
                   existing: list[ScoreRow], notes: list[str]) -> tuple[ScoreRow, str]:
    """The `hard` row of a `model` (whose `model_fingerprint` is `model_print`) trained on the whole train split in
    the set's input space (HLR's reference), and where it comes from: the one `existing` has ('kept'), one from a
    teacher of `pool` of this architecture (default width) and the set's preprocessing ('reused'), else a template
    still to train ('train': `_train_full_data`)."""
    template = ScoreRow(f"full train split ({len(data.train_labels):,} images)", FULL_DATA_METHOD, 0, "hard", model,
                        0.0, 0.0, [0.0], epochs=FULL_DATA_EPOCHS, lr=TEACHER_LR, model_fingerprint=model_print, **common)
    found = next((r for r in existing if r.method == FULL_DATA_METHOD and full_data_key(r) == full_data_key(template)),
                 None)
    if found is not None:
        return found, "kept"
    same_input = pool is not None and same_space(pool.preprocessing, scored.preprocessing)
    reusable = [(t, c) for t, c in zip(teachers, configs)
                if same_input and c.architecture == model and not c.model_kwargs]
    if not reusable:
        return template, "train"
    teacher, config = reusable[0]
    notes.append(f"Full-train-split row: a teacher of the pool ({model}, same preprocessing), reused.")
    return dataclasses.replace(template, epochs=config.epochs, lr=config.lr, **_summary(
        [accuracy(teacher, data.test_images, data.test_labels, scored.preprocessing)])), "reused"


def _train_full_data(template: ScoreRow, data: ImageClassificationData, scored: SetToScore, seed: int, compile: bool,
                     device: torch.device, notes: list[str]) -> ScoreRow:
    """`template`'s row, measured: a fresh model trained on every train image with hard labels (as a teacher)."""
    start = time.perf_counter()
    model, _ = train_teacher(TeacherSpec(template.model, {}, FULL_DATA_EPOCHS, seed), data, scored.preprocessing, device,
                             progress=f"full train split ({template.model})", compile=compile)
    top1 = accuracy(model, data.test_images, data.test_labels, scored.preprocessing)
    notes.append(f"Full-train-split row: a {template.model} trained here ({FULL_DATA_EPOCHS} epochs on all "
                 f"{len(data.train_labels):,} train images, hard labels, DSA, in the space of {scored.name}); a pool's "
                 f"teacher is reused only when it is a {template.model} of the default width with the set's "
                 f"preprocessing.")
    return dataclasses.replace(template, seconds=time.perf_counter() - start, **_summary([top1]))


def _summary(runs: list[float]) -> dict:
    return Summary.of(runs).to_dict()


def pool_fingerprint(pool: list[torch.nn.Module]) -> str:
    """`fingerprint` of a teacher pool's weights and buffers: the print of its teachers' row and of the random-subset
    rows it labels."""
    return fingerprint(t for teacher in pool for t in teacher.state_dict().values())


