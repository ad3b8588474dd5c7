"""Paths that make runs faster: bf16 autocast, torch.compile, the allocator setting; fp16 refused.

On a CUDA machine the trainer picks the GPU, so these also exercise the CUDA paths (`benchmarks/gpu_check.sh`).
"""

import platform
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
from accelerate.state import AcceleratorState

from hf_distill import DistillationArguments, DistillationTrainer
from hf_distill.models import create_model
from hf_distill.training import FitConfig, fit

TINY = dict(ipc=2, iterations=3, num_teachers=1, teacher_epochs=2, batch_size=64, student_epochs=2, num_checkpoints=2,
            eval_epochs=2, num_eval_runs=1, eval_protocols=["apm"], model_kwargs='{"net_width": 16}')


def test_bf16_autocast_reaches_every_loop(tmp_path):
    conv_dtypes = []

    def record(module, inputs, output):  # forward passes that train: teachers, students, image steps, evaluation
        if isinstance(module, nn.Conv2d) and torch.is_grad_enabled():
            conv_dtypes.append(output.dtype)

    handle = nn.modules.module.register_module_forward_hook(record)
    try:
        trainer = DistillationTrainer(DistillationArguments(output_dir=str(tmp_path), mixed_precision="bf16", **TINY))
        trainer.prepare_teachers()
        teacher_convs = list(conv_dtypes)
        distilled = trainer.train()
        results = trainer.evaluate()
    finally:
        handle.remove()
        AcceleratorState._reset_state()  # the process-wide state keeps bf16 otherwise; later trainers use "no"
    assert teacher_convs and set(teacher_convs) == {torch.bfloat16}  # teacher training
    assert set(conv_dtypes) == {torch.bfloat16}  # students, image steps, evaluation models
    assert distilled.images.dtype == torch.float32 and torch.isfinite(distilled.images).all()
    score, tested = results.headline["distilled"]["convnet3"], len(trainer.data.test_labels)
    assert len(score.runs) == 1 and round(score.runs[0] * tested / 100, 6).is_integer()  # a share of the test images


def _fit(compiled: bool, epochs: int = 3):
    torch.manual_seed(0)
    model = create_model("convnet3", 4, 1, 8, net_width=8)
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 1, 8, 8, generator=g), torch.randn(16, 4, generator=g)
    snapshots = fit(model, x, y, FitConfig(epochs=epochs, lr=0.05, batch_size=8, loss="l1", compile=compiled),
                    torch.Generator().manual_seed(2), snapshot_epochs=(1, epochs))
    return model, snapshots, x


@pytest.mark.slow
def test_compiled_training_matches_eager_and_its_snapshots_are_copies():
    eager, eager_snapshots, x = _fit(compiled=False)
    compiled, snapshots, _ = _fit(compiled=True)
    assert compiled._compiled_call_impl is not None and all(s._compiled_call_impl is not None for s in snapshots)
    for a, b in zip(eager.state_dict().values(), compiled.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    early = snapshots[0](x)
    assert torch.allclose(early, eager_snapshots[0](x), atol=1e-5, rtol=1e-4)
    assert not torch.allclose(early, snapshots[1](x), atol=1e-3)  # the epoch-1 copy is not the final model
    with torch.no_grad():
        for p in compiled.parameters():
            p.zero_()
    assert torch.equal(snapshots[0](x), early)  # a copy runs its own weights, not those of the model it was taken from


FAULTS = """
import resource, sys, torch
from hf_distill.allocator import keep_freed_memory
applied = keep_freed_memory() if sys.argv[1] == "keep" else None
for _ in range(20):
    torch.ones(64, 2**20 // 4).sum()  # 64 MB, freed at once
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    torch.ones(64, 2**20 // 4).sum()
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="a glibc setting")
def test_kept_memory_is_reused_without_page_faults():
    faults = {}
    for mode in ("default", "keep"):
        out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True).stdout
        applied, count = out.split()
        faults[mode] = int(count)
    assert applied == "True"
    assert faults["default"] > 20 * 16384 // 2  # 64 MB blocks are mapped and faulted in again on every allocation
    assert faults["keep"] < faults["default"] / 20
