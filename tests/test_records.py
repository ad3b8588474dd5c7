"""Typed records: their JSON round-trips, and results files written before protocols got one vocabulary still load."""

import json
from pathlib import Path

import pytest

from hf_distill.records import RESULTS_VERSION, EvalResults, RunMetadata, Summary
from hf_distill.teachers import TeacherConfig

ROOT = Path(__file__).resolve().parents[1]


def version_1_results() -> dict:
    """An `eval_results.json` as written before version 2: protocol `logits_l1`, no "version", prose in "protocol"."""
    def entry(*runs):
        return Summary.of(list(runs)).to_dict()
    soft = {"distilled": {"convnet3": entry(60.0, 62.0)}, "random_subset": {"convnet3": entry(55.0, 58.0)},
            "distilled_8bit": {"convnet3": entry(59.0, 61.0)}}
    hard = {"distilled": {"convnet3": entry(40.0, 41.0)}, "random_subset": {"convnet3": entry(42.0, 44.0)}}
    return {"dataset": "digits", "ipc": 1, "model": "convnet3",
            "results": {"teacher": entry(90.0, 92.0), **soft, "label_modes": {"logits_l1": soft, "hard": hard},
                        "paired_difference": {}},
            "protocol": {"label_modes": ["logits_l1", "hard"], "headline_label_mode": "logits_l1",
                         "eval_models": ["convnet3"], "eval_epochs": 300, "num_eval_runs": 2, "lr_net": 0.1,
                         "batch_size": 256, "dsa_strategy": "color_crop", "test_split": "test", "test_size": 540,
                         "random_subset": "prose that version 2 keeps in the card template", "teachers": 3},
            "args": {"seed": 0},
            "compute": {"wall_time_s": 10.0, "peak_memory_mb": 900.0, "device": "cpu", "num_processes": 1,
                        "hardware": "Test CPU", "torch": "2"}}


def test_a_version_1_results_file_loads_with_apm_for_logits_l1_and_keeps_its_keys():
    old = version_1_results()
    results = EvalResults.from_dict(old)
    assert list(results.scores) == ["apm", "hard"] and results.settings.headline == "apm"
    assert results.headline["distilled"]["convnet3"].runs == [60.0, 62.0]
    paired = results.paired_difference
    assert paired["apm"]["convnet3"].runs == [5.0, 4.0] and paired["hard"]["convnet3"].runs == [-2.0, -3.0]
    written = results.to_dict()
    assert written["version"] == RESULTS_VERSION == 2
    assert written["results"]["distilled"] == old["results"]["distilled"]  # the headline at the top, as before
    assert set(written["results"]["label_modes"]) == {"apm", "hard"}
    assert {k for k in old["protocol"] if k != "random_subset"} <= set(written["protocol"])  # prose left out
    assert EvalResults.from_dict(json.loads(json.dumps(written))) == results


@pytest.mark.parametrize("name", ["cifar10_5k_ipc10", "fashion_mnist_ipc10"])
def test_committed_benchmark_results_load(name):
    """Rows that `benchmarks/run.py` wrote (version 1, with extra keys of its own) still read as results."""
    committed = json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text())
    results = EvalResults.from_dict(committed)
    assert results.headline["distilled"][results.model].mean == pytest.approx(
        committed["results"]["distilled"][committed["model"]]["mean"])


def test_run_metadata_and_teacher_configs_round_trip_and_ignore_other_keys():
    config = TeacherConfig("convnet3", 10, [str(i) for i in range(10)], 1, 8, 30, 0, 0.05, 256, "color", 97.5,
                           {"net_width": 16}, {"type": "mean_std"}, {"dataset": "digits"})
    timm_keys = {"num_features": 128, "pretrained_cfg": {"input_size": [1, 8, 8]}}  # an exported pool's config.json
    assert TeacherConfig.from_dict({**config.to_dict(), **timm_keys}) == config
    meta = RunMetadata.from_dict({"model": "convnet3", "iterations_done": 150, "unknown": 1,
                                  "compute": {"wall_time_s": 1.0, "peak_memory_mb": 2.0},
                                  "teachers": {"architecture": "convnet3", "count": 2, "epochs": [30, 30]}})
    assert meta.compute.peak_memory_mb == 2.0 and meta.teachers.count == 2 and meta.method == "APM"
    assert RunMetadata.from_dict(json.loads(json.dumps(meta.to_dict()))) == meta
