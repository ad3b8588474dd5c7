"""The decoded-image store: bit-exact pixels, decoded once and memory-mapped after, never complete-looking when killed."""

import io
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

import datasets
import hf_distill.image_store as image_store
from hf_distill.data import load_image_dataset
from hf_distill.fake_data import make_image_dataset
from hf_distill.image_store import decoded_images, store_root


def _direct_decode(ds: datasets.Dataset, column: str, size: int | None = None) -> torch.Tensor:
    """The plainest decode: PIL per row, converted like the store does, stacked."""
    rows = []
    for item in ds.cast_column(column, datasets.Image(decode=False))[column]:
        image = Image.open(io.BytesIO(item["bytes"]) if item["bytes"] else item["path"])
        image = image.convert("L" if image.mode == "L" else "RGB")
        if size and image.size != (size, size):
            image = image.resize((size, size), Image.Resampling.BICUBIC)
        array = np.asarray(image)
        rows.append(array[None] if array.ndim == 2 else array.transpose(2, 0, 1))
    return torch.from_numpy(np.stack(rows))


def _mapped_file(tensor: torch.Tensor) -> str | None:
    """The file whose memory mapping holds the tensor's first element ('' for anonymous memory), from /proc/self/maps."""
    address = tensor.data_ptr()
    for line in open("/proc/self/maps").read().splitlines():
        fields = line.split(maxsplit=5)
        start, end = (int(bound, 16) for bound in fields[0].split("-"))
        if start <= address < end:
            return fields[5].strip() if len(fields) == 6 else ""
    return None


@pytest.mark.parametrize("name,column,split,resolution,workers", [
    ("cifar10_5k", "img", "train[:3000]", None, 2),
    ("fashion_mnist", "image", "test[:2500]", None, 1),
    ("fashion_mnist", "image", "train[:1500]", 20, 2),
])
def test_store_pixels_equal_a_direct_decode(shared_data, tmp_path, name, column, split, resolution, workers):
    ds = datasets.load_dataset(str(shared_data / name), split=split)
    images, mode = decoded_images(ds, column, split, resolution, num_workers=workers, cache_dir=tmp_path)
    assert images.dtype == torch.uint8 and mode == ("RGB" if name == "cifar10_5k" else "L")
    assert torch.equal(images, _direct_decode(ds, column, resolution))


def test_later_runs_memory_map_the_store_without_decoding(shared_data, tmp_path, monkeypatch):
    first = load_image_dataset(str(shared_data / "cifar10_5k"), num_workers=2, cache_dir=str(tmp_path))
    stores = sorted(p.name for p in store_root(tmp_path).iterdir() if p.is_dir())
    assert len(stores) == 2 and stores[0].startswith("test-32px-RGB") and stores[1].startswith("train-32px-RGB")

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again")
    monkeypatch.setattr(image_store, "decode", no_decoding)
    monkeypatch.setattr(image_store, "_build", no_decoding)
    again = load_image_dataset(str(shared_data / "cifar10_5k"), cache_dir=str(tmp_path))
    for images, store in ((again.train_images, stores[1]), (again.test_images, stores[0])):  # pages of the store file,
        assert _mapped_file(images) == os.path.realpath(store_root(tmp_path) / store / image_store.IMAGES_FILE)  # no copy
    assert torch.equal(first.train_images, again.train_images) and torch.equal(first.test_images, again.test_images)
    again.train_images[0] = 0  # copy-on-write: the store on disk keeps its pixels
    monkeypatch.undo()
    assert torch.equal(load_image_dataset(str(shared_data / "cifar10_5k"), cache_dir=str(tmp_path)).train_images,
                       first.train_images)
    other = load_image_dataset(str(shared_data / "cifar10_5k"), resolution=16, cache_dir=str(tmp_path))
    assert other.train_images.shape[-1] == 16  # the resolution is part of the key


