"""The `hf-distill` command, run as users run it: one line `error: ...` and a status for every input or environment
error (2: bad input, 1: a failure on the way), no traceback unless --debug, nothing left that looks complete."""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import hf_distill
from hf_distill import DistillationArguments, DistillationTrainer, load_image_dataset

pytestmark = pytest.mark.slow  # the fast tier (pytest -m "not slow") leaves this file out

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--ipc", "1", "--iterations", "4", "--num_teachers", "1", "--teacher_epochs", "1", "--student_epochs", "2",
        "--num_checkpoints", "2", "--save_steps", "2", "--model_kwargs", '{"net_width": 16}']
NO_EVAL = ["--do_eval", "false"]


def hf_distill_cli(*argv: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m hf_distill argv` (what the `hf-distill` console script runs), offline."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    return subprocess.run([sys.executable, "-m", "hf_distill", *argv], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def distill(*flags: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return hf_distill_cli("distill", *flags, env=env)


def assert_one_line_error(proc: subprocess.CompletedProcess, status: int, pattern: str) -> None:
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == status, proc.stderr[-2000:]
    assert len(errors) == 1 and errors[0] == proc.stderr.strip().splitlines()[-1], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr + proc.stdout
    assert re.search(pattern, errors[0]), errors[0]


@pytest.fixture(scope="module")
def pool(tmp_path_factory) -> Path:
    """A one-teacher pool and a finished tiny run (checkpoints 2 and 4) that used it."""
    root = tmp_path_factory.mktemp("cli")
    args = DistillationArguments(output_dir=str(root / "run"), teachers=str(root / "teachers"), ipc=1, iterations=4,
                                 num_teachers=1, teacher_epochs=1, student_epochs=2, num_checkpoints=2, save_steps=2,
                                 do_eval=False, model_kwargs={"net_width": 16})
    DistillationTrainer(args, data=load_image_dataset("digits")).train()
    return root


def test_console_command_version_and_help():
    assert subprocess.run([shutil.which("hf-distill") or "hf-distill", "--version"], capture_output=True,
                          text=True).stdout.strip() == f"hf-distill {hf_distill.__version__}"
    top = hf_distill_cli("--help")
    assert top.returncode == 0 and "distill" in top.stdout
    flags = distill("--help")
    assert flags.returncode == 0 and "--report_to" in flags.stdout and "--debug" in flags.stdout


@pytest.mark.parametrize("flags,pattern", [
    (["--ipcc", "3"], r"^error: unrecognized arguments: --ipcc 3; did you mean --ipc\?"),
    (["--mixed_precision", "fp32"], r"^error: argument --mixed_precision.*invalid choice: 'fp32'"),
    (["--model_kwargs", "{bad"], r"^error: .*'\{bad' is not valid JSON"),
    (["--config", "no_such.yaml"], r"^error: \[Errno 2\] No such file or directory: 'no_such.yaml'"),
    (["--report_to", "tensorbored"], r"^error: --report_to 'tensorbored' is not a tracker; choose 'none', 'all'"),
    (["--dataset", "./no_such_dataset_xyz"], r"^error: --dataset './no_such_dataset_xyz': no such file or folder"),
    (["--dataset", "~/no/such/dataset"], r"^error: --dataset '~/no/such/dataset': no such file or folder"),
    (["--test_split", "validation"], r"^error: Split 'validation' not found in 'digits'"),
    (["--model", "convnet99"], r"^error: Unknown model 'convnet99'.*Did you mean: convnet4, convnet3"),
    (["--model_kwargs", '{"net_widht": 8}'], r"^error: Model 'convnet3' does not work on 1x8x8 images .*'net_widht'"),
    (["--ipc", "1000"], r"^error: Class \d has \d+ training images, fewer than ipc=1000.*Lower --ipc"),
])
def test_bad_input_is_one_line_with_status_2_and_no_output(tmp_path, flags, pattern):
    proc = distill("--output_dir", str(tmp_path / "run"), *flags)
    assert_one_line_error(proc, 2, pattern)
    assert not (tmp_path / "run").exists()


def test_no_command_and_a_malformed_config_are_one_line_errors(tmp_path):
    assert_one_line_error(hf_distill_cli(), 2, r"^error: no command; run `hf-distill \{distill,evaluate,leaderboard\}")
    (tmp_path / "bad.yaml").write_text("ipc: [\n")
    assert_one_line_error(distill("--config", str(tmp_path / "bad.yaml")), 2, r"bad.yaml is not valid YAML")


def test_debug_shows_the_traceback(tmp_path):
    for proc in (distill("--dataset", "./no_such", "--debug"),
                 distill("--dataset", "./no_such", env={"HF_DISTILL_DEBUG": "1"})):
        assert proc.returncode != 0 and "Traceback" in proc.stderr and "no such file or folder" in proc.stderr


def test_no_network_is_a_failure_with_status_1(tmp_path):
    proc = distill("--dataset", "nobody/nothing", "--output_dir", str(tmp_path / "run"))
    assert_one_line_error(proc, 1, r"^error: The Hugging Face Hub could not be reached for dataset 'nobody/nothing'.*"
                                   r"pass its local folder as --dataset")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("spoil,pattern", [
    ("resolution", r"teacher-000 was trained for classes/channels/resolution.*another --teachers"),
    ("truncate", r"model.safetensors is missing, truncated or corrupt.*Delete the folder .*teacher-000 and rerun"),
])
def test_teachers_that_cannot_be_used_give_status_2(tmp_path, pool, spoil, pattern):
    teachers = tmp_path / "teachers"
    shutil.copytree(pool / "teachers", teachers)
    if spoil == "resolution":
        config = teachers / "teacher-000" / "config.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "resolution": 16}))
    else:
        weights = teachers / "teacher-000" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    proc = distill(*TINY, *NO_EVAL, "--teachers", str(teachers), "--output_dir", str(tmp_path / "run"))
    assert_one_line_error(proc, 2, pattern)
    assert not (tmp_path / "run").exists()


def test_run_folder_problems_give_status_2_and_keep_the_folder(tmp_path, pool):
    run = tmp_path / "run"
    shutil.copytree(pool / "run", run)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    teachers = ["--teachers", str(pool / "teachers"), "--output_dir", str(run)]
    other = distill(*TINY, *NO_EVAL, *teachers, "--lr_img", "1.0")
    assert_one_line_error(other, 2, r"holds a run with other arguments \(--lr_img 0.33 -> 1.0\).*--overwrite_output_dir")
    state = run / "checkpoint-4" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    corrupt = distill(*TINY, *NO_EVAL, *teachers, "--resume_from_checkpoint", "last")
    assert_one_line_error(corrupt, 2, r"checkpoint-4/state.safetensors is missing, truncated or corrupt.*Delete")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before and not (run / "distilled").exists()


def test_non_finite_loss_is_a_failure_with_status_1_and_no_distilled_set(tmp_path, pool):
    run = tmp_path / "run"
    proc = distill(*TINY, *NO_EVAL, "--teachers", str(pool / "teachers"), "--output_dir", str(run), "--lr_img", "1e38")
    assert_one_line_error(proc, 1, r"^error: The APM loss is nan at iteration \d of 4.*Lower --lr_img")
    assert not (run / "distilled").exists() and not (run / "distilled_grid.png").exists()


def test_tensorboard_receives_the_training_logs_the_results_and_the_grid(tmp_path, pool):
    run = tmp_path / "run"
    proc = distill(*TINY, "--eval_epochs", "2", "--num_eval_runs", "2", "--logging_steps", "2", "--teachers",
                   str(pool / "teachers"), "--output_dir", str(run), "--report_to", "tensorboard", "--run_name", "tiny")
    assert proc.returncode == 0, proc.stderr[-3000:]
    events = EventAccumulator(str(run / "runs" / "tiny"), size_guidance={"images": 0, "scalars": 0})
    events.Reload()
    scalars = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    history = json.loads((run / "checkpoint-4" / "trainer_state.json").read_text())["log_history"]
    assert [step for step, _ in scalars["train/loss"]] == [2, 4]
    for key in ("loss", "lr_img", "disagreement"):
        assert [v for _, v in scalars[f"train/{key}"]] == pytest.approx([log[key] for log in history], rel=1e-6)
    assert all(v > 0 for _, v in scalars["train/disagreement"] + scalars["time/s_per_iteration"])
    assert {"time/refresh_s", "time/image_step_s"} <= set(scalars)
    results = json.loads((run / "eval_results.json").read_text())["results"]
    assert scalars["eval/apm/distilled/convnet3"] == [(4, pytest.approx(results["distilled"]["convnet3"]["mean"]))]
    assert scalars["eval/apm/paired_difference/convnet3"][0][1] == pytest.approx(
        results["paired_difference"]["apm"]["convnet3"]["mean"])
    assert events.Tags()["images"] == ["distilled"]
    assert "Distilled - random subset (apm, convnet3):" in proc.stdout.splitlines()[-2]
