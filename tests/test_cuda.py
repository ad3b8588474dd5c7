"""CUDA paths: RNG state restore, exact resume and bf16 autocast on a GPU. Skipped without CUDA; run by
`benchmarks/gpu_check.sh` on a GPU machine."""

import pytest
import torch
from accelerate.state import AcceleratorState
from transformers import TrainerCallback

from hf_distill import DistillationArguments, DistillationTrainer
from hf_distill.checkpoints import rng_state, set_rng_state

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
TINY = dict(ipc=2, iterations=4, num_teachers=1, teacher_epochs=2, batch_size=64, student_epochs=3, num_checkpoints=2,
            save_steps=2, do_eval=False, model_kwargs='{"net_width": 16}')


@pytest.fixture(autouse=True)
def deterministic_cudnn():
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def test_cuda_rng_state_is_saved_and_restored():
    torch.cuda.manual_seed(0)
    torch.rand(3, device="cuda")
    state = rng_state()
    assert "cuda" in state
    expected = torch.rand(5, device="cuda")
    torch.rand(7, device="cuda")
    set_rng_state(state)
    assert torch.equal(torch.rand(5, device="cuda"), expected)


class StopAt(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        control.should_training_stop = state.global_step == self.step


def test_resume_on_cuda_equals_the_uninterrupted_run(tmp_path):
    teachers = str(tmp_path / "teachers")
    whole = DistillationTrainer(DistillationArguments(output_dir=str(tmp_path / "whole"), teachers=teachers, **TINY))
    assert whole.accelerator.device.type == "cuda"
    reference = whole.train().images
    args = DistillationArguments(output_dir=str(tmp_path / "split"), teachers=teachers, **TINY)
    DistillationTrainer(args, callbacks=[StopAt(2)]).train()
    resumed = DistillationTrainer(args).train(resume_from_checkpoint="last").images
    assert torch.equal(resumed, reference)


def test_bf16_on_cuda_gives_finite_images_and_peak_memory(tmp_path):
    torch.cuda.reset_peak_memory_stats()
    trainer = DistillationTrainer(DistillationArguments(output_dir=str(tmp_path), mixed_precision="bf16", **TINY))
    try:
        images = trainer.train().images
    finally:
        AcceleratorState._reset_state()  # the process-wide state keeps bf16 otherwise
    assert torch.isfinite(images).all() and images.dtype == torch.float32
    # Bounds derived from the run (not measured: this file is skipped without a GPU). Floor: the teacher, the synthetic
    # images and their gradient were on the GPU at once, so the peak counts them (0 if the run stayed on the CPU).
    # Ceiling: the run's data, models and activations take < 10 MB and cuBLAS/cuDNN workspaces <= 32 MB each, so
    # 256 MB is passed only if memory grows far beyond what this run needs.
    teacher = sum(p.numel() * p.element_size() for p in trainer.teachers[0].parameters())
    floor = teacher + 2 * images.numel() * images.element_size()
    assert floor <= torch.cuda.max_memory_allocated() < 256 * 2**20, torch.cuda.memory_summary()
