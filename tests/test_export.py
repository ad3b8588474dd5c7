"""The distilled/ folder is a Hub dataset repo: parquet + card for `load_dataset`, exact floats for `load_distilled`."""

import re

import pytest
import torch
from huggingface_hub import DatasetCard

import datasets
from hf_distill import DistillationArguments, DistilledSet, Preprocessing, load_distilled, load_image_dataset, save_distilled
from hf_distill.evaluation import EvalJob, JobScore, collect
from hf_distill.export import write_card
from hf_distill.hub import dataset_provenance
from hf_distill.records import Compute, EvalResults, EvalSettings, RunMetadata, Summary

CLASSES = [f"class {i}" for i in range(10)]


def synthetic_set(channels: int, zca: bool, ipc: int = 2, metadata: dict | None = None) -> DistilledSet:
    """A small DistilledSet whose float images are off the 8-bit grid, as optimised images are."""
    g = torch.Generator().manual_seed(channels + 2 * zca)
    preprocessing = Preprocessing.fit(torch.randint(0, 256, (300, channels, 8, 8), generator=g, dtype=torch.uint8), zca=zca)
    real = torch.randint(0, 256, (10 * ipc, channels, 8, 8), generator=g, dtype=torch.uint8)
    images = preprocessing(real) + 0.05 * torch.randn(real.shape, generator=g)
    return DistilledSet(images, torch.arange(10).repeat_interleave(ipc), torch.randn(10 * ipc, 10, generator=g),
                        preprocessing, CLASSES, RunMetadata.from_dict(metadata or {}))


def run_metadata() -> dict:
    """What `DistillationTrainer.train` records, for a run on a Hub dataset."""
    args = DistillationArguments(dataset="org/tiny-digits", ipc=2, eval_protocols=["apm", "hard"],
                                 model_kwargs='{"net_width": 16}', eval_epochs=2, hub_dataset_id="org/tiny-apm")
    source = {"dataset": "org/tiny-digits", "config_name": None, "train_split": "train", "test_split": "test",
              "image_column": "image", "label_column": "label", "fingerprint": "f1e2d3c4b5a69788",
              "revision": "0123456789abcdef0123456789abcdef01234567", "license": "mit",
              "url": "https://huggingface.co/datasets/org/tiny-digits"}
    return {"method": "APM", "model": "convnet3", "args": args.to_dict(), "source": source, "iterations_done": 150,
            "soft_labels": "logits of teacher 0 on the final images",
            "teachers": {"architecture": "convnet3", "count": 2, "source": "outputs/x/teachers", "epochs": [30, 30],
                         "train_accuracy": [97.5, 98.25]},
            "compute": {"wall_time_s": 125.0, "peak_memory_mb": 812.0, "device": "cpu", "num_processes": 1,
                        "hardware": "Test CPU, 2 cores", "torch": torch.__version__}}


def eval_results() -> EvalResults:
    scores = []
    for mode, sets in (("apm", ("distilled", "distilled_8bit", "random_subset")), ("hard", ("distilled", "random_subset"))):
        for set_name in sets:
            for run, score in enumerate((61.25, 63.75)):
                scores.append(JobScore(EvalJob(set_name, mode, "convnet3", run), score + len(set_name) + {"apm": 9, "hard": 4}[mode], 1.0))
    settings = EvalSettings(["apm", "hard"], ["convnet3"], 2, 2, 0.1, 256, "color_crop", 4.0, "test", 540, 2)
    return EvalResults("org/tiny-digits", 2, "convnet3", Summary.of([91.5, 92.5]), collect(scores), settings,
                       compute=Compute(300.0, 900.0))


