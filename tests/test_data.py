import numpy as np
import pytest
import torch
from PIL import Image

import datasets
from hf_distill.data import find_columns, load_image_dataset


def test_digits_builtin_split_is_fixed_and_stratified():
    data = load_image_dataset("digits")
    again = load_image_dataset("digits")
    assert data.train_images.shape == (1257, 1, 8, 8) and data.test_images.shape == (540, 1, 8, 8)
    assert data.train_images.dtype == torch.uint8 and data.train_images.max() == 255
    assert torch.equal(data.train_images, again.train_images)
    counts = data.train_labels.bincount().float()
    assert counts.min() / counts.max() > 0.95
    assert data.class_names == [str(i) for i in range(10)]
    assert load_image_dataset("digits", resolution=16).train_images.shape[-1] == 16


@pytest.mark.parametrize("name,image_col,channels,side,first_class", [
    ("fashion_mnist", "image", 1, 28, "T - shirt / top"),
    ("mnist", "image", 1, 28, "0"),
    ("cifar10_5k", "img", 3, 32, "airplane"),
])
def test_columns_detected_on_shared_datasets(shared_data, name, image_col, channels, side, first_class):
    builder = datasets.load_dataset_builder(str(shared_data / name))
    assert find_columns(builder.info.features) == (image_col, "label")
    data = load_image_dataset(str(shared_data / name), train_split="train[:300]", test_split="test[:100]")
    assert data.train_images.shape == (300, channels, side, side)
    assert data.test_images.shape == (100, channels, side, side)
    assert data.class_names[0] == first_class and data.num_classes == 10
    assert data.source["image_column"] == image_col


def test_resolution_resizes_real_data(shared_data):
    data = load_image_dataset(str(shared_data / "fashion_mnist"), train_split="train[:50]", test_split="test[:20]",
                              resolution=32)
    assert data.train_images.shape == (50, 1, 32, 32) and data.test_images.shape == (20, 1, 32, 32)


def _write_imagefolder(root, mode, sizes=((10, 10),)):
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                size = sizes[i % len(sizes)]
                shape = (*size, 3) if mode == "RGB" else size
                Image.fromarray(rng.integers(0, 255, shape, dtype=np.uint8), mode).save(root / split / cls / f"{i}.png")


def test_imagefolder_directory(tmp_path):
    _write_imagefolder(tmp_path, "RGB")
    data = load_image_dataset(str(tmp_path))
    assert data.class_names == ["cat", "dog"]
    assert data.train_images.shape == (6, 3, 10, 10)
    assert sorted(data.train_labels.tolist()) == [0, 0, 0, 1, 1, 1]


def test_mixed_sizes_need_resolution(tmp_path):
    _write_imagefolder(tmp_path, "L", sizes=((10, 10), (12, 12)))
    with pytest.raises(ValueError, match="--resolution"):
        load_image_dataset(str(tmp_path))
    assert load_image_dataset(str(tmp_path), resolution=8).train_images.shape == (6, 1, 8, 8)


def _parquet(path, labels, label_feature):
    images = [Image.fromarray(np.full((4, 4), 10 * i, dtype=np.uint8)) for i in range(len(labels))]
    features = datasets.Features({"picture": datasets.Image(), "target": label_feature})
    datasets.Dataset.from_dict({"picture": images, "target": labels}, features=features).to_parquet(str(path))


def test_parquet_files_with_name_fallback_and_slices(tmp_path):
    _parquet(tmp_path / "d.parquet", [0, 1, 2, 0, 1, 2, 0, 1, 2, 0], datasets.Value("int64"))
    data = load_image_dataset(str(tmp_path / "d.parquet"), train_split="train[:8]", test_split="train[8:]")
    assert data.class_names == ["0", "1", "2"] and len(data.train_labels) == 8 and len(data.test_labels) == 2
    assert data.source["image_column"] == "picture" and data.source["label_column"] == "target"


def test_clear_errors_for_bad_columns_splits_and_labels(tmp_path):
    _parquet(tmp_path / "d.parquet", ["a", "b"], datasets.Value("string"))
    with pytest.raises(ValueError, match=r"Split 'test' not found.*\['train'\]"):
        load_image_dataset(str(tmp_path / "d.parquet"), test_split="test")
    with pytest.raises(ValueError, match="not integer class ids"):
        load_image_dataset(str(tmp_path / "d.parquet"), test_split="train")
    with pytest.raises(ValueError, match=r"Column 'pixels'.*--image_column"):
        load_image_dataset(str(tmp_path / "d.parquet"), test_split="train", image_column="pixels")


def test_an_unlabelled_test_split_is_refused_before_decoding(tmp_path):
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    image = Image.fromarray(np.zeros((4, 4), dtype=np.uint8))
    (tmp_path / "data").mkdir()
    for split, labels in (("train", [0, 1, 0, 1]), ("test", [-1, -1])):
        datasets.Dataset.from_dict({"image": [image] * len(labels), "label": labels},
                                   features=features).to_parquet(str(tmp_path / "data" / f"{split}-00000-of-00001.parquet"))
    with pytest.raises(ValueError, match=r"Split 'test' has labels -1..-1.*--test_split"):
        load_image_dataset(str(tmp_path), cache_dir=str(tmp_path / "cache"))
    assert not (tmp_path / "cache" / "hf_distill_images").exists()
