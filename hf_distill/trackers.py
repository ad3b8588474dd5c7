"""Experiment trackers (TensorBoard, Weights & Biases, ...) through Accelerate: which ones a run reports to, and what
they receive besides the training logs."""

from __future__ import annotations

import json
import logging
import os

import torch
from accelerate import Accelerator
from accelerate.tracking import GeneralTracker, TensorBoardTracker, WandBTracker
from accelerate.utils import LoggerType
from accelerate.utils import imports as accelerate_imports

from .records import IterationTime

TRACKERS = tuple(t.value for t in LoggerType if t.value != "all")
logger = logging.getLogger(__name__)
EXTRAS = ("tensorboard", "wandb")  # trackers with an hf-distill extra: pip install "hf-distill[<name>]"


def is_installed(name: str) -> bool:
    """Whether the package of tracker `name` can be imported."""
    return bool(getattr(accelerate_imports, f"is_{name}_available")())


def tracker_names(report_to: str) -> list[str]:
    """The trackers that `--report_to` names: 'none', 'all' (every installed one) or a comma list; raise if one is
    unknown or its package is missing."""
    names = [name.strip() for name in report_to.split(",") if name.strip()]
    if names in ([], ["none"]):
        return []
    if names == ["all"]:
        return [name for name in TRACKERS if is_installed(name)]
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"--report_to {name!r} is not a tracker; choose 'none', 'all' or a comma list of {list(TRACKERS)}.")
        if not is_installed(name):
            install = f'pip install "hf-distill[{name}]"' if name in EXTRAS else f"pip install {name}"
            raise ValueError(f"--report_to {name} needs the {name} package, which is not installed: {install}, or drop "
                             f"{name} from --report_to.")
    return list(dict.fromkeys(names))


def make_trackers(report_to: str, run_name: str, logging_dir: str) -> list[GeneralTracker | str]:
    """Accelerate's `log_with` for the run: TensorBoard writes to <logging_dir>/<run_name>; a W&B run is named
    `run_name` in the project $WANDB_PROJECT (default 'hf-distill'); the others take `run_name` as their project."""
    trackers: list[GeneralTracker | str] = []
    for name in tracker_names(report_to):
        if name == "tensorboard":
            trackers.append(TensorBoardTracker(run_name, logging_dir))
        elif name == "wandb":
            trackers.append(WandBTracker(os.environ.get("WANDB_PROJECT", "hf-distill"), name=run_name))
        else:
            trackers.append(name)
    return trackers


def tracker_config(args: dict) -> dict:
    """The run's arguments as trackers accept them: numbers, strings and booleans (lists and dicts as JSON)."""
    return {k: v if isinstance(v, (int, float, str, bool)) else json.dumps(v) for k, v in args.items() if v is not None}


def log_image(accelerator: Accelerator, name: str, image: torch.Tensor, step: int) -> None:
    """Send one 3 x H x W image in [0, 1] to the trackers that take images (TensorBoard, W&B); a tracker that fails
    to take it is skipped with a warning, since the run's outputs are already written."""
    image = image.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
    for tracker in accelerator.trackers:
        try:
            if isinstance(tracker, TensorBoardTracker):
                tracker.log_images({name: image[None]}, step, dataformats="NHWC")
            elif isinstance(tracker, WandBTracker):
                tracker.log_images({name: [image]}, step)
        except Exception as error:  # noqa: BLE001  (any tracker library error)
            logger.warning("Could not send the image grid to %s: %s", tracker.name, error)


class RunTrackers:
    """The trackers of one run: started on first use (with the run's arguments as their configuration), so that a
    tracker that cannot start fails the run before any long work."""

    def __init__(self, accelerator: Accelerator, run_name: str, args: dict, report_to: str):
        self.accelerator, self.run_name, self.args, self.report_to = accelerator, run_name, args, report_to
        self.started = False

    def start(self) -> bool:
        """Whether the run reports to trackers (starting them the first time)."""
        if self.accelerator.log_with and not self.started:
            try:
                self.accelerator.init_trackers(self.run_name, config=tracker_config(self.args))
            except Exception as error:  # each tracker raises its own kinds (login, network, files)
                raise ConnectionError(f"--report_to {self.report_to} could not start: {type(error).__name__}: "
                                      f"{error}. Log in to the tracker (e.g. `wandb login`, or WANDB_MODE=offline), "
                                      f"or leave it out of --report_to.") from error
            self.started = True
        return bool(self.accelerator.log_with)

    def log(self, values: dict[str, float], step: int) -> None:
        if self.start():
            self.accelerator.log(values, step=step)

    def log_training(self, logs: dict[str, float], times: list[IterationTime], seconds_per_iteration: float,
                     step: int) -> None:
        """Log one logging window of APM: the loss, lr_img and disagreement of `logs`, and its iteration times."""
        refreshes = [t.refresh_s for t in times if t.refresh_s > 0]
        self.log({"train/loss": logs["loss"], "train/lr_img": logs["lr_img"], "train/disagreement": logs["disagreement"],
                  "time/s_per_iteration": seconds_per_iteration,
                  "time/refresh_s": sum(refreshes) / len(refreshes) if refreshes else 0.0,
                  "time/image_step_s": sum(t.image_step_s for t in times) / max(1, len(times))}, step)

    def image(self, name: str, image: torch.Tensor, step: int) -> None:
        if self.start():
            log_image(self.accelerator, name, image, step)