@pytest.mark.parametrize("channels,zca", [(1, False), (3, True)])
def test_saved_folder_is_a_hub_dataset_repo(tmp_path, channels, zca):
    distilled = synthetic_set(channels, zca)
    folder = save_distilled(distilled, tmp_path / "distilled")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert files == ["README.md", "data/train-00000-of-00001.parquet", "distilled.safetensors"]
    assert all(p.stat().st_size < 1_000_000 for p in folder.rglob("*") if p.is_file())

    ds = datasets.load_dataset(str(folder), split="train", cache_dir=str(tmp_path / "cache"))
    assert ds.features == datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=CLASSES),
                                             "soft_label": datasets.List(datasets.Value("float32"), length=10)})
    rows = ds.with_format("torch")[:]
    assert torch.equal(rows["image"], distilled.pixels_uint8())  # PNG holds the clipped, rounded pixels exactly
    assert torch.equal(rows["label"], distilled.labels) and torch.equal(rows["soft_label"], distilled.soft_labels)
    assert (distilled.pixels_uint8().float() / 255 - distilled.pixels()).abs().max() <= 0.5 / 255 + 1e-6
    assert ds[0]["image"].mode == ("L" if channels == 1 else "RGB")

    loaded = load_distilled(folder)
    assert torch.equal(loaded.images, distilled.images) and torch.equal(loaded.soft_labels, distilled.soft_labels)
    assert loaded.preprocessing.state_dict().keys() == distilled.preprocessing.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(loaded.preprocessing.state_dict().values(),
                                                 distilled.preprocessing.state_dict().values()))
    real = torch.randint(0, 256, (4, channels, 8, 8), dtype=torch.uint8)
    assert torch.equal(loaded.preprocessing(real), distilled.preprocessing(real))

    card = DatasetCard.load(folder / "README.md")
    assert card.data.license == "unknown" and card.data.hf_distill["preprocessing"]["type"] == ("zca" if zca else "normalize")
    assert card.data.configs == [{"config_name": "default", "data_files": [{"split": "train", "path": "data/train-*"}]}]
    assert "unknown — check the source dataset" in card.text and "Not evaluated yet" in card.text


def test_the_card_names_each_extension_beyond_the_paper(tmp_path):
    metadata = run_metadata()
    metadata["args"].update(image_dsa=True, student_models=["convnet3"])  # students of the run's model: the paper's
    card = DatasetCard.load(save_distilled(synthetic_set(1, False, metadata=metadata), tmp_path / "d") / "README.md")
    assert card.data.hf_distill["extensions"] == ["image_dsa"]
    assert "with what hf-distill adds to the paper:\n`--image_dsa`" in card.text and "no hf-distill extension" not in card.text


def test_card_reports_everything_and_its_snippet_trains_from_load_dataset(tmp_path, capsys):
    distilled = synthetic_set(1, False, metadata=run_metadata())
    folder = save_distilled(distilled, tmp_path / "distilled")
    before = (folder / "README.md").read_text()
    assert "Not evaluated yet" in before and "org/tiny-apm" in before  # --hub_dataset_id goes into the snippet

    write_card(folder, distilled, eval_results(), repo_id=str(folder))
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "data", "distilled.safetensors"]  # no temp file left
    card = DatasetCard.load(folder / "README.md")
    text = card.text
    assert card.data.license == "mit" and card.data.source_datasets == ["org/tiny-digits"]
    for expected in ("org/tiny-digits", "0123456789abcdef0123456789abcdef01234567", "f1e2d3c4b5a69788",  # source
                     "APM", "arXiv:2312.08912", "@article{chen2023apm", "Chen, Mingyang",  # method, citation
                     "`convnet3`", "| count | 2 |", "97.50, 98.25", "92.00 ± 0.71 over 2 teachers",  # teachers
                     "2 per class", "1 x 8 x 8", "mean = (", "std = (",  # IPC, resolution, preprocessing
                     "`mit`, inherited from the source dataset",  # license
                     "split `test` (540 images)",  # evaluation: protocol, then distilled vs 8-bit vs random vs hard
                     "| distilled, exact floats (`distilled.safetensors`) | soft: teacher logits, L1 | `convnet3` | 80.50 ± 1.77 | 2 |",
                     "| distilled, 8-bit `image` column | soft: teacher logits, L1 |",
                     "| random real subset, same IPC (paired) | hard: class ids, CE |",
                     "2.1 min", "Test CPU, 2 cores", "812 MB",  # compute
                     "not comparable with hard-label results", "load_dataset(repo"):
        assert expected in text, expected
    for name in DistillationArguments.__dataclass_fields__:
        assert f"| `{name}` |" in text, name
    assert "as the paper describes it (no hf-distill extension)" in text and card.data.hf_distill["extensions"] == []

    snippet = re.search(r"## Usage.*?```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(re.sub(r"EPOCHS = \d+", "EPOCHS = 2", snippet), namespace)  # copy-paste runs; test_hub runs it over HTTP too
    assert namespace["images"].shape == (20, 1, 8, 8) and torch.isfinite(namespace["loss"])
    assert re.search(r"final L1 loss \d+\.\d{4}", capsys.readouterr().out)


def test_sources_record_revision_fingerprint_and_license(tmp_path):
    digits = load_image_dataset("digits").source
    assert digits["license"] == "cc-by-4.0" and digits["revision"].startswith("scikit-learn ")
    assert re.fullmatch(r"[0-9a-f]{16}", digits["fingerprint"])
    folder = tmp_path / "local"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: apache-2.0\n---\n# local\n")
    assert dataset_provenance(str(folder)) == {"revision": None, "license": "apache-2.0", "url": None}
    assert dataset_provenance("data/*.parquet")["license"] == "unknown"
