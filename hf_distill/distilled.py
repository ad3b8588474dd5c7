"""The distilled set: the container, reading it back (from a folder or the Hub) and a picture of it."""

from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage
from safetensors import safe_open
from torchvision.utils import make_grid, save_image

import datasets

from .files import check_tensors_file
from .hub import download_repo, is_repo_id
from .preprocessing import Preprocessing
from .records import RunMetadata

DISTILLED_FILE = "distilled.safetensors"


@dataclass
class DistilledSet:
    """Synthetic images in model input space, hard labels, teacher logits and the preprocessing of real data."""

    images: torch.Tensor
    labels: torch.Tensor
    soft_labels: torch.Tensor
    preprocessing: Preprocessing
    class_names: list[str]
    metadata: RunMetadata = field(default_factory=RunMetadata)

    @property
    def ipc(self) -> int:
        return len(self.labels) // len(self.class_names)

    def pixels(self) -> torch.Tensor:
        """The images in pixel space, clipped to [0, 1]."""
        return self.preprocessing.invert(self.images).clamp(0, 1)

    def pixels_uint8(self) -> torch.Tensor:
        """The images as 8-bit pixels [N, C, H, W], exactly what the `image` column's PNGs hold."""
        return self.pixels().mul(255).round().to(torch.uint8)

    def to_dataset(self) -> datasets.Dataset:
        """A `datasets.Dataset` with `image` (PNG), `label` (`ClassLabel`) and `soft_label` (teacher logits)."""
        features = datasets.Features({
            "image": datasets.Image(),
            "label": datasets.ClassLabel(names=self.class_names),
            "soft_label": datasets.List(datasets.Value("float32"), length=len(self.class_names)),
        })
        rows = {"image": [{"bytes": _png(p), "path": None} for p in self.pixels_uint8()],
                "label": self.labels.tolist(), "soft_label": self.soft_labels.float().numpy()}
        return datasets.Dataset.from_dict(rows, features=features, split=datasets.Split.TRAIN)


def _png(pixels: torch.Tensor) -> bytes:
    """PNG bytes of one uint8 [C, H, W] image (grayscale for one channel, RGB for three)."""
    array = pixels.permute(1, 2, 0).numpy()
    image = PILImage.fromarray(array[..., 0] if array.shape[-1] == 1 else np.ascontiguousarray(array))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def load_distilled(source: str | os.PathLike, revision: str | None = None) -> DistilledSet:
    """Load a distilled set: training-ready float images, labels, soft labels and the preprocessing.

    Args:
        source (`str` or `os.PathLike`): a folder written by `save_distilled`, its `distilled.safetensors`, or the id
            of a Hub dataset repo holding one ("org/name"; downloaded with `huggingface_hub`, safetensors only).
        revision (`str`, *optional*): branch, tag or commit of a Hub repo.

    Example:
        ```python
        distilled = hf_distill.load_distilled("outputs/digits-apm-ipc1/distilled")
        inputs = distilled.preprocessing(real_uint8_images)   # the same preprocessing for real test data
        ```
    """
    path = Path(source)
    if not path.exists() and is_repo_id(str(source)):
        path = download_repo(str(source), "dataset", revision, [DISTILLED_FILE])
    file = path / DISTILLED_FILE if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"No {DISTILLED_FILE} at {source}; pass the distilled/ folder written by hf_distill "
                                f"or the id of a Hub dataset repo it was pushed to.")
    check_tensors_file(file, "Save or download the distilled set again.")
    with safe_open(file, framework="pt") as f:
        tensors = {k: f.get_tensor(k) for k in f.keys()}
        meta = f.metadata()
    return DistilledSet(tensors["images"], tensors["labels"], tensors["soft_labels"], Preprocessing.from_state_dict(tensors),
                        json.loads(meta["class_names"]), RunMetadata.from_dict(json.loads(meta["metadata"])))


def grid_image(distilled: DistilledSet, min_side: int = 32) -> torch.Tensor:
    """The images as one 3 x H x W grid in [0, 1], one row per class (IPC images each; one row of all classes when
    IPC is 1), each image upscaled to at least `min_side` pixels."""
    pixels = distilled.pixels()[distilled.labels.argsort(stable=True)]
    if pixels.shape[-1] < min_side:
        pixels = F.interpolate(pixels, scale_factor=-(-min_side // pixels.shape[-1]), mode="nearest")
    per_row = distilled.ipc if distilled.ipc > 1 else len(distilled.class_names)
    return make_grid(pixels, nrow=per_row, padding=2, pad_value=1.0)


def save_grid(distilled: DistilledSet, path: str | os.PathLike) -> None:
    """Save `grid_image` as a PNG."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_image(grid_image(distilled), path)
