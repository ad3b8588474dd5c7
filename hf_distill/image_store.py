"""Decoded images on disk: each split is decoded once, in parallel, into a uint8 `.npy` file that later runs
memory-map instead of decoding again.

A store is a folder `<root>/<key>/` holding `images.npy` ([N, C, H, W] uint8) and `store.json` (what it was
decoded from). It appears under its final name only once every row is written (temporary folder, then rename),
and a lock file serialises builders of the same key, so a killed decode never leaves a store that looks complete.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import logging
import multiprocessing
import os
import shutil
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image as PILImage
from tqdm.auto import tqdm

import datasets

from .files import atomic_directory, read_json

logger = logging.getLogger(__name__)

STORE_FORMAT = 1
IMAGES_FILE = "images.npy"
META_FILE = "store.json"
DECODE_BATCH = 1024
GRAYSCALE_MODES = ("1", "L", "I", "I;16", "F")


@dataclass(frozen=True)
class StoreKey:
    """What a store's pixels depend on: the source rows (fingerprint, split, column, row count) and the decode
    (side in pixels, PIL colour mode)."""

    fingerprint: str
    split: str
    column: str
    rows: int
    size: int
    mode: str
    format: int = STORE_FORMAT

    @property
    def folder_name(self) -> str:
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]
        return f"{self.split.split('[')[0]}-{self.size}px-{self.mode}-{digest}"

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return self.rows, 1 if self.mode == "L" else 3, self.size, self.size


def default_num_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def store_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where stores live: `<cache_dir>/hf_distill_images`, by default under the `datasets` cache."""
    return Path(cache_dir or datasets.config.HF_DATASETS_CACHE) / "hf_distill_images"


def decoded_images(ds: datasets.Dataset, column: str, split: str, resolution: int | None = None,
                   mode: str | None = None, num_workers: int | None = None,
                   cache_dir: str | os.PathLike | None = None) -> tuple[torch.Tensor, str]:
    """The split's images as a uint8 [N, C, H, W] tensor memory-mapped from its store (decoded first if needed).

    Args:
        ds: the split; its `_fingerprint` keys the store.
        column: the image column.
        split: the split name or slice, part of the key.
        resolution: resize every image to this side (bicubic); None keeps the size, which must then be uniform.
        mode: 'L' or 'RGB'; by default the mode declared by the `Image` feature, else the first image's, decides:
            grayscale stays 'L' and all others become 'RGB'.
        num_workers: decoding processes (default: the available cores).
        cache_dir: the stores' root folder (see `store_root`).

    Returns the tensor (file-backed pages: it costs no anonymous memory) and the colour mode used.
    """
    if len(ds) == 0:
        raise ValueError(f"Split {split!r} has no rows; pass a split (or slice) that holds images.")
    raw = ds.select_columns([column]).cast_column(column, datasets.Image(decode=False)).with_format("arrow")
    first = _open(_encoded(raw[0:1], column)[0])
    declared = getattr(ds.features[column], "mode", None)  # `Image(mode=...)` in the features wins over the first image
    mode = mode or ("L" if (declared or first.mode) in GRAYSCALE_MODES else "RGB")
    key = StoreKey(ds._fingerprint, split, column, len(ds), resolution or first.size[0], mode)
    root = store_root(cache_dir)
    path = root / key.folder_name
    with _build_lock(root, key):
        if not _is_complete(path, key):
            _build(raw, column, key, resolution is not None, path, num_workers or default_num_workers())
        else:
            logger.info("Using decoded images of split %r from %s", split, path)
        return open_store(path), mode


def open_store(path: str | os.PathLike) -> torch.Tensor:
    """The store's pixels, memory-mapped copy-on-write: reads come from the file, writes never reach it."""
    return torch.from_numpy(np.load(Path(path) / IMAGES_FILE, mmap_mode="c"))


