"""The one supervised training loop shared by teachers, APM students and evaluation models."""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from .augment import DEFAULT_STRATEGY, dsa

LOSSES = ("ce", "l1", "kd")


@dataclass
class FitConfig:
    """Optimisation settings: SGD with momentum, weight decay, lr x0.1 at half of `epochs`."""

    epochs: int
    lr: float
    batch_size: int = 256
    momentum: float = 0.9
    weight_decay: float = 5e-4
    loss: str = "ce"
    augment: bool = True
    dsa_strategy: str = DEFAULT_STRATEGY
    kd_temperature: float = 4.0
    compile: bool = False  # compile the model's forward with torch.compile (`compile_model`)


def target_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str, temperature: float = 4.0) -> torch.Tensor:
    """Per-sample loss: 'ce' on class ids, 'l1' on teacher logits, 'kd' (KL at `temperature`) on teacher logits."""
    if loss == "ce":
        return F.cross_entropy(outputs, targets, reduction="none")
    if loss == "l1":
        return (outputs - targets).abs().mean(dim=1)
    if loss == "kd":
        log_student = F.log_softmax(outputs / temperature, dim=1)
        log_teacher = F.log_softmax(targets / temperature, dim=1)
        return F.kl_div(log_student, log_teacher, log_target=True, reduction="none").sum(1) * temperature**2
    raise ValueError(f"Unknown loss {loss!r}; choose one of {LOSSES}.")


def fit(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    config: FitConfig,
    generator: torch.Generator,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    snapshot_epochs: tuple[int, ...] = (),
    autocast: Callable[[], ContextManager] = contextlib.nullcontext,
    shard: tuple[int, int] = (0, 1),
    all_reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    progress: str | None = None,
    on_epoch_end: Callable[[int], None] | None = None,
) -> list[nn.Module]:
    """Train `model` in place on (`inputs`, `targets`); return frozen copies taken after `snapshot_epochs`.

    `inputs` may live on the CPU (e.g. uint8 real data); each batch moves to the model's device and
    goes through `transform`, then DSA. With `shard=(rank, world)` each process computes the loss on
    its share of every batch and `all_reduce` sums the gradients, which gives exactly the full-batch
    step on every rank (batches and augmentations come from the shared `generator`).
    `on_epoch_end(epoch)` is called after each epoch.
    """
    device = next(model.parameters()).device
    if config.compile:
        compile_model(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[config.epochs // 2], gamma=0.1)
    rank, world = shard
    snapshots = []
    model.train()
    epochs = range(1, config.epochs + 1)
    for epoch in tqdm(epochs, desc=progress, leave=False) if progress else epochs:
        for batch in torch.randperm(len(inputs), generator=generator).split(config.batch_size):
            x = inputs[batch].to(device, non_blocking=True)
            x = transform(x) if transform is not None else x
            if config.augment:
                x = dsa(x, generator, config.dsa_strategy)
            y = targets[batch].to(device, non_blocking=True)
            local = slice(rank * len(batch) // world, (rank + 1) * len(batch) // world)
            with autocast():
                losses = target_loss(model(x[local]).float(), y[local], config.loss, config.kd_temperature)
            (losses.sum() / len(batch)).backward()
            if world > 1:
                _sum_gradients(model, all_reduce)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        if epoch in snapshot_epochs:
            snapshots.append(frozen_copy(model))
        if on_epoch_end is not None:
            on_epoch_end(epoch)
    return snapshots


RECOMPILE_LIMIT = 64


def compile_model(model: nn.Module) -> nn.Module:
    """`model`, its forward compiled with torch.compile (in place: the state dict keeps its keys).

    Every architecture, mode (training, no-grad) and batch shape is one cached graph of the forward code the model
    families share; the limit is raised from torch's 8 so that scoring several architectures does not silently fall
    back to eager."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    model._compiled_call_impl = None
    model.compile()
    return model


def frozen_copy(model: nn.Module) -> nn.Module:
    """A frozen deep copy of `model`, compiled again if `model` is (a copied compiled forward would run `model`)."""
    snapshot = freeze(copy.deepcopy(model))
    return compile_model(snapshot) if model._compiled_call_impl is not None else snapshot


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no parameter gradients (inputs can still receive gradients)."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


@torch.no_grad()
def predict(model: nn.Module, inputs: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
            batch_size: int = 512, autocast: Callable[[], ContextManager] = contextlib.nullcontext) -> torch.Tensor:
    """Logits of `model` (in eval mode) for every input, as a float32 CPU tensor."""
    return torch.cat(list(_batched_logits(model, inputs, transform, batch_size, autocast)))


@torch.no_grad()
def accuracy(model: nn.Module, inputs: torch.Tensor, labels: torch.Tensor,
             transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
             autocast: Callable[[], ContextManager] = contextlib.nullcontext, batch_size: int = 512) -> float:
    """Top-1 accuracy in percent, batch by batch (no logits are kept); NaN for no inputs."""
    if len(inputs) != len(labels):
        raise ValueError(f"accuracy() got {len(inputs)} inputs but {len(labels)} labels.")
    if len(labels) == 0:
        return float("nan")
    batches = _batched_logits(model, inputs, transform, batch_size, autocast)
    correct = sum(int((logits.argmax(1) == y).sum()) for logits, y in zip(batches, labels.split(batch_size)))
    return correct / len(labels) * 100


def _batched_logits(model: nn.Module, inputs: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None,
                    batch_size: int, autocast: Callable[[], ContextManager]) -> Iterator[torch.Tensor]:
    """float32 CPU logits of `model` in eval mode, one batch of `inputs` at a time (its mode is restored after)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    try:
        for x in inputs.split(batch_size):
            x = x.to(device)
            with autocast():
                yield model(transform(x) if transform is not None else x).float().cpu()
    finally:
        model.train(was_training)


def _sum_gradients(model: nn.Module, all_reduce: Callable[[torch.Tensor], torch.Tensor]) -> None:
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:  # a rank whose share of a tiny batch is empty still joins the reduction
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    grads = [p.grad for p in params]
    flat = all_reduce(torch.cat([g.flatten() for g in grads]))
    for g, reduced in zip(grads, flat.split([g.numel() for g in grads])):
        g.copy_(reduced.view_as(g))
