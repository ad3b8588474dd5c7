"""Long runs: bitwise determinism, exact resume after SIGKILL (also during a checkpoint write), kept teachers.

The killed runs are subprocesses of `tests/killable_run.py` (examples/distill.py stopped at a chosen point);
the reference and resumed runs happen in this process with one thread, like the subprocesses
(OMP_NUM_THREADS=1), so that their results can be compared bitwise.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import hf_distill.teachers as teachers_module
from hf_distill import DistillationArguments, DistillationTrainer, load_image_dataset
from hf_distill.checkpoints import list_checkpoints
from hf_distill.evaluation import sample_real_subset
from hf_distill.training import predict

pytestmark = pytest.mark.slow  # the fast tier (pytest -m "not slow") leaves this file out

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(ipc=1, iterations=12, student_epochs=5, num_checkpoints=2, num_teachers=2, teacher_epochs=1, save_steps=4,
            logging_steps=2, do_eval=False, model_kwargs='{"net_width": 16}')


@pytest.fixture(scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return load_image_dataset("digits")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, data, one_thread) -> Path:
    root = tmp_path_factory.mktemp("shared")
    DistillationTrainer(_args(root / "run", root / "teachers"), data=data).prepare_teachers()
    return root / "teachers"


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data, teachers):
    """An uninterrupted run."""
    trainer = DistillationTrainer(_args(tmp_path_factory.mktemp("reference"), teachers), data=data)
    trainer.train()
    return trainer


def _args(output_dir, teachers_dir=None, **overrides) -> DistillationArguments:
    teachers = {"teachers": str(teachers_dir)} if teachers_dir else {}
    return DistillationArguments(output_dir=str(output_dir), **teachers, **{**TINY, **overrides})


def _flags(output_dir, teachers_dir=None, **overrides) -> list[str]:
    values = {"output_dir": output_dir, **({"teachers": teachers_dir} if teachers_dir else {}), **TINY, **overrides}
    return [text for name, value in values.items() for text in (f"--{name}", str(value))]


def _run_until_killed(tmp_path, point: str, number: int, flags: list[str]) -> None:
    """Run killable_run.py until it reaches `point` `number`, then SIGKILL it."""
    marker, log = tmp_path / f"{point}-{number}.reached", tmp_path / f"{point}-{number}.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    with open(log, "w") as stderr:
        proc = subprocess.Popen([sys.executable, str(ROOT / "tests" / "killable_run.py"), str(marker), point, str(number),
                                 *flags], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, f"the run ended before {point} {number}:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"{point} {number} not reached in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL


def _files(folder: Path) -> dict:
    return {f.name: (f.stat().st_mtime_ns, hashlib.sha256(f.read_bytes()).hexdigest()) for f in sorted(folder.iterdir())}


def test_same_arguments_and_seed_give_bitwise_identical_images(tmp_path, data, teachers, reference):
    again = DistillationTrainer(_args(tmp_path / "again", teachers), data=data).train()
    assert torch.equal(again.images, reference.distilled.images)
    assert torch.equal(again.soft_labels, reference.distilled.soft_labels)
    other_seed = DistillationTrainer(_args(tmp_path / "seed1", teachers, seed=1), data=data).train()
    assert not torch.equal(other_seed.images, reference.distilled.images)


@pytest.mark.parametrize("extension", [{"image_dsa": True}, {"student_models": ["convnet3", "alexnet_small"]}])
def test_each_extension_changes_the_images_and_resumes_exactly(tmp_path, data, teachers, reference, extension):
    def trainer():
        return DistillationTrainer(_args(tmp_path / "run", teachers, save_total_limit=None, **extension), data=data)
    extended = trainer().train()
    assert not torch.equal(extended.images, reference.distilled.images)  # the faithful path is the reference
    # checkpoint-4 holds the students of the refresh at iteration 3: alexnet_small ones with --student_models
    assert torch.equal(trainer().train(resume_from_checkpoint=str(tmp_path / "run" / "checkpoint-4")).images,
                       extended.images)


def test_real_scale_labels_keep_the_images_and_scale_the_soft_labels_to_the_real_images(tmp_path, data, teachers,
                                                                                        reference):
    scaled = DistillationTrainer(_args(tmp_path / "run", teachers, real_scale_labels=True), data=data).train()
    assert torch.equal(scaled.images, reference.distilled.images)  # the images are APM's, bit for bit
    raw = reference.distilled.soft_labels
    ratio = scaled.soft_labels / raw
    assert torch.allclose(ratio, ratio.flatten()[0]) and ratio.flatten()[0] < 1  # one factor, shrinking the logits
    real = reference.distilled.preprocessing(data.train_images[sample_real_subset(
        data.train_labels, scaled.ipc, data.num_classes, torch.Generator().manual_seed(0))])
    assert scaled.soft_labels.std() == pytest.approx(predict(reference.teachers[0], real).std().item(), rel=1e-4)


def test_sigkill_then_resume_equals_the_uninterrupted_run(tmp_path, data, teachers, reference):
    out = tmp_path / "run"
    flags = _flags(out, teachers)
    # killed at iteration 7: checkpoint-4 is written, and the students of iterations 7-9 are not
    _run_until_killed(tmp_path, "step", 7, flags)
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-4"] and not (out / "distilled").exists()
    # resumed from it with the command-line flag, then killed half-way through writing checkpoint-8
    _run_until_killed(tmp_path, "checkpoint", 8, flags + ["--resume_from_checkpoint", "last"])
    [partial] = out.glob(".checkpoint-8-*")
    assert (partial / "state.safetensors").exists() and not (partial / "args.json").exists()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-4"]
    # resumed again: from checkpoint-4, the last complete one, to the uninterrupted run's images bit for bit
    trainer = DistillationTrainer(_args(out, teachers), data=data)
    distilled = trainer.train(resume_from_checkpoint=True)
    assert torch.equal(distilled.images, reference.distilled.images)
    assert torch.equal(distilled.soft_labels, reference.distilled.soft_labels)
    assert trainer.state.log_history == reference.state.log_history  # steps 2, 4 come from the checkpoint
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-8", "checkpoint-12"]  # --save_total_limit 2
    assert not list(out.glob(".checkpoint-*"))  # the half-written folder was cleaned up


def test_killed_teacher_training_keeps_finished_teachers(tmp_path, data, monkeypatch):
    out = tmp_path / "run"
    _run_until_killed(tmp_path, "teacher", 2, _flags(out, num_teachers=3))
    root = out / "teachers"
    assert sorted(p.name for p in root.iterdir()) == ["preprocessing.safetensors", "teacher-000"]
    before = _files(root / "teacher-000")
    trained = []
    train_teacher = teachers_module.train_teacher
    monkeypatch.setattr(teachers_module, "train_teacher",
                        lambda spec, *args, **kwargs: trained.append(spec.seed) or train_teacher(spec, *args, **kwargs))
    DistillationTrainer(_args(out, num_teachers=3), data=data).prepare_teachers()
    assert trained == [1, 2]  # teacher i has seed `seed + i`: only the two missing teachers were trained
    assert _files(root / "teacher-000") == before
