"""Checkpoints of the APM loop: everything needed to continue a run exactly where it stopped.

`<output_dir>/checkpoint-<step>/` (step = iterations done) is written by the main process through
`atomic_directory`, so it is complete or absent: a kill during the write leaves only a dotted temporary
folder, which `list_checkpoints` ignores and the next `rotate_checkpoints` removes. It holds
`state.safetensors` (images, optimiser momentum, the loop's generator, the current student snapshots),
`state.json` (teacher draws, optimiser and scheduler settings, RNG states), `trainer_state.json`
(transformers' `TrainerState`: global_step, log history) and `args.json`.

RNG states with several processes: the loop draws only from `generator` and `teacher_draws`, which hold
the same state on every process (shared seed), so they are stored once. The global python, numpy, torch
and CUDA states are gathered from every process and stored as one entry per rank; each rank restores its
own entry (rank 0's when the run resumes on more processes than it was saved from).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import random
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
from transformers import TrainerState

from .arguments import LAST_CHECKPOINT
from .files import atomic_directory, read_json, read_tensors, save_tensors
from .training import freeze

logger = logging.getLogger(__name__)

CHECKPOINT_PREFIX = "checkpoint-"
TENSORS_FILE = "state.safetensors"
STATE_FILE = "state.json"
TRAINER_STATE_FILE = "trainer_state.json"
ARGS_FILE = "args.json"
_NAME = re.compile(rf"{CHECKPOINT_PREFIX}(\d+)")


IMAGE_MOMENTUM = 0.5
IMAGE_LR_DECAY = 0.3


@dataclass
class LoopState:
    """What the APM loop carries from one iteration to the next."""

    images: torch.Tensor
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    generator: torch.Generator
    teacher_draws: random.Random
    teacher_index: int = 0
    students: list[nn.Module] = field(default_factory=list)

    @classmethod
    def start(cls, images: torch.Tensor, generator: torch.Generator, lr: float, iterations: int,
              seed: int) -> "LoopState":
        """The loop before its first iteration: `images` become the optimised leaf, with SGD (momentum 0.5) whose lr
        drops x0.3 at half of `iterations`."""
        images.requires_grad_(True)
        optimizer = torch.optim.SGD([images], lr=lr, momentum=IMAGE_MOMENTUM)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [iterations // 2], gamma=IMAGE_LR_DECAY)
        return cls(images, optimizer, scheduler, generator, random.Random(seed))


@dataclass
class Checkpoint:
    """A checkpoint read back from disk; `restore` puts it into a freshly started loop."""

    path: Path
    tensors: dict[str, torch.Tensor]
    state: dict
    trainer_state: TrainerState
    args: dict

    def restore(self, loop: LoopState, new_student: Callable[[], nn.Module], rank: int) -> TrainerState:
        """Set the loop's images, optimiser, scheduler, generators and students, and this process's RNG states."""
        with torch.no_grad():
            loop.images.copy_(self.tensors["images"])
        loop.optimizer.load_state_dict({"state": _group(self.tensors, "optimizer."), "param_groups": self.state["optimizer"]})
        # the milestones are not stored: they follow from --iterations, which a resumed run must share
        loop.scheduler.load_state_dict({**self.state["scheduler"], "milestones": loop.scheduler.milestones})
        loop.generator.set_state(self.tensors["generator"])
        loop.teacher_draws.setstate(_python_state(self.state["teacher_draws"]))
        loop.teacher_index = self.state["teacher_index"]
        loop.students = []
        for _, weights in sorted(_group(self.tensors, "students.").items()):
            student = new_student()  # built before the RNG states are set, so building it draws nothing that counts
            student.load_state_dict(weights)
            loop.students.append(freeze(student))
        states = self.state["rng"]
        set_rng_state(states[rank] if rank < len(states) else states[0])
        return self.trainer_state


def save_checkpoint(output_dir: str | os.PathLike, loop: LoopState, trainer_state: TrainerState, args: dict,
                    rng_states: list[dict], with_students: bool) -> Path:
    """Write `checkpoint-<global_step>` atomically; the students only when the next iteration still uses them."""
    optimizer = loop.optimizer.state_dict()
    tensors = {"images": loop.images, "generator": loop.generator.get_state(), **_flatten("optimizer.", optimizer["state"])}
    if with_students:
        tensors.update(_flatten("students.", {k: s.state_dict() for k, s in enumerate(loop.students)}))
    state = {"teacher_index": loop.teacher_index, "teacher_draws": loop.teacher_draws.getstate(),
             "optimizer": optimizer["param_groups"],
             "scheduler": {k: v for k, v in loop.scheduler.state_dict().items() if k != "milestones"},
             "rng": rng_states}
    path = Path(output_dir) / f"{CHECKPOINT_PREFIX}{trainer_state.global_step}"
    with atomic_directory(path) as tmp:
        save_tensors(tensors, tmp / TENSORS_FILE)
        (tmp / STATE_FILE).write_text(json.dumps(state))
        trainer_state.save_to_json(str(tmp / TRAINER_STATE_FILE))
        (tmp / ARGS_FILE).write_text(json.dumps(args, indent=2))
    return path


def load_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a checkpoint written by `save_checkpoint`; an unreadable file raises a ValueError naming it."""
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"No checkpoint folder at {path}; pass a {CHECKPOINT_PREFIX}<step> folder, or 'last' for the "
                         f"newest in --output_dir, to --resume_from_checkpoint.")
    fix = f"Delete {path} to resume from the checkpoint before it."
    return Checkpoint(path, read_tensors(path / TENSORS_FILE, fix), read_json(path / STATE_FILE, fix),
                      TrainerState(**read_json(path / TRAINER_STATE_FILE, fix)), read_json(path / ARGS_FILE, fix))


