"""Image-classification data from `datasets`, decoded once into memory-mapped uint8 tensors.

`load_image_dataset` accepts a Hub id, a local Hub-layout folder, an imagefolder directory,
parquet files, or the built-in offline dataset `digits` (scikit-learn's 8x8 handwritten digits).
Each split is decoded once into an on-disk store (`hf_distill.image_store`) that later runs memory-map.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
from dataclasses import dataclass, field

import numpy as np
import torch

import datasets

from .hub import dataset_provenance
from .image_store import decoded_images

logger = logging.getLogger(__name__)

BUILTIN_DATASETS = ("digits",)
DIGITS_TEST_FRACTION = 0.3
DIGITS_SPLIT_SEED = 0
DIGITS_LICENSE = "cc-by-4.0"  # UCI ML repository, "Optical Recognition of Handwritten Digits"
IMAGE_COLUMN_NAMES = ("image", "img", "pixel_values", "picture")
LABEL_COLUMN_NAMES = ("label", "labels", "fine_label", "target", "class")
TEST_SPLIT_NAMES = ("test", "validation", "valid", "val")


@dataclass
class ImageClassificationData:
    """Train and test splits as uint8 [N, C, H, W] tensors with int64 labels, plus provenance.

    The image tensors of a `datasets` source are memory-mapped from their on-disk store: index them by batch
    (`images[index]`) rather than converting them whole, so memory does not grow with the dataset.
    """

    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: list[str]
    source: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return self.train_images.shape[1]

    @property
    def resolution(self) -> int:
        return self.train_images.shape[-1]


def load_image_dataset(
    dataset: str,
    config_name: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    train_split: str | None = None,
    test_split: str | None = None,
    resolution: int | None = None,
    num_workers: int | None = None,
    cache_dir: str | None = None,
) -> ImageClassificationData:
    """Load `dataset`; decode both splits once into memory-mapped stores, or reuse the stores of an earlier run.

    Args:
        dataset: 'digits', a Hub id ('uoft-cs/cifar10'), a local folder (Hub layout or imagefolder),
            or parquet files ('data/*.parquet').
        config_name: the dataset configuration, if it has several.
        image_column / label_column: override the columns found from the features.
        train_split / test_split: split names or slices ('train[:90%]'); default 'train' and the
            first of 'test', 'validation', 'valid', 'val'.
        resolution: resize every image to `resolution` x `resolution` (bicubic, antialiased).
        num_workers: processes for the first decode (default: the available cores).
        cache_dir: `datasets` cache folder, also the root of the decoded stores (default: the `datasets` cache).
    """
    if dataset == "digits":
        for flag, split, name in (("--train_split", train_split, "train"), ("--test_split", test_split, "test")):
            if split not in (None, name):
                raise ValueError(f"Split {split!r} not found in 'digits'; its splits are ['train', 'test'] and cannot be "
                                 f"sliced. Leave {flag} unset (it is {name!r}).")
        return _load_digits(resolution)
    path, kwargs = _builder_arguments(dataset)
    splits = _split_names(dataset, path, config_name, kwargs)
    train_split = train_split or ("train" if "train" in splits else None)
    test_split = test_split or next((s for s in TEST_SPLIT_NAMES if s in splits), None)
    for flag, split in (("--train_split", train_split), ("--test_split", test_split)):
        if split is None or split.split("[")[0] not in splits:
            problem = f"Split {split!r} not found" if split else f"No {flag} given and no default split found"
            raise ValueError(f"{problem} in {dataset!r}; its splits are {splits}. Pass {flag} with one of them, "
                             f"or a slice such as 'train[90%:]' to hold part of a split out.")
    train = datasets.load_dataset(path, config_name, split=train_split, cache_dir=cache_dir, **kwargs)
    test = datasets.load_dataset(path, config_name, split=test_split, cache_dir=cache_dir, **kwargs)
    image_column, label_column = find_columns(train.features, image_column, label_column)
    class_names = class_names_from(train, label_column)
    train_labels = _labels(train, label_column, train_split, len(class_names), "--train_split")
    test_labels = _labels(test, label_column, test_split, len(class_names), "--test_split")
    train_images, mode = decoded_images(train, image_column, train_split, resolution, num_workers=num_workers,
                                        cache_dir=cache_dir)
    test_images, _ = decoded_images(test, image_column, test_split, train_images.shape[-1], mode, num_workers, cache_dir)
    source = {"dataset": dataset, "config_name": config_name, "train_split": train_split, "test_split": test_split,
              "image_column": image_column, "label_column": label_column,
              "fingerprint": getattr(train, "_fingerprint", None), **dataset_provenance(dataset)}
    return ImageClassificationData(train_images, train_labels, test_images, test_labels, class_names, source)


def find_columns(features: datasets.Features, image_column: str | None = None,
                 label_column: str | None = None) -> tuple[str, str]:
    """The image and label columns: given, else the first `Image` / `ClassLabel` feature, else by name."""
    columns = list(features)
    for flag, given in (("--image_column", image_column), ("--label_column", label_column)):
        if given is not None and given not in features:
            raise ValueError(f"Column {given!r} (from {flag}) is not in the dataset; its columns are {columns}.")
    image_column = image_column or next((c for c, f in features.items() if isinstance(f, datasets.Image)), None) \
        or next((c for c in IMAGE_COLUMN_NAMES if c in features), None)
    label_column = label_column or next((c for c, f in features.items() if isinstance(f, datasets.ClassLabel)), None) \
        or next((c for c in LABEL_COLUMN_NAMES if c in features), None) or _only_integer_column(features)
    if image_column is None:
        raise ValueError(f"No image column found: no `Image` feature and none of {IMAGE_COLUMN_NAMES}. "
                         f"Columns are {columns}; pass --image_column.")
    if label_column is None:
        raise ValueError(f"No label column found: no `ClassLabel` feature and none of {LABEL_COLUMN_NAMES}. "
                         f"Columns are {columns}; pass --label_column.")
    return image_column, label_column


def _only_integer_column(features: datasets.Features) -> str | None:
    """The one integer column of `features` (e.g. `class_id`), taken as the labels with a warning; an error when there
    are several, None when there is none."""
    integers = [c for c, f in features.items() if isinstance(f, datasets.Value) and f.dtype.startswith(("int", "uint"))]
    if len(integers) > 1:
        raise ValueError(f"No label column by type or name, and several integer columns {integers}; pass "
                         f"--label_column with the one that holds the class ids.")
    if integers:
        logger.warning("No ClassLabel feature or label column by name: using the integer column %r as the class ids "
                       "(--label_column chooses another).", integers[0])
    return integers[0] if integers else None


def class_names_from(ds: datasets.Dataset, label_column: str) -> list[str]:
    """Class names from the `ClassLabel` feature; for plain integer labels 0..C-1, their string values."""
    feature = ds.features[label_column]
    if isinstance(feature, datasets.ClassLabel):
        return list(feature.names)
    if not (isinstance(feature, datasets.Value) and feature.dtype.startswith(("int", "uint"))):
        raise ValueError(f"Label column {label_column!r} has type {feature}, not integer class ids. Encode it first "
                         f"(`ds.class_encode_column({label_column!r})`) or pass --label_column.")
    values = np.unique(column_array(ds, label_column))
    if values.min() < 0 or values.max() >= 10_000:
        raise ValueError(f"Label column {label_column!r} holds values {values.min()}..{values.max()}; expected class ids 0..C-1.")
    logger.warning("Label column %r is a plain integer column: using class names '0'..'%d'.", label_column, values.max())
    return [str(i) for i in range(int(values.max()) + 1)]


def column_array(ds: datasets.Dataset, column: str) -> np.ndarray:
    """One column as a numpy array, read in one batch (`ds[column]` iterates row by row: minutes at ImageNet size)."""
    return ds.select_columns([column]).with_format("numpy")[:][column]


def _labels(ds: datasets.Dataset, column: str, split: str, num_classes: int, flag: str) -> torch.Tensor:
    """The split's class ids; raise if one lies outside 0..num_classes-1 (an unlabelled split marks rows with -1)."""
    labels = torch.as_tensor(column_array(ds, column), dtype=torch.int64)
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Split {split!r} has labels {int(labels.min())}..{int(labels.max())}, outside the "
                         f"{num_classes} classes (-1 marks an unlabelled split, like ImageNet's 'test'). Pass {flag} "
                         f"with a labelled split, e.g. 'validation'.")
    return labels


