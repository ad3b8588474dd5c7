"""Teacher pool: train N models on the real train split, save each as safetensors + JSON, load them back."""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, ContextManager

import torch
import torch.nn as nn

from .data import ImageClassificationData
from .files import atomic_directory, atomic_file, check_tensors_file, read_json, read_tensors, save_tensors
from .models import create_model
from .preprocessing import Preprocessing
from .training import FitConfig, accuracy, fit, freeze

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


def teacher_dir(root: str | os.PathLike, index: int) -> Path:
    """Folder of teacher `index` in a pool: `teacher-NNN/`, except teacher 0 of an exported pool, which sits at the
    root so that the pool is a timm model repo (`hf_distill.teacher_repos.export_teachers`)."""
    if index == 0 and (Path(root) / "config.json").exists():
        return Path(root)
    return Path(root) / f"teacher-{index:03d}"


def train_teacher(spec: TeacherSpec, data: ImageClassificationData, preprocessing: Preprocessing, device: torch.device,
                  autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                  progress: str | None = None, compile: bool = False) -> tuple[nn.Module, dict]:
    """Train one teacher on the full train split (SGD lr 0.05, DSA); return it and its JSON config.
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
    return model, {
        "architecture": spec.model, "model_kwargs": spec.model_kwargs, "num_classes": data.num_classes,
        "class_names": data.class_names, "in_chans": data.channels, "resolution": data.resolution,
        "preprocessing": preprocessing.describe(), "epochs": spec.epochs, "seed": spec.seed, "lr": TEACHER_LR,
        "batch_size": spec.batch_size, "dsa_strategy": spec.dsa_strategy, "train_accuracy": train_acc,
        "source": data.source,
    }


def save_teacher(model: nn.Module, config: dict, path: str | os.PathLike) -> None:
    """Write `model.safetensors` and `config.json` into `path` atomically (temp folder, then rename)."""
    state = {k.removeprefix("module."): v for k, v in model.state_dict().items()}
    with atomic_directory(path) as tmp:
        save_tensors(state, tmp / "model.safetensors")
        (tmp / "config.json").write_text(json.dumps(config, indent=2))


def load_teacher(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Load a teacher saved by `save_teacher`, frozen and in eval mode."""
    path = Path(path)
    config = read_teacher_config(path)
    model = create_model(config["architecture"], config["num_classes"], config["in_chans"], config["resolution"],
                         **config.get("model_kwargs", {}))
    weights = read_tensors(path / "model.safetensors", _retrain(path))
    state = {k.removeprefix("module."): v for k, v in weights.items()}
    model.load_state_dict(state)
    return freeze(model.to(device)), config


def read_teacher_config(path: str | os.PathLike) -> dict:
    """The `config.json` of the teacher saved in `path`."""
    return read_json(Path(path) / "config.json", _retrain(path))


def check_saved_teachers(root: str | os.PathLike, data: ImageClassificationData, num_teachers: int) -> None:
    """Raise, before anything is trained, if a teacher saved in `root` is truncated or does not fit the data."""
    for index in range(num_teachers):
        path = teacher_dir(root, index)
        if (path / "config.json").exists():
            check_tensors_file(path / "model.safetensors", _retrain(path))
            check_teacher(read_teacher_config(path), data, path)


def check_teacher(config: dict, data: ImageClassificationData, path: str | os.PathLike) -> None:
    """Raise if a saved teacher does not fit the data (classes, channels, resolution)."""
    found = (config["class_names"], config["in_chans"], config["resolution"])
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


def _retrain(path: str | os.PathLike) -> str:
    return f"Delete the folder {path} and rerun: that teacher is trained again, the others are kept."
