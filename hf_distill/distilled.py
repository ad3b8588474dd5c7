"""The distilled set: container, safetensors storage and a picture of it."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file
from torchvision.utils import make_grid, save_image

from .files import atomic_directory
from .preprocessing import Preprocessing

DISTILLED_FILE = "distilled.safetensors"


@dataclass
class DistilledSet:
    """Synthetic images in model input space, hard labels, teacher logits and the preprocessing of real data."""

    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor
    preprocessing: Preprocessing
    class_names: list[str]
    metadata: dict = field(default_factory=dict)

    @property
    def ipc(self) -> int:
        return len(self.labels) // len(self.class_names)

    def pixels(self) -> torch.Tensor:
        """The images in pixel space, clipped to [0, 1]."""
        return self.preprocessing.invert(self.images).clamp(0, 1)


def save_distilled(distilled: DistilledSet, path: str | os.PathLike) -> Path:
    """Write `path/distilled.safetensors` (tensors plus JSON metadata) atomically; return the folder."""
    tensors = {"images": distilled.images, "labels": distilled.labels, "soft_labels": distilled.soft_labels,
               **distilled.preprocessing.state_dict()}
    metadata = {"class_names": json.dumps(distilled.class_names), "metadata": json.dumps(distilled.metadata),
                "format": "hf_distill.distilled/1"}
    with atomic_directory(path) as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp / DISTILLED_FILE, metadata=metadata)
    return Path(path)


def load_distilled(path: str | os.PathLike) -> DistilledSet:
    """Load a set written by `save_distilled`: training-ready float images, labels, soft labels, preprocessing."""
    file = Path(path) / DISTILLED_FILE if Path(path).is_dir() else Path(path)
    if not file.exists():
        raise FileNotFoundError(f"No {DISTILLED_FILE} at {path}; pass the distilled/ folder written by hf_distill.")
    with safe_open(file, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    return DistilledSet(tensors["images"], tensors["labels"], tensors["soft_labels"], Preprocessing.from_state_dict(tensors),
                        json.loads(meta["class_names"]), json.loads(meta["metadata"]))


def save_grid(distilled: DistilledSet, path: str | os.PathLike, min_side: int = 32) -> None:
    """Save a PNG with one row per class (IPC images each; one row of all classes when IPC is 1)."""
    pixels = distilled.pixels()[distilled.labels.argsort(stable=True)]
    if pixels.shape[-1] < min_side:
        pixels = F.interpolate(pixels, scale_factor=-(-min_side // pixels.shape[-1]), mode="nearest")
    per_row = distilled.ipc if distilled.ipc > 1 else len(distilled.class_names)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(make_grid(pixels, nrow=per_row, padding=2, pad_value=1.0), path)