def decode(item: dict, size: int, mode: str, resize: bool, column: str = "image") -> np.ndarray:
    """One encoded image ({'bytes', 'path'}) as a uint8 [C, size, size] array in `mode`."""
    image = _open(item).convert(mode)
    if image.size != (size, size):
        if not resize:
            raise ValueError(f"Images in column {column!r} have different sizes ({image.size} vs {size}x{size}); "
                             f"pass --resolution to resize them all.")
        image = image.resize((size, size), PILImage.Resampling.BICUBIC)
    array = np.asarray(image)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _open(item: dict) -> PILImage.Image:
    return PILImage.open(io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"])


def _encoded(table, column: str) -> list[dict]:
    return table.column(column).to_pylist()


def _is_complete(path: Path, key: StoreKey) -> bool:
    """A finished store of this key whose file holds every row (a truncated or foreign one is rebuilt)."""
    if not (path / META_FILE).exists():
        return False
    try:
        meta = read_json(path / META_FILE, "")
        return meta.get("key") == asdict(key) and tuple(np.load(path / IMAGES_FILE, mmap_mode="r").shape) == key.shape
    except (ValueError, OSError) as err:
        logger.warning("Decoding again: the store %s is unreadable (%s).", path, err)
        return False


@contextlib.contextmanager
def _build_lock(root: Path, key: StoreKey) -> Iterator[None]:
    """Hold an exclusive lock for this key; a builder killed mid-way releases it with its process."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key.folder_name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _build(raw: datasets.Dataset, column: str, key: StoreKey, resize: bool, path: Path, num_workers: int) -> None:
    for stale in path.parent.glob(f".{path.name}-*"):  # left by a killed build of this key (we hold the lock)
        shutil.rmtree(stale, ignore_errors=True)
    if path.exists():
        shutil.rmtree(path)
    ranges = [(start, min(start + DECODE_BATCH, key.rows)) for start in range(0, key.rows, DECODE_BATCH)]
    workers = max(1, min(num_workers, len(ranges)))
    gigabytes = np.prod(key.shape) / 1e9
    logger.info("Decoding split %r (%d images as %s %dx%d, %.2f GB as uint8) with %d process(es) into %s", key.split,
                key.rows, key.mode, key.size, key.size, gigabytes, workers, path)
    with atomic_directory(path) as tmp:
        np.lib.format.open_memmap(tmp / IMAGES_FILE, mode="w+", dtype=np.uint8, shape=key.shape).flush()
        _reserve_disk(tmp / IMAGES_FILE, key, gigabytes)
        job = _DecodeJob(raw, column, key.size, key.mode, resize, str(tmp / IMAGES_FILE))
        bar = tqdm(total=key.rows, desc=f"decode {key.split}", unit="img")
        if workers == 1:
            _start_worker(job)
            try:
                for bounds in ranges:
                    bar.update(_decode_range(bounds))
            finally:
                _start_worker(None)
        else:
            context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else None)
            pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_start_worker, initargs=(job,))
            try:
                for done in as_completed([pool.submit(_decode_range, bounds) for bounds in ranges]):
                    bar.update(done.result())
            except BrokenProcessPool as err:
                raise ChildProcessError(f"A process decoding split {key.split!r} died (out of memory?); nothing was "
                                        f"kept. Rerun with fewer --preprocessing_num_workers.") from err
            finally:  # on an error (a bad image), the ranges not started yet are dropped
                pool.shutdown(wait=True, cancel_futures=True)
        bar.close()
        (tmp / META_FILE).write_text(json.dumps({"key": asdict(key), "shape": list(key.shape), "dtype": "uint8"}, indent=2))


def _reserve_disk(file: Path, key: StoreKey, gigabytes: float) -> None:
    """Allocate the store file's blocks now, so that a full disk fails here rather than mid-decode (as SIGBUS)."""
    with open(file, "r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
        except OSError as err:
            if err.errno == errno.ENOSPC:
                raise OSError(err.errno, f"Not enough disk space for the decoded images of split {key.split!r} "
                                         f"({gigabytes:.2f} GB) under {file.parent.parent}; free some space or pass "
                                         f"--cache_dir on a larger disk.") from None
            if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # a file system without fallocate: write sparsely
                raise


@dataclass
class _DecodeJob:
    raw: datasets.Dataset
    column: str
    size: int
    mode: str
    resize: bool
    images_file: str


_job: _DecodeJob | None = None
_out: np.ndarray | None = None


def _start_worker(job: _DecodeJob | None) -> None:
    """Set (or with None, drop) this process's job and its writable mapping of the store file."""
    global _job, _out
    _job, _out = job, None if job is None else np.load(job.images_file, mmap_mode="r+")


def _decode_range(bounds: tuple[int, int]) -> int:
    """Decode rows [start, stop) of the job's split into the store file (shared pages: no flush needed before the
    builder's fsync); returns how many."""
    start, stop = bounds
    items = _encoded(_job.raw[start:stop], _job.column)
    _out[start:stop] = np.stack([decode(item, _job.size, _job.mode, _job.resize, _job.column) for item in items])
    return stop - start
