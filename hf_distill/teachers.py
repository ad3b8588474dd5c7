"""Teachers: train models on the real train split, save each as safetensors + JSON, and `TeacherPool`, the folder (or
Hub repo) of N of them that the trainer, `hf-distill evaluate` and the benchmarks all load the same way."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, ContextManager

import torch
import torch.nn as nn
from accelerate import Accelerator

from .data import ImageClassificationData
from .files import atomic_directory, atomic_file, check_tensors_file, read_json, read_tensors, save_tensors
from .hub import HUB_PREFIX, download_repo
from .models import create_model
from .preprocessing import Preprocessing
from .training import FitConfig, accuracy, compile_model, fit, freeze

logger = logging.getLogger(__name__)

PREPROCESSING_FILE = "preprocessing.safetensors"
TEACHER_LR = 0.05


@dataclass
class TeacherSpec:
    """Everything needed to train (or check) one teacher."""

    model: str
    model_kwargs: dict
    epochs: int
    seed: int
    batch_size: int = 256
    dsa_strategy: str = "color_crop_cutout_flip_scale_rotate"


@dataclass
class TeacherConfig:
    """What a saved teacher is (`config.json`): its architecture, the data it fits, and how it was trained."""

    architecture: str
    num_classes: int
    class_names: list[str]
    in_chans: int
    resolution: int
    epochs: int
    seed: int
    lr: float
    batch_size: int
    dsa_strategy: str
    train_accuracy: float
    model_kwargs: dict = field(default_factory=dict)
    preprocessing: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, config: dict) -> "TeacherConfig":
        """Read a `config.json`; keys of other tools (timm's, in an exported pool) are ignored."""
        return cls(**{f.name: config[f.name] for f in fields(cls) if f.name in config})


def teacher_dir(root: str | os.PathLike, index: int) -> Path:
    """Folder of teacher `index` in a pool: `teacher-NNN/`, except teacher 0 of an exported pool, which sits at the
    root so that the pool is a timm model repo (`hf_distill.teacher_repos.export_teachers`)."""
    if index == 0 and (Path(root) / "config.json").exists():
        return Path(root)
    return Path(root) / f"teacher-{index:03d}"


def train_teacher(spec: TeacherSpec, data: ImageClassificationData, preprocessing: Preprocessing, device: torch.device,
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                  progress: str | None = None, compile: bool = False) -> tuple[nn.Module, TeacherConfig]:
    """Train one teacher on the full train split (SGD lr 0.05, DSA); return it and its config.
    `compile`: compile its forward (`FitConfig.compile`)."""
    torch.manual_seed(spec.seed)
    model = create_model(spec.model, data.num_classes, data.channels, data.resolution, **spec.model_kwargs).to(device)
    generator = torch.Generator().manual_seed(spec.seed)
    config = FitConfig(epochs=spec.epochs, lr=TEACHER_LR, batch_size=spec.batch_size, loss="ce",
                       dsa_strategy=spec.dsa_strategy, compile=compile)
    fit(model, data.train_images, data.train_labels, config, generator, transform=preprocessing, autocast=autocast,
        progress=progress)
    freeze(model)
    train_acc = accuracy(model, data.train_images, data.train_labels, preprocessing)
    return model, TeacherConfig(
        architecture=spec.model, model_kwargs=spec.model_kwargs, num_classes=data.num_classes,
        class_names=data.class_names, in_chans=data.channels, resolution=data.resolution,
        preprocessing=preprocessing.describe(), epochs=spec.epochs, seed=spec.seed, lr=TEACHER_LR,
        batch_size=spec.batch_size, dsa_strategy=spec.dsa_strategy, train_accuracy=train_acc, source=data.source)


def save_teacher(model: nn.Module, config: TeacherConfig, path: str | os.PathLike) -> None:
    """Write `model.safetensors` and `config.json` into `path` atomically (temp folder, then rename)."""
    state = {k.removeprefix("module."): v for k, v in model.state_dict().items()}
    with atomic_directory(path) as tmp:
        save_tensors(state, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2))