def _split_names(dataset: str, path: str, config_name: str | None, kwargs: dict) -> list[str]:
    """The dataset's split names; this first access is where a wrong id or an unreachable Hub shows up."""
    try:
        return datasets.get_dataset_split_names(path, config_name, **kwargs)
    except FileNotFoundError as err:
        raise ValueError(f"Dataset {dataset!r} not found: it is no local folder or file, nor a Hub dataset you can "
                         f"access ({err}). Check the id (like 'uoft-cs/cifar10'; run `hf auth login` for a gated or private "
                         f"one), or pass a local folder or parquet files as --dataset.") from err
    except ConnectionError as err:
        raise ConnectionError(f"The Hugging Face Hub could not be reached for dataset {dataset!r} ({err}). Check the "
                              f"network (and HF_HUB_OFFLINE), or download the dataset once and pass its local folder "
                              f"as --dataset.") from err


def looks_local(dataset: str) -> bool:
    """Whether `dataset` reads as a path rather than a Hub id ('org/name') or a URL: './x', '../x', '/x', '~/x' or
    'a/b/c'."""
    if "://" in dataset:
        return False
    return dataset.startswith(("./", "../", "/", "~")) or dataset in (".", "..") or dataset.strip("/").count("/") >= 2


def _builder_arguments(dataset: str) -> tuple[str, dict]:
    """`load_dataset` path and keyword arguments for a Hub id, a folder, or parquet files."""
    local = os.path.expanduser(dataset)
    if looks_local(dataset) and not (os.path.exists(local) or glob.glob(local)):
        raise ValueError(f"--dataset {dataset!r}: no such file or folder. Check the path, or pass a Hub id of the "
                         f"form 'org/name'.")
    dataset = local
    if dataset.endswith(".parquet") or (("*" in dataset) and "parquet" in dataset):
        return "parquet", {"data_files": {"train": dataset}}
    if os.path.exists(dataset) and not os.path.isdir(dataset):
        raise ValueError(f"--dataset {dataset!r} is a file but not parquet; pass a folder, parquet files or a Hub id.")
    return dataset, {}


