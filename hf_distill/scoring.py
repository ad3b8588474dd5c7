"""Score any distilled set under one named protocol, next to its baselines: `evaluate_set` and the leaderboard.

A set is one of: a folder or Hub repo written by hf_distill (exact floats, soft labels, preprocessing); any
`datasets` image-classification set (hard labels, and a `soft_label` column if it has one); or a safetensors release
of another method (`images` in that method's normalised or ZCA space, `labels`, and `mean`/`std` where known).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open
from tqdm.auto import tqdm

import datasets

from .allocator import keep_freed_memory
from .augment import DEFAULT_STRATEGY
from .data import ImageClassificationData, column_array, find_columns, load_image_dataset
from .distilled import DISTILLED_FILE, load_distilled
from .evaluation import EvalJob, random_draw, summarize, train_and_test
from .files import check_tensors_file, write_json
from .hub import is_repo_id
from .image_store import decoded_images
from .models import create_model
from .preprocessing import Preprocessing
from .teacher_repos import pool_size, resolve_teacher_pool
from .teachers import check_teacher, load_preprocessing, load_teacher, teacher_dir
from .trainer import hardware_description
from .training import FitConfig, accuracy, predict

RANDOM_SUBSET_ROW = "random subset, new draw per run"


@dataclass(frozen=True)
class Protocol:
    """How a set is scored: the targets, the loss and the training budget of each fresh model."""

    name: str
    label_mode: str  # 'logits_l1', 'hard' or 'kd' (see evaluation.LABEL_MODE_LOSSES)
    epochs: int
    lr: float
    description: str

    @property
    def soft(self) -> bool:
        return self.label_mode != "hard"


PROTOCOLS = {
    "apm": Protocol("apm", "logits_l1", 1000, 0.02, "L1 to the teacher logits, DSA, SGD momentum 0.9 wd 5e-4, "
                                                   "lr x0.1 at half (APM)"),
    "hard": Protocol("hard", "hard", 1000, 0.01, "cross-entropy on class ids, DSA, SGD momentum 0.9 wd 5e-4, "
                                                 "lr x0.1 at half (DC, DSA, DM, MTT)"),
    "kd": Protocol("kd", "kd", 1000, 0.02, "KL to the teacher logits at temperature 4, DSA, SGD momentum 0.9 wd 5e-4, "
                                           "lr x0.1 at half"),
}


@dataclass
class SetToScore:
    """A synthetic set in model input space, with the preprocessing that maps real pixels to that space."""

    name: str
    method: str
    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor | None
    preprocessing: Preprocessing
    kind: str
    fingerprint: str  # `fingerprint` of the set as stored (before any preprocessing fit here)

    @property
    def ipc(self) -> int:
        return round(len(self.labels) / max(1, len(self.labels.unique())))


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


@dataclass
class SetEvaluation:
    """The rows of one `evaluate_set` call (the set, its baselines) and what could not be scored, and why."""

    rows: list[ScoreRow]
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        return render_rows(self.rows) + "".join(f"\n- {note}" for note in self.notes)


def fingerprint(tensors: Iterable[torch.Tensor | None]) -> str:
    """12 hex digits of the SHA-256 of the tensors' dtypes, shapes and bytes (None entries skipped): rows with one
    fingerprint scored the same data, whatever their set names."""
    digest = hashlib.sha256()
    for tensor in filter(lambda t: t is not None, tensors):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def model_fingerprint(model: str) -> str:
    """12 hex digits of the SHA-256 of architecture `model`'s modules and initial weights at seed 0, built for 10
    classes of 3 x 32 x 32 images: it changes with the model's layers, shapes or init (not with a change to its
    forward alone), so rows trained on another definition of a model under the same name are told apart."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = create_model(model, 10, 3, 32)
    return hashlib.sha256((repr(net) + fingerprint(net.state_dict().values())).encode()).hexdigest()[:12]


def read_set(source: str, data: ImageClassificationData, zca: bool | None = None, method: str | None = None,
             split: str = "train") -> SetToScore:
    """The set at `source` (see the module docstring); `zca` says whether a `datasets` set or a release is whitened
    (default: from the release's metadata, else no)."""
    path = Path(source).expanduser()
    if path.suffix == ".safetensors" and path.name != DISTILLED_FILE:
        return _read_release(path, data, zca, method)
    if (path / DISTILLED_FILE).exists() or path.name == DISTILLED_FILE or (not path.exists() and is_repo_id(source)
                                                                          and _has_distilled_file(source)):
        distilled = load_distilled(source)
        name = source if not path.exists() else path.parent.name if path.name in ("distilled", DISTILLED_FILE) else path.name
        return SetToScore(name, method or distilled.metadata.get("method", "APM"),
                          distilled.images, distilled.labels, distilled.soft_labels, distilled.preprocessing,
                          "hf_distill set", fingerprint([distilled.images, distilled.labels, distilled.soft_labels]))
    return _read_image_dataset(source, data, bool(zca), method, split)


