"""APM: Adversarial Prediction Matching (Chen et al., arXiv 2312.08912), the image objective.

Students trained on the synthetic set minimise their disagreement with a teacher; the synthetic
images then take a step that *maximises* it, while the teacher still recognises their class:

    L(x) = - sum_k mean | s_k(x) - t(x) |  +  ce_weight * CE(t(x), y)
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def apm_loss(x: torch.Tensor, y: torch.Tensor, teacher: nn.Module, students: Sequence[nn.Module],
             ce_weight: float) -> torch.Tensor:
    """The APM image loss: minus the students' L1 logit disagreement with the teacher, plus the teacher's CE."""
    t = teacher(x).float()
    return -disagreement(x, t, students) + ce_weight * F.cross_entropy(t, y)


def disagreement(x: torch.Tensor, teacher_logits: torch.Tensor, students: Sequence[nn.Module]) -> torch.Tensor:
    """sum_k mean | s_k(x) - t(x) |: how far the students' logits are from the teacher's."""
    return sum((s(x).float() - teacher_logits).abs().mean() for s in students)


def accumulate_image_gradient(
    images: torch.Tensor,
    batch: torch.Tensor,
    labels: torch.Tensor,
    teacher: nn.Module,
    students: Sequence[nn.Module],
    ce_weight: float,
    segment_size: int,
    shard: tuple[int, int] = (0, 1),
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
) -> float:
    """Add d L(images[batch]) / d images into `images.grad`, one segment of `segment_size` at a time.

    Each segment's loss is weighted by |segment| / |batch|, so the summed gradient equals the
    full-batch one. With `shard=(rank, world)` this process handles segments rank, rank+world, ...;
    summing `images.grad` over processes then gives the full gradient. Returns this process's share
    of the loss.
    """
    rank, world = shard
    total = 0.0
    for segment in batch.split(segment_size)[rank::world]:
        with autocast():
            loss = apm_loss(images[segment], labels[segment], teacher, students, ce_weight) * (len(segment) / len(batch))
        loss.backward()
        total += loss.item()
    return total


def snapshot_epochs(epochs: int, num_checkpoints: int) -> tuple[int, ...]:
    """K evenly spaced epochs E/K, 2E/K, ..., E (rounded) at which student snapshots are kept."""
    if not 1 <= num_checkpoints <= epochs:
        raise ValueError(f"num_checkpoints={num_checkpoints} must be between 1 and student_epochs={epochs}.")
    return tuple(round(epochs * k / num_checkpoints) for k in range(1, num_checkpoints + 1))
