"""Two CPU processes (gloo) split the work, keep identical synthetic images after every step, and resume exactly,
also from a checkpoint written with the other number of processes."""

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.slow  # the fast tier (pytest -m "not slow") leaves this file out

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--ipc", "2", "--iterations", "4", "--num_teachers", "2", "--teacher_epochs", "2", "--student_epochs", "3",
        "--num_checkpoints", "2", "--segment_size", "5", "--eval_epochs", "3", "--num_eval_runs", "2",
        "--eval_label_modes", "logits_l1", "hard", "--model_kwargs", '{"net_width": 16}', "--save_steps", "2"]


def _launch(script_args, num_processes, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    multi = ["--multi_gpu"] if num_processes > 1 else []
    cmd = [sys.executable, "-m", "accelerate.commands.launch", *multi, "--num_processes", str(num_processes),
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(port),
           *script_args]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_two_processes_split_work_and_keep_identical_images(tmp_path):
    out = tmp_path / "two"
    out.mkdir()
    _launch([str(ROOT / "tests/distributed/two_ranks.py"), str(out), "--output_dir", str(out / "run"), *TINY], 2, tmp_path)
    ranks = [load_file(out / f"rank{r}.safetensors") for r in range(2)]
    info = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [i["world"] for i in info] == [2, 2]
    assert torch.equal(ranks[0]["images"], ranks[1]["images"])
    assert len(info[0]["image_hashes"]) == 4 and info[0]["image_hashes"] == info[1]["image_hashes"]  # after every step
    assert [i["resume_is_exact"] for i in info] == [True, True]  # each rank restored the same state from checkpoint-2
    assert torch.equal(ranks[0]["soft_labels"], ranks[1]["soft_labels"])
    # 20 images in segments of 5: 4 segments per iteration, 2 per rank; 2 teachers, 1 per rank; 12 eval jobs, 6 per rank
    # (2 label modes x distilled and paired random subset, plus distilled_8bit and the per-run random draws in the
    # headline mode, x 2 runs)
    assert [i["work"] for i in info] == [{"segments": 8, "eval_jobs": 6, "teachers": 1}] * 2
    assert info[0]["results"] == info[1]["results"]

    single = tmp_path / "one"
    single.mkdir()
    _launch([str(ROOT / "tests/distributed/two_ranks.py"), str(single), "--output_dir", str(single / "run"), *TINY], 1, tmp_path)
    alone = load_file(single / "rank0.safetensors")
    assert json.loads((single / "rank0.json").read_text())["resume_is_exact"]
    moved = (alone["images"] - ranks[0]["images"]).abs().max()
    assert moved < 1e-3, f"two processes should compute the single-process update, max difference {moved}"

    # a checkpoint continues on the other number of processes: 1 -> 2 and 2 -> 1 end where the uninterrupted run did
    # (launched as `accelerate launch -m hf_distill distill`, the README's multi-process command)
    for saved, num_processes, uninterrupted in [(single, 2, alone), (out, 1, ranks[0])]:
        run = tmp_path / f"resumed_on_{num_processes}"
        shutil.copytree(saved / "run", run)
        _launch(["-m", "hf_distill", "distill", "--output_dir", str(run), *TINY, "--do_eval", "false",
                 "--resume_from_checkpoint", str(run / "checkpoint-2")], num_processes, tmp_path)
        resumed = load_file(run / "distilled" / "distilled.safetensors")["images"]
        moved = (resumed - uninterrupted["images"]).abs().max()
        assert moved < 1e-3, f"resumed on {num_processes} process(es): max difference {moved} from the uninterrupted run"


def test_example_script_runs_under_accelerate_launch_with_two_processes(tmp_path):
    proc = _launch([str(ROOT / "examples/distill.py"), "--output_dir", str(tmp_path / "run"), *TINY], 2, tmp_path)
    assert "distilled (apm)" in proc.stdout  # --eval_label_modes logits_l1: the old spellings
    results = json.loads((tmp_path / "run" / "eval_results.json").read_text())
    assert results["compute"]["num_processes"] == 2
    assert len(results["results"]["distilled"]["convnet3"]["runs"]) == 2
    assert (tmp_path / "run" / "distilled" / "distilled.safetensors").exists()
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-4"]