def _has_distilled_file(repo_id: str) -> bool:
    from huggingface_hub import file_exists
    try:
        return file_exists(repo_id, DISTILLED_FILE, repo_type="dataset")
    except Exception:  # offline or unknown repo: it is then read with `datasets`, which reports the problem
        return False


def _read_release(path: Path, data: ImageClassificationData, zca: bool | None, method: str | None) -> SetToScore:
    check_tensors_file(path, "Pass a complete .safetensors release.")
    with safe_open(path, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata() or {}
    if "images" not in tensors or "labels" not in tensors:
        raise ValueError(f"{path} has tensors {sorted(tensors)}; a release needs 'images' (N, C, H, W) and 'labels'.")
    labels, soft = tensors["labels"], None
    if labels.ndim == 2:  # learned or soft labels, one row per image
        soft = labels.float()
        labels = tensors.get("labels_hard", labels.argmax(1))
    zca = str(meta.get("zca", "")).lower().startswith("yes") if zca is None else zca
    if zca:
        preprocessing = Preprocessing.fit(data.train_images, zca=True)
    elif "mean" in tensors and "std" in tensors:
        preprocessing = Preprocessing(tensors["mean"].float(), tensors["std"].float())
    else:
        raise ValueError(f"{path} says neither its mean/std nor that it is ZCA-whitened; pass --zca if it is.")
    name = path.stem
    return SetToScore(name, method or meta.get("method", name.split("_")[0]).split(" ")[0], tensors["images"].float(),
                      labels.long(), soft, preprocessing, "release (safetensors)",
                      fingerprint(tensors[k] for k in sorted(tensors)))


def _read_image_dataset(source: str, data: ImageClassificationData, zca: bool, method: str | None,
                        split: str) -> SetToScore:
    ds = datasets.load_dataset(os.path.expanduser(source), split=split)
    image_column, label_column = find_columns(ds.features, None, None)
    images, _ = decoded_images(ds, image_column, split, data.resolution, "L" if data.channels == 1 else "RGB")
    labels = torch.as_tensor(column_array(ds, label_column)).long()
    soft = torch.as_tensor(column_array(ds, "soft_label")).float() if "soft_label" in ds.features else None
    preprocessing = Preprocessing.fit(data.train_images, zca=zca)
    return SetToScore(Path(source).name or source, method or "unknown", preprocessing(images), labels, soft,
                      preprocessing, "datasets image set", fingerprint([images, labels, soft]))


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
    """
    keep_freed_memory()
    data = dataset if isinstance(dataset, ImageClassificationData) else load_image_dataset(dataset, test_split=test_split)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scored = read_set(set_source, data, zca, method)
    if tuple(scored.images.shape[1:]) != (data.channels, data.resolution, data.resolution):
        raise ValueError(f"The set's images are {tuple(scored.images.shape[1:])} but {data.source['dataset']!r} has "
                         f"{(data.channels, data.resolution, data.resolution)}; score it on its own source dataset.")
    unknown = [p for p in protocols or [] if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"Unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}.")
    notes = []
    protocols = protocols or (["apm", "hard"] if scored.soft_labels is not None else ["hard"])
    if scored.soft_labels is None and any(PROTOCOLS[p].soft for p in protocols):
        notes.append(f"{scored.name} has no soft labels: scored with `hard` only.")
        protocols = ["hard"]
    pool, pool_preprocessing = load_pool(teachers, data, device) if teachers else ([], None)
    pool_print = pool_fingerprint(pool) if pool else None
    models = models or ["convnet4" if data.resolution >= 64 else "convnet3"]
    hardware, split = hardware_description(), str(data.source.get("test_split"))
    source = dict(dataset=str(data.source.get("dataset")), test_size=len(data.test_labels))
    rows = []
    if pool:
        scores = [accuracy(t, data.test_images, data.test_labels, pool_preprocessing) for t in pool]
        rows.append(ScoreRow(f"teachers ({len(pool)})", "teacher", 0, "-", "-", **summarize(scores), test_split=split,
                             hardware=hardware, epochs=0, lr=0.0, fingerprint=pool_print, **source))
    jobs = [(p, m) for p in protocols for m in models]
    bar = tqdm(total=len(jobs) * num_runs * 2, desc="evaluate")
    for name, model in jobs:
        protocol = PROTOCOLS[name]
        config = FitConfig(epochs=epochs or protocol.epochs, lr=lr or protocol.lr, batch_size=batch_size,
                           dsa_strategy=dsa_strategy, compile=torch_compile)
        row = dict(protocol=name, model=model, test_split=split, hardware=hardware, epochs=config.epochs, lr=config.lr,
                   model_fingerprint=model_fingerprint(model), **source)
        runs, start = [], time.perf_counter()
        for run in range(num_runs):
            runs.append(train_and_test(EvalJob("set", protocol.label_mode, model, run), scored.images, scored.labels,
                                       scored.labels if scored.soft_labels is None else scored.soft_labels, data,
                                       scored.preprocessing, config, seed, device=device))
            bar.update()
        rows.append(ScoreRow(scored.name, scored.method, scored.ipc, **summarize(runs), **row,
                             seconds=time.perf_counter() - start, fingerprint=scored.fingerprint))
        if not random_subset:
            bar.update(num_runs)
            continue
        if protocol.soft and not pool:
            notes.append(f"No random-subset row under `{name}`: its soft labels need a teacher; pass --teachers.")
            bar.update(num_runs)
            continue
        runs, start = [], time.perf_counter()
        for run in range(num_runs):
            index = random_draw(data.train_labels, scored.ipc, data.num_classes, seed, run)
            images = scored.preprocessing(data.train_images[index])
            targets = predict(pool[0], pool_preprocessing(data.train_images[index]).to(device)) if protocol.soft \
                else data.train_labels[index]
            runs.append(train_and_test(EvalJob("random_subset", protocol.label_mode, model, run), images,
                                       data.train_labels[index], targets, data, scored.preprocessing, config, seed,
                                       device=device))
            bar.update()
        rows.append(ScoreRow(RANDOM_SUBSET_ROW, "real images", scored.ipc, **summarize(runs), **row,
                             seconds=time.perf_counter() - start, fingerprint=pool_print if protocol.soft else None))
    bar.close()
    return SetEvaluation(rows, notes)


def load_pool(teachers: str, data: ImageClassificationData,
              device: torch.device) -> tuple[list[torch.nn.Module], Preprocessing]:
    """The teachers of a pool (a folder or 'hf-hub:org/name') and the preprocessing they were trained with."""
    root = resolve_teacher_pool(teachers, 1)
    preprocessing = load_preprocessing(root)
    if preprocessing is None or pool_size(root) == 0:
        raise ValueError(f"No teacher pool in {teachers}; pass a folder written by hf-distill (preprocessing and "
                         f"teacher-000/, ...) or 'hf-hub:org/name'.")
    pool = []
    for i in range(pool_size(root)):
        model, config = load_teacher(teacher_dir(root, i), device)
        check_teacher(config, data, teacher_dir(root, i))
        pool.append(model)
    return pool, preprocessing


def pool_fingerprint(pool: list[torch.nn.Module]) -> str:
    """`fingerprint` of a teacher pool's weights and buffers: the print of its teachers' row and of the random-subset
    rows it labels."""
    return fingerprint(t for teacher in pool for t in teacher.state_dict().values())


def append_leaderboard(path: str | os.PathLike, rows: list[ScoreRow]) -> Path:
    """Add `rows` to the leaderboard JSON at `path` (created if needed), atomically; a row equal to one already there
    in every field but its time (a baseline scored again with the same seeds) is not added twice."""
    path = Path(path)
    existing = json.loads(path.read_text())["rows"] if path.exists() else []
    for row in map(asdict, rows):
        if _untimed(row) not in [_untimed(r) for r in existing]:
            existing.append(row)
    write_json(path, {"rows": existing})
    return path


def _untimed(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "seconds"}


def render_rows(rows: list[ScoreRow]) -> str:
    """A Markdown table of score rows."""
    lines = ["| set | method | IPC | protocol | model | top-1 % | runs | data (test images) | epochs | lr | time "
             "| fingerprint |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.set} | {r.method} | {r.ipc or '-'} | {r.protocol} | {r.model} | {r.mean:.1f} ± {r.std:.1f} "
                     f"| {len(r.runs)} | {source_name(r)} | {r.epochs or '-'} | {r.lr or '-'} | {_minutes(r.seconds)} "
                     f"| {r.fingerprint or '-'} |")
    return "\n".join(lines)


def source_name(row: ScoreRow) -> str:
    """The row's source dataset by its folder or repo name, with the size of the test split it was scored on."""
    name = Path(row.dataset.rstrip("/")).name if row.dataset else "?"
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
            lines.setdefault((r.dataset, r.protocol, r.ipc, r.set, r.method, r.epochs, r.fingerprint), {})[r.model] = r
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


def render_leaderboard(path: str | os.PathLike, by_architecture: bool = False) -> str:
    """The leaderboard JSON at `path` as a Markdown table, grouped by protocol and architecture, best first (or
    `render_by_architecture`)."""
    rows, stale = current_rows([ScoreRow(**row) for row in json.loads(Path(path).read_text())["rows"]])
    footer = f"\n\nHardware: {'; '.join(sorted({r.hardware for r in rows}))}."
    if stale:
        footer += (f"\n\nLeft out: {len(stale)} row(s) trained on another definition of "
                   f"{', '.join(sorted({r.model for r in stale}))} than the latest (`model_fingerprint`).")
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
