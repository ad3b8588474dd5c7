"""Seeded, generated image-classification datasets in Hub parquet layout, shaped like ImageNet (or smaller), for
tests and benchmarks that need more images than the shared datasets hold.

Each class has its own colour and stripe pattern; every image adds its own offset and pixel noise, so a model can
learn the classes and PNG compression cannot shrink the files much.
"""

from __future__ import annotations

import io
import multiprocessing
import os
from pathlib import Path

import numpy as np
from PIL import Image as PILImage

import datasets

ROWS_PER_FILE = 10_000
ROW_GROUP_ROWS = 1_000  # like Hub parquet exports: readers hold one row group at a time


def make_image_dataset(root: str | os.PathLike, train_rows: int, test_rows: int, num_classes: int = 1000,
                       side: int = 64, channels: int = 3, seed: int = 0, num_proc: int = 1) -> Path:
    """Write `root/data/{train,test}-0000i-of-0000n.parquet` (`image`: PNG, `label`: `ClassLabel`); return `root`.

    Labels cycle through the classes (row i has class i mod `num_classes`), so every class has
    `rows // num_classes` or one more images. The same arguments always give the same files.
    """
    root = Path(root)
    (root / "data").mkdir(parents=True, exist_ok=True)
    jobs = []
    for split, rows, split_seed in (("train", train_rows, seed), ("test", test_rows, seed + 1)):
        files = max(1, -(-rows // ROWS_PER_FILE))
        for i in range(files):
            start, stop = i * ROWS_PER_FILE, min((i + 1) * ROWS_PER_FILE, rows)
            path = root / "data" / f"{split}-{i:05d}-of-{files:05d}.parquet"
            jobs.append((str(path), start, stop, num_classes, side, channels, split_seed))
    if num_proc > 1:
        with multiprocessing.get_context("fork").Pool(num_proc) as pool:
            pool.starmap(_write_file, jobs)
    else:
        for job in jobs:
            _write_file(*job)
    return root


def _write_file(path: str, start: int, stop: int, num_classes: int, side: int, channels: int, seed: int) -> None:
    labels = [row % num_classes for row in range(start, stop)]
    images = [{"bytes": _png(_pixels(row, label, num_classes, side, channels, seed)), "path": None}
              for row, label in zip(range(start, stop), labels)]
    features = datasets.Features({"image": datasets.Image(),
                                  "label": datasets.ClassLabel(names=[f"class_{c:04d}" for c in range(num_classes)])})
    datasets.Dataset.from_dict({"image": images, "label": labels}, features=features).to_parquet(path, batch_size=ROW_GROUP_ROWS)


def _pixels(row: int, label: int, num_classes: int, side: int, channels: int, seed: int) -> np.ndarray:
    """A uint8 [side, side, channels] image: the class's colour and stripes, shifted per image, plus noise."""
    classes = np.random.default_rng([seed, 0])
    colours = classes.integers(40, 216, (num_classes, channels))
    frequencies = classes.uniform(1, 6, (num_classes, 2))
    rng = np.random.default_rng([seed, 1, row])
    y, x = np.mgrid[0:side, 0:side] / side
    fy, fx = frequencies[label]
    stripes = np.sin(2 * np.pi * (fy * y + fx * x + rng.uniform()))[..., None]
    image = colours[label] + 40 * stripes + rng.normal(0, 12, (side, side, channels))
    return np.clip(image, 0, 255).astype(np.uint8)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(buffer, format="PNG")
    return buffer.getvalue()
