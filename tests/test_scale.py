"""Scale: memory that does not grow with the dataset, and a 1000-class run exported for the Hub."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import datasets
from hf_distill import DistillationArguments, DistillationTrainer, load_distilled
from hf_distill.fake_data import make_image_dataset

ROOT = Path(__file__).resolve().parents[1]


def _peak_rss_anon_kb(tmp_path: Path, train_rows: int) -> int:
    """Peak RssAnon of `tests/memory_probe.py` on a generated set whose `datasets` cache exists already. The first
    `load_dataset` of new parquet files is `datasets`' own work, not hf-distill's, and its allocator may keep pages,
    so it runs in a process of its own first (benchmarks/scale.py times it as 'prepare'); the probe then decodes
    into the store and runs the whole pipeline."""
    data = make_image_dataset(tmp_path / f"data{train_rows}", train_rows, 500, num_classes=10, side=32, num_proc=2)
    env = {**os.environ, "HF_DATASETS_CACHE": str(tmp_path / "cache")}
    prepare = f"import datasets; datasets.load_dataset({str(data)!r}, cache_dir={str(tmp_path / 'cache')!r})"
    subprocess.run([sys.executable, "-c", prepare], env=env, check=True, capture_output=True, timeout=900)
    proc = subprocess.run([sys.executable, str(ROOT / "tests" / "memory_probe.py"), str(data), str(tmp_path / "cache"),
                           str(tmp_path / f"run{train_rows}")], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["train_images"] == train_rows
    return result["peak_rss_anon_kb"]


def test_peak_anonymous_memory_does_not_grow_with_the_dataset(tmp_path):
    """40k vs 5k images of 3x32x32 (123 MB vs 15 MB decoded): the whole run's peak RssAnon grows by less than 15%."""
    small, large = _peak_rss_anon_kb(tmp_path, 5_000), _peak_rss_anon_kb(tmp_path, 40_000)
    print(f"peak RssAnon: {small / 1024:.0f} MB with 5,000 images, {large / 1024:.0f} MB with 40,000")  # pytest -s
    assert large < 1.15 * small, f"peak RssAnon {small} kB with 5k images, {large} kB with 40k"


def test_thousand_classes_run_end_to_end_and_export_in_shards(tmp_path, monkeypatch, caplog):
    import hf_distill.distilled as distilled_module

    monkeypatch.setattr(distilled_module, "MAX_SHARD_BYTES", 1_500_000)  # ~4.3 MB of rows: 3 parquet files
    data = make_image_dataset(tmp_path / "data", 2000, 1000, num_classes=1000, side=8)
    args = DistillationArguments(dataset=str(data), cache_dir=str(tmp_path / "cache"), output_dir=str(tmp_path / "run"),
                                 ipc=1, iterations=2, num_teachers=1, teacher_epochs=1, student_epochs=2,
                                 num_checkpoints=1, eval_epochs=2, num_eval_runs=1, model_kwargs='{"net_width": 8}')
    trainer = DistillationTrainer(args)
    trainer.train()
    folder = trainer.save_distilled()
    caplog.set_level("INFO", logger="hf_distill.trainer")
    trainer.save_eval_results(trainer.evaluate())
    plan = next(r.message for r in caplog.records if r.message.startswith("Evaluation plan"))
    assert ("6 models = [distilled (logits_l1 + hard), distilled_8bit (logits_l1), random_subset (logits_l1 + hard), "
            "random_draws (logits_l1)]") in plan
    assert "2 epochs x 4 steps: 48 training steps" in plan
    assert any("training the 6 models should take about" in r.message for r in caplog.records)
    assert any("with its test scoring: the evaluation should take about" in r.message for r in caplog.records)

    shards = sorted(p.name for p in (folder / "data").iterdir())
    assert shards == [f"train-0000{i}-of-00003.parquet" for i in range(3)]
    exported = datasets.load_dataset(str(folder), split="train")
    assert len(exported) == 1000 and len(exported[0]["soft_label"]) == 1000
    assert exported.features["label"].names == [f"class_{c:04d}" for c in range(1000)]
    assert sorted(exported["label"]) == list(range(1000))
    distilled = load_distilled(folder)
    assert distilled.images.shape == (1000, 3, 8, 8) and distilled.soft_labels.shape == (1000, 1000)
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert set(results["results"]["label_modes"]) == {"logits_l1", "hard"}
