"""Score any distilled set under named protocols, next to its baselines: reading sets of every layout, `evaluate_set`.

A set is one of: a folder or Hub repo written by hf_distill (exact floats, soft labels, preprocessing); any
`datasets` image-classification set (hard labels, and a `soft_label` column if it has one); or a safetensors release
of another method (`images` in that method's normalised or ZCA space, `labels`, and `mean`/`std` where known).
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

import datasets

from .allocator import keep_freed_memory
from .augment import DEFAULT_STRATEGY
from .data import ImageClassificationData, column_array, find_columns, load_image_dataset
from .distilled import DISTILLED_FILE, load_distilled
from .evaluation import (PROTOCOL_ALIASES, PROTOCOLS, EvalJob, LabelledSet, evaluate_jobs, get_protocol, protocol_name,
                         random_draws)
from .files import check_tensors_file
from .host import hardware_description
from .hub import is_repo_id
from .image_store import decoded_images
from .leaderboard import ScoreRow, render_rows
from .models import create_model
from .preprocessing import Preprocessing
from .records import Summary
from .teachers import TeacherPool
from .training import accuracy

RANDOM_SUBSET_ROW = "random subset, new draw per run"


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
        return SetToScore(name, method or distilled.metadata.method,
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
    data = dataset if isinstance(dataset, ImageClassificationData) else load_image_dataset(dataset, test_split=test_split)
    keep_freed_memory()  # after loading: what converting the data freed goes back to the system first
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    scored = read_set(set_source, data, zca, method)
    if tuple(scored.images.shape[1:]) != (data.channels, data.resolution, data.resolution):
        raise ValueError(f"The set's images are {tuple(scored.images.shape[1:])} but {data.source['dataset']!r} has "
                         f"{(data.channels, data.resolution, data.resolution)}; score it on its own source dataset.")
    unknown = [p for p in protocols or [] if PROTOCOL_ALIASES.get(p, p) not in PROTOCOLS]
    if unknown:
        raise ValueError(f"Unknown protocol(s) {unknown}; choose from {list(PROTOCOLS)}.")
    notes = []
    names = [protocol_name(p) for p in protocols or (["apm", "hard"] if scored.soft_labels is not None else ["hard"])]
    if scored.soft_labels is None and any(PROTOCOLS[p].soft for p in names):
        notes.append(f"{scored.name} has no soft labels: scored with `hard` only.")
        names = ["hard"]
    chosen = {name: get_protocol(name, epochs=epochs, lr=lr, augmentation=dsa_strategy) for name in names}
    pool = TeacherPool.open(teachers) if teachers else None
    teacher_models = pool.load(data, device)[0] if pool else []
    pool_print = pool_fingerprint(teacher_models) if pool else None
    models = models or ["convnet4" if data.resolution >= 64 else "convnet3"]
    common = dict(test_split=str(data.source.get("test_split")), hardware=hardware_description(),
                  dataset=str(data.source.get("dataset")), test_size=len(data.test_labels))
    rows = []
    if pool:
        scores = [accuracy(t, data.test_images, data.test_labels, pool.preprocessing) for t in teacher_models]
        rows.append(ScoreRow(f"teachers ({len(scores)})", "teacher", 0, "-", "-", **_summary(scores), epochs=0,
                             lr=0.0, fingerprint=pool_print, **common))
    jobs, baselines = [], {}
    for name, protocol in chosen.items():
        for model in models:
            jobs += [EvalJob("set", name, model, run) for run in range(num_runs)]
            if not random_subset:
                continue
            if protocol.soft and not pool:
                notes.append(f"No random-subset row under `{name}`: its soft labels need a teacher; pass --teachers.")
                continue
            jobs += [EvalJob("random_subset", name, model, run) for run in range(num_runs)]
    sets = {"set": LabelledSet(scored.images, scored.labels, scored.soft_labels),
            "random_subset": random_draws(data, scored.ipc, seed, scored.preprocessing,
                                          teacher_models[0] if pool else None, pool.preprocessing if pool else None,
                                          device)}
    results = evaluate_jobs(jobs, sets, chosen, data, scored.preprocessing, seed, batch_size, torch_compile,
                            device=device)
    for score in results:
        baselines.setdefault((score.job.set_name, score.job.protocol, score.job.model), []).append(score)
    for (set_name, name, model), group in baselines.items():
        protocol = chosen[name]
        row = dict(protocol=name, model=model, epochs=protocol.epochs, lr=protocol.lr,
                   model_fingerprint=model_fingerprint(model), seconds=sum(s.seconds for s in group),
                   **_summary([s.accuracy for s in group]), **common)
        if set_name == "set":
            rows.append(ScoreRow(scored.name, scored.method, scored.ipc, fingerprint=scored.fingerprint, **row))
        else:
            rows.append(ScoreRow(RANDOM_SUBSET_ROW, "real images", scored.ipc,
                                 fingerprint=pool_print if protocol.soft else None, **row))
    return SetEvaluation(rows, notes)


def _summary(runs: list[float]) -> dict:
    return Summary.of(runs).to_dict()


def pool_fingerprint(pool: list[torch.nn.Module]) -> str:
    """`fingerprint` of a teacher pool's weights and buffers: the print of its teachers' row and of the random-subset
    rows it labels."""
    return fingerprint(t for teacher in pool for t in teacher.state_dict().values())