def checkpoint_to_resume(resume: str | bool | None, output_dir: str | os.PathLike) -> Path | None:
    """The checkpoint folder `resume` names: a path, the newest in `output_dir` for True/'true'/'last', or None."""
    if isinstance(resume, str) and resume and resume.lower() not in LAST_CHECKPOINT:
        return Path(resume)
    newest = list_checkpoints(output_dir)[-1:]
    if not resume:
        if newest:
            logger.warning("%s holds %s; starting at iteration 0 anyway (pass --resume_from_checkpoint last to "
                           "continue from it).", output_dir, newest[0].name)
        return None
    if not newest:
        logger.warning("No checkpoint in %s to resume from: starting at iteration 0.", output_dir)
    return newest[0] if newest else None


def resumable_checkpoint(resume: str | bool | None, output_dir: str | os.PathLike,
                         differences: Callable[[dict], list[str]]) -> Checkpoint | None:
    """The checkpoint `resume` names (see `checkpoint_to_resume`), loaded; raise if `differences(its args)` names
    arguments that change the images."""
    path = checkpoint_to_resume(resume, output_dir)
    if path is None:
        return None
    checkpoint = load_checkpoint(path)
    changed = differences(checkpoint.args)
    if changed:
        raise ValueError(f"{path} was written by a run with other arguments ({'; '.join(changed)}); resume it with "
                         f"its own arguments, or start this run without --resume_from_checkpoint.")
    return checkpoint


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints in `output_dir`, oldest first (temporary dotted folders are not checkpoints)."""
    found = [(int(m.group(1)), p) for p in Path(output_dir).glob(f"{CHECKPOINT_PREFIX}*")
             if (m := _NAME.fullmatch(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def rotate_checkpoints(output_dir: str | os.PathLike, limit: int | None) -> None:
    """Delete all but the newest `limit` checkpoints (None keeps all) and folders left by interrupted writes."""
    for leftover in Path(output_dir).glob(f".{CHECKPOINT_PREFIX}*"):
        shutil.rmtree(leftover)
    for path in list_checkpoints(output_dir)[:-limit] if limit else []:
        doomed = path.with_name(f".{path.name}-deleting")
        os.replace(path, doomed)  # renamed first, so a kill during the deletion leaves no half checkpoint behind
        shutil.rmtree(doomed)


def rng_state() -> dict:
    """This process's python, numpy, torch and (when CUDA is in use, its current GPU's) CUDA RNG states, JSON-able."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [name, keys.tolist(), position, has_gauss, gauss],
             "torch": _encode(torch.get_rng_state())}
    if torch.cuda.is_initialized():
        state["cuda"] = _encode(torch.cuda.get_rng_state())  # this process's device only: each rank has its own GPU
    return state


def set_rng_state(state: dict) -> None:
    """Restore states saved by `rng_state`."""
    random.setstate(_python_state(state["python"]))
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    torch.set_rng_state(_decode(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(_decode(state["cuda"]))


def _python_state(saved: list) -> tuple:
    version, internal, gauss = saved
    return version, tuple(internal), gauss


def _encode(state: torch.Tensor) -> str:
    return base64.b64encode(state.numpy().tobytes()).decode("ascii")


def _decode(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _flatten(prefix: str, groups: dict[int, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {f"{prefix}{index}.{name}": value for index, group in groups.items() for name, value in group.items()}


def _group(tensors: dict[str, torch.Tensor], prefix: str) -> dict[int, dict[str, torch.Tensor]]:
    groups: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, name = key[len(prefix):].split(".", 1)
            groups.setdefault(int(index), {})[name] = value
    return groups
