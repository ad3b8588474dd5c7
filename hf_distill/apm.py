"""APM: Adversarial Prediction Matching (Chen et al., arXiv 2312.08912), the image objective.

Students trained on the synthetic set minimise their disagreement with a teacher; the synthetic
images then take a step that *maximises* it, while the teacher still recognises their class:

    L(x) = - sum_k mean | s_k(x) - t(x) |  +  ce_weight * CE(t(x), y)

With `standardize` (not in the paper) the disagreement compares z(s_k(x)) and z(t(x)), each image's logits minus
their mean over classes, divided by their standard deviation, so an image cannot raise it by inflating the scale
of the teacher's logits.
"""

from __future__ import annotations

import contextlib
from typing import Callable, ContextManager, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .augment import DSAParams, apply_dsa, select_rows
from .data import ImageClassificationData
from .evaluation import real_start
from .preprocessing import Preprocessing


def apm_loss(x: torch.Tensor, y: torch.Tensor, teacher: nn.Module, students: Sequence[nn.Module],
             ce_weight: float, standardize: bool = False) -> torch.Tensor:
    """The APM image loss: minus the students' L1 logit disagreement with the teacher, plus the teacher's CE."""
    t = teacher(x).float()
    return -disagreement(x, t, students, standardize) + ce_weight * F.cross_entropy(t, y)


def standardized(logits: torch.Tensor) -> torch.Tensor:
    """z(v) = (v - mean(v)) / std(v) over the classes of each row: the logits without their scale."""
    return (logits - logits.mean(1, keepdim=True)) / (logits.std(1, keepdim=True) + 1e-6)


def _logit_gap(student_logits: torch.Tensor, teacher_logits: torch.Tensor, standardize: bool) -> torch.Tensor:
    if standardize:
        student_logits, teacher_logits = standardized(student_logits), standardized(teacher_logits)
    return (student_logits - teacher_logits).abs().mean()


def disagreement(x: torch.Tensor, teacher_logits: torch.Tensor, students: Sequence[nn.Module],
                 standardize: bool = False) -> torch.Tensor:
    """sum_k mean | s_k(x) - t(x) |: how far the students' logits are from the teacher's (z-scored with `standardize`)."""
    return sum(_logit_gap(s(x).float(), teacher_logits, standardize) for s in students)


def mean_disagreement(images: torch.Tensor, batch: torch.Tensor, teacher: nn.Module, students: Sequence[nn.Module],
                      segment_size: int, autocast: Callable[[], ContextManager] = contextlib.nullcontext,
                      standardize: bool = False) -> float:
    """The students' mean L1 disagreement with the teacher on `images[batch]` (per student), one segment at a time."""
    gap = 0.0
    with torch.no_grad(), autocast():
        for segment in batch.split(segment_size):
            x = images[segment]
            gap += disagreement(x, teacher(x).float(), students, standardize).item() * len(segment)
    return gap / (len(batch) * len(students))


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
    views: DSAParams | None = None,
    standardize: bool = False,
) -> float:
    """Add d L(images[batch]) / d images into `images.grad`, one segment of `segment_size` at a time.

    Each segment's loss is weighted by |segment| / |batch|, so the summed gradient equals the
    full-batch one. With `shard=(rank, world)` this process handles segments rank, rank+world, ...;
    summing `images.grad` over processes then gives the full gradient. Returns this process's share
    of the loss. With `views` (one DSA draw for the whole batch), teacher and students see the images
    through it, each segment through its own rows of it, so the gradient does not depend on `segment_size`.
    `standardize` is `apm_loss`'s.

    The gradient is that of `apm_loss`, taken one student at a time: each student's term is
    differentiated on its own (its d/dt collected on a detached copy of the teacher's logits), then
    the teacher's graph once, so memory holds the teacher's graph and one student's, not K + 1.
    """
    rank, world = shard
    total = torch.zeros((), device=images.device)
    rows = torch.arange(len(batch)).split(segment_size)[rank::world]
    for segment, positions in zip(batch.split(segment_size)[rank::world], rows):
        weight = len(segment) / len(batch)
        x = images[segment].detach().requires_grad_(True)
        augmented = None if views is None else apply_dsa(x, select_rows(views, positions))
        view = x if augmented is None else augmented.detach().requires_grad_(True)  # the networks' input, a leaf
        with autocast():
            t = teacher(view).float()
        t_detached = t.detach().requires_grad_(True)
        for student in students:
            with autocast():
                term = -_logit_gap(student(view).float(), t_detached, standardize) * weight
            term.backward()
            total += term.detach()
        ce = ce_weight * F.cross_entropy(t, labels[segment]) * weight
        torch.autograd.backward([t, ce], [t_detached.grad, torch.ones_like(ce)])
        total += ce.detach()
        if augmented is not None:
            augmented.backward(view.grad)
        if images.grad is None:
            images.grad = torch.zeros_like(images)
        images.grad.index_add_(0, segment, x.grad)
    return total.item()


def initial_images(data: ImageClassificationData, ipc: int, init: str, preprocessing: Preprocessing,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The synthetic images before the first iteration, in model input space, and their class ids: `ipc` real train
    images per class (`init='real'`) or Gaussian noise (`'noise'`)."""
    if init == "real":
        return real_start(data, ipc, preprocessing, generator)
    labels = torch.arange(data.num_classes).repeat_interleave(ipc)
    return torch.randn(len(labels), data.channels, data.resolution, data.resolution, generator=generator), labels


def snapshot_epochs(epochs: int, num_checkpoints: int) -> tuple[int, ...]:
    """K evenly spaced epochs E/K, 2E/K, ..., E (rounded) at which student snapshots are kept."""
    if not 1 <= num_checkpoints <= epochs:
        raise ValueError(f"num_checkpoints={num_checkpoints} must be between 1 and student_epochs={epochs}.")
    return tuple(round(epochs * k / num_checkpoints) for k in range(1, num_checkpoints + 1))