def _load_digits(resolution: int | None) -> ImageClassificationData:
    """scikit-learn's 8x8 digits (1,797 images) with a fixed stratified 70/30 split (seed 0)."""
    import sklearn
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    pixels = np.rint(bunch.images * (255 / 16)).astype(np.uint8)[:, None]
    train_idx, test_idx = train_test_split(np.arange(len(pixels)), test_size=DIGITS_TEST_FRACTION,
                                           stratify=bunch.target, random_state=DIGITS_SPLIT_SEED)
    images = torch.from_numpy(pixels)
    if resolution is not None and resolution != 8:
        images = torch.nn.functional.interpolate(images.float(), size=(resolution, resolution), mode="bicubic",
                                                 antialias=True).round().clamp(0, 255).to(torch.uint8)
    labels = torch.from_numpy(bunch.target).long()
    fingerprint = hashlib.sha256(pixels.tobytes() + bunch.target.astype(np.int64).tobytes()).hexdigest()[:16]
    source = {"dataset": "digits", "origin": "sklearn.datasets.load_digits", "revision": f"scikit-learn {sklearn.__version__}",
              "fingerprint": fingerprint, "license": DIGITS_LICENSE,
              "split": f"stratified {1 - DIGITS_TEST_FRACTION:.0%}/{DIGITS_TEST_FRACTION:.0%}, random_state={DIGITS_SPLIT_SEED}",
              "train_split": "train", "test_split": "test"}
    return ImageClassificationData(images[train_idx], labels[train_idx], images[test_idx], labels[test_idx],
                                   [str(i) for i in range(10)], source)
