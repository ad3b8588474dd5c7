"""Distilled sets in every layout, read into model input space: `read_set`.

A set is one of: a folder or Hub repo written by hf_distill (exact floats, soft labels, preprocessing); any
`datasets` image-classification set in pixel space (hard labels, and a `soft_label` column if it has one); or a
safetensors release of another method (`images` in that method's normalised or ZCA space, `labels`, and `mean`/`std`
where known). `space_warning` says when a set's images look like they are in another space than the one declared.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import torch
from safetensors import safe_open

import datasets

from .data import ImageClassificationData, column_array, find_columns
from .distilled import DISTILLED_FILE, load_distilled
from .files import check_tensors_file
from .hub import is_repo_id
from .image_store import decoded_images
from .preprocessing import Preprocessing


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


def fingerprint(tensors: Iterable[torch.Tensor | None]) -> str:
    """12 hex digits of the SHA-256 of the tensors' dtypes, shapes and bytes (None entries skipped): rows with one
    fingerprint scored the same data, whatever their set names."""
    digest = hashlib.sha256()
    for tensor in filter(lambda t: t is not None, tensors):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
        digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:12]


def same_space(a: Preprocessing, b: Preprocessing) -> bool:
    """Whether two preprocessings map pixels to the same inputs."""
    pairs = [(a.mean, b.mean), (a.std, b.std), (a.zca_matrix, b.zca_matrix), (a.zca_mean, b.zca_mean)]
    return all((x is None and y is None) or (x is not None and y is not None and x.shape == y.shape
                                             and torch.allclose(x, y)) for x, y in pairs)


SPACE_SAMPLE = 2_000  # real train images whose statistics the set's are compared with


# Optimised images often end up louder than real ones in the same space and are read right (the KIP CIFAR-10 release
# of ../shared/peers: 16x the real images' std under ZCA, mean in place, 32.3% on convnet3 against 29.8% for random
# images; MTT's DC-Bench ZCA run: 5.6x, 62.6%), so a larger std alone warns only beyond this ratio.
LOUDEST = 30.0


def space_warning(scored: SetToScore, data: ImageClassificationData) -> str | None:
    """One line when the set's per-channel statistics in model input space are far from the real images' under the
    same preprocessing (its images are likely in another space than declared), naming the likely fix; else None."""
    index = torch.linspace(0, len(data.train_labels) - 1, min(SPACE_SAMPLE, len(data.train_labels))).long()
    real = scored.preprocessing(data.train_images[index])
    dims = (0, 2, 3)
    shift = ((scored.images.mean(dims) - real.mean(dims)).abs() / real.std(dims)).max().item()
    ratio = (scored.images.std(dims) / real.std(dims))
    low, high = ratio.min().item(), ratio.max().item()
    if low >= 1 / 3 and high <= LOUDEST and shift <= 1.5:
        return None
    declared = "ZCA-whitened" if scored.preprocessing.zca else "pixels normalised by the real mean/std"
    if low < 1 / 3:
        fix = ("they look whitened or normalised before they were stored (for example ZCA images saved as pixels): "
               "score them in the space they were made in (--zca for ZCA sets; a release's own mean/std)")
    else:
        fix = ("they look like raw pixels (0-1 or 0-255) declared as normalised, or the reverse: check the set's "
               "mean/std or --zca")
    return (f"{scored.name}: its images under the declared preprocessing ({declared}) differ from the real images' "
            f"(per-channel std ratio {low:.2f}-{high:.2f}, mean shift up to {shift:.1f} std): {fix}. Scores of a set "
            f"read in the wrong space are near chance.")


def space_name(preprocessing: Preprocessing) -> str:
    """The input space of `preprocessing`: its kind and a digest of its statistics to 4 significant digits (e.g.
    'zca 1a2b3c4d'), so that rows of one space share it even when a ZCA fit differs in its last float digits (as two
    fits on different thread counts do)."""
    kind = "zca" if preprocessing.zca else "mean/std"
    stats = [*preprocessing.mean.tolist(), *preprocessing.std.tolist()]
    if preprocessing.zca:
        matrix = preprocessing.zca_matrix.double()
        stats += [matrix.trace().item(), matrix.abs().sum().item(), preprocessing.zca_mean.double().sum().item()]
    return f"{kind} {hashlib.sha256(' '.join(f'{v:.4g}' for v in stats).encode()).hexdigest()[:8]}"


def read_set(source: str, data: ImageClassificationData, zca: bool | None = None, method: str | None = None,
             split: str = "train", label_column: str | None = None, image_column: str | None = None) -> SetToScore:
    """The set at `source` (see the module docstring); `zca` says whether a `datasets` set or a release is whitened
    (default: from the release's metadata, else no); `label_column` / `image_column` name a `datasets` set's columns."""
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
    return _read_image_dataset(source, data, bool(zca), method, split, label_column, image_column)


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


def _read_image_dataset(source: str, data: ImageClassificationData, zca: bool, method: str | None, split: str,
                        label_column: str | None, image_column: str | None) -> SetToScore:
    ds = datasets.load_dataset(os.path.expanduser(source), split=split)
    image_column, label_column = find_columns(ds.features, image_column, label_column)
    images, _ = decoded_images(ds, image_column, split, data.resolution, "L" if data.channels == 1 else "RGB")
    labels = torch.as_tensor(column_array(ds, label_column)).long()
    soft = torch.as_tensor(column_array(ds, "soft_label")).float() if "soft_label" in ds.features else None
    preprocessing = Preprocessing.fit(data.train_images, zca=zca)
    return SetToScore(Path(source).name or source, method or "unknown", preprocessing(images), labels, soft,
                      preprocessing, "datasets image set", fingerprint([images, labels, soft]))