KILLED_DECODE = """
import sys, time
from pathlib import Path
import datasets
import hf_distill.image_store as store
marker = Path(sys.argv[3])
real = store._decode_range
def decode_then_wait(bounds):
    count = real(bounds)
    if bounds[0] > 0:
        marker.touch()
        time.sleep(600)
    return count
store._decode_range = decode_then_wait
ds = datasets.load_dataset(sys.argv[1], split="train")
store.decoded_images(ds, "image", "train", num_workers=1, cache_dir=sys.argv[2])
"""


@pytest.mark.slow
def test_a_killed_decode_leaves_no_store_that_looks_complete(tmp_path):
    root = make_image_dataset(tmp_path / "data", 2500, 10, num_classes=10, side=16)
    marker = tmp_path / "marker"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_DECODE, str(root), str(tmp_path / "cache"), str(marker)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            if marker.exists() or proc.poll() is not None:
                break
            time.sleep(0.1)
        assert marker.exists(), "the decode never reached its second batch"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    folder = store_root(tmp_path / "cache")
    assert not [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]  # nothing complete-looking
    assert [p for p in folder.iterdir() if p.name.startswith(".")]  # the half-written folder, under a hidden name

    ds = datasets.load_dataset(str(root), split="train")
    images, _ = decoded_images(ds, "image", "train", num_workers=2, cache_dir=tmp_path / "cache")
    assert torch.equal(images, _direct_decode(ds, "image"))
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # the stale temporary folder is cleaned up


def test_a_truncated_store_is_decoded_again(tmp_path):
    root = make_image_dataset(tmp_path / "data", 300, 10, num_classes=10, side=8)
    ds = datasets.load_dataset(str(root), split="train")
    images, _ = decoded_images(ds, "image", "train", num_workers=1, cache_dir=tmp_path)
    (store,) = [p for p in store_root(tmp_path).iterdir() if p.is_dir()]
    with open(store / image_store.IMAGES_FILE, "r+b") as f:
        f.truncate(1000)
    again, _ = decoded_images(ds, "image", "train", num_workers=1, cache_dir=tmp_path)
    assert torch.equal(again, _direct_decode(ds, "image"))


def test_a_bad_image_stops_a_parallel_decode_with_its_error(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a"])})
    images = [Image.fromarray(np.zeros((4, 4), dtype=np.uint8))] * 3000 + [Image.fromarray(np.zeros((5, 5), dtype=np.uint8))]
    ds = datasets.Dataset.from_dict({"image": images, "label": [0] * len(images)}, features=features)
    with pytest.raises(ValueError, match="different sizes"):
        decoded_images(ds, "image", "train", num_workers=2, cache_dir=tmp_path)
    assert not [p for p in store_root(tmp_path).iterdir() if p.is_dir()]


def test_a_column_of_file_paths_is_decoded(tmp_path):
    paths = []
    for i in range(3):
        Image.fromarray(np.full((6, 6, 3), 40 * i, dtype=np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(str(tmp_path / f"{i}.png"))
    ds = datasets.Dataset.from_dict({"file": paths})
    images, mode = decoded_images(ds, "file", "train", num_workers=1, cache_dir=tmp_path / "cache")
    assert mode == "RGB" and images.shape == (3, 3, 6, 6) and images[2].unique().tolist() == [80]


def test_the_features_declared_mode_wins_over_the_first_image(tmp_path):
    images = [Image.fromarray(np.full((4, 4), 7, dtype=np.uint8)),
              Image.fromarray(np.full((4, 4, 3), 9, dtype=np.uint8))]  # a grayscale image first, then a colour one
    features = datasets.Features({"image": datasets.Image(mode="RGB")})
    ds = datasets.Dataset.from_dict({"image": images}, features=features)
    decoded, mode = decoded_images(ds, "image", "train", num_workers=1, cache_dir=tmp_path)
    assert mode == "RGB" and decoded.shape == (2, 3, 4, 4) and decoded[0].unique().tolist() == [7]