def load_teacher(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, TeacherConfig]:
    """Load a teacher saved by `save_teacher`, frozen and in eval mode."""
    path = Path(path)
    config = read_teacher_config(path)
    model = create_model(config.architecture, config.num_classes, config.in_chans, config.resolution,
                         **config.model_kwargs)
    weights = read_tensors(path / "model.safetensors", _retrain(path))
    state = {k.removeprefix("module."): v for k, v in weights.items()}
    model.load_state_dict(state)
    return freeze(model.to(device)), config


def read_teacher_config(path: str | os.PathLike) -> TeacherConfig:
    """The `config.json` of the teacher saved in `path`."""
    return TeacherConfig.from_dict(read_json(Path(path) / "config.json", _retrain(path)))


def check_teacher(config: TeacherConfig, data: ImageClassificationData, path: str | os.PathLike) -> None:
    """Raise if a saved teacher does not fit the data (classes, channels, resolution)."""
    found = (config.class_names, config.in_chans, config.resolution)
    expected = (data.class_names, data.channels, data.resolution)
    if found != expected:
        raise ValueError(f"Teacher {path} was trained for classes/channels/resolution {found}, but the data has {expected}. "
                         f"Use teachers trained on this dataset, or another --teachers pool.")


def save_preprocessing(preprocessing: Preprocessing, root: str | os.PathLike) -> None:
    with atomic_file(Path(root) / PREPROCESSING_FILE) as tmp:
        save_tensors(preprocessing.state_dict(), tmp)


def load_preprocessing(root: str | os.PathLike) -> Preprocessing | None:
    path = Path(root) / PREPROCESSING_FILE
    if not path.exists():
        return None
    return Preprocessing.from_state_dict(read_tensors(path, f"Delete {path} and rerun: it is fitted again on the train split."))


class TeacherPool:
    """A folder of teachers: `preprocessing.safetensors` (how real pixels become inputs) and `teacher-NNN/` folders
    (teacher 0 at the root in a pool exported as a timm repo). Teacher 0's logits are a distilled set's soft labels.

    Example:
        ```python
        pool = TeacherPool.open("hf-hub:org/cifar10-teachers")
        teachers, configs = pool.load(data)
        ```
    """

    def __init__(self, root: str | os.PathLike, source: str | None = None):
        self.root = Path(root)
        self.source = source or str(root)

    @classmethod
    def open(cls, source: str | os.PathLike, num_teachers: int = 1) -> "TeacherPool":
        """The pool at `source`: a local folder as is (missing teachers can be trained into it), or
        `hf-hub:org/name[@revision]`, downloaded to the Hugging Face cache (safetensors, JSON and cards only), which
        must hold `num_teachers` teachers and their preprocessing, since nothing is ever written there."""
        source = str(source)
        if not source.startswith(HUB_PREFIX):
            return cls(source)
        repo_id, _, revision = source.removeprefix(HUB_PREFIX).partition("@")
        pool = cls(download_repo(repo_id, "model", revision or None), source)
        if pool.preprocessing is None:
            raise ValueError(f"The teacher pool {source} has no {PREPROCESSING_FILE}; push pools with "
                             f"hf_distill.push_teachers, which writes it.")
        if len(pool) < num_teachers:
            raise ValueError(f"The teacher pool {source} holds {len(pool)} teachers but --num_teachers is "
                             f"{num_teachers}; lower --num_teachers, or pass a local --teachers folder where the "
                             f"missing ones are trained.")
        return pool

    def __len__(self) -> int:
        """How many teachers (0, 1, ... without gaps) the folder holds."""
        count = 0
        while (self.teacher_dir(count) / "config.json").exists():
            count += 1
        return count

    def teacher_dir(self, index: int) -> Path:
        return teacher_dir(self.root, index)

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The pool's preprocessing, or None before it is fitted."""
        return load_preprocessing(self.root)

    def fit_preprocessing(self, data: ImageClassificationData, zca: bool) -> Preprocessing:
        """The pool's preprocessing, fitted on `data`'s train split and saved the first time; raise if a saved one
        differs in `zca`."""
        preprocessing = self.preprocessing
        if preprocessing is None:
            preprocessing = Preprocessing.fit(data.train_images, zca=zca)
            save_preprocessing(preprocessing, self.root)
        if preprocessing.zca != zca:
            raise ValueError(f"Teachers in {self.root} use zca={preprocessing.zca}, but --zca is {zca}; use another "
                             f"--teachers pool or match --zca.")
        return preprocessing

    def missing(self, count: int) -> list[int]:
        """Indices below `count` with no saved teacher."""
        return [i for i in range(count) if not (self.teacher_dir(i) / "config.json").exists()]

    def check(self, data: ImageClassificationData, count: int) -> None:
        """Raise, before anything is trained, if one of the first `count` saved teachers is truncated or does not
        fit the data."""
        for index in set(range(count)) - set(self.missing(count)):
            path = self.teacher_dir(index)
            check_tensors_file(path / "model.safetensors", _retrain(path))
            check_teacher(read_teacher_config(path), data, path)

    def train(self, index: int, spec: TeacherSpec, data: ImageClassificationData, device: torch.device,
              autocast: Callable[[], ContextManager] = contextlib.nullcontext, progress: str | None = None,
              compile: bool = False) -> TeacherConfig:
        """Train teacher `index` from `spec` with the pool's preprocessing (`fit_preprocessing` first) and save it into
        the pool."""
        model, config = train_teacher(spec, data, self.preprocessing, device, autocast, progress=progress,
                                      compile=compile)
        save_teacher(model, config, self.teacher_dir(index))
        return config

    def prepare(self, data: ImageClassificationData, count: int, zca: bool, spec: Callable[[int], TeacherSpec],
                accelerator: Accelerator, compile: bool = False) -> tuple[list[nn.Module], list[TeacherConfig]]:
        """The first `count` teachers on the accelerator's device, after fitting the preprocessing (main process) and
        training the missing ones (`spec(index)`, split across processes); every process returns them all."""
        if accelerator.is_main_process:
            self.fit_preprocessing(data, zca)
        accelerator.wait_for_everyone()
        self.fit_preprocessing(data, zca)  # checks --zca on every process
        rank, world = accelerator.process_index, accelerator.num_processes
        for index in self.missing(count)[rank::world]:
            label = f"teacher {index + 1}/{count}" + (f" (rank {rank})" if world > 1 else "")
            config = self.train(index, spec(index), data, accelerator.device, accelerator.autocast, label, compile)
            logger.info("%s: train accuracy %.2f%%", label, config.train_accuracy)
        accelerator.wait_for_everyone()
        teachers, configs = self.load(data, accelerator.device, count)
        return [compile_model(t) if compile else t for t in teachers], configs

    def load(self, data: ImageClassificationData, device: torch.device | str = "cpu",
             count: int | None = None) -> tuple[list[nn.Module], list[TeacherConfig]]:
        """The first `count` teachers (default: all), frozen on `device`, checked against `data`, with their configs."""
        count = len(self) if count is None else count
        if self.preprocessing is None or count == 0 or self.missing(count):
            raise ValueError(f"No teacher pool in {self.source} (with {count or 'any'} teacher(s)); pass a folder written "
                             f"by hf-distill (preprocessing and teacher-000/, ...) or 'hf-hub:org/name'.")
        teachers, configs = [], []
        for index in range(count):
            model, config = load_teacher(self.teacher_dir(index), device)
            check_teacher(config, data, self.teacher_dir(index))
            teachers.append(model)
            configs.append(config)
        return teachers, configs


def _retrain(path: str | os.PathLike) -> str:
    return f"Delete the folder {path} and rerun: that teacher is trained again, the others are kept."
