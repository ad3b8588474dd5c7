"""`DistillationArguments`: every knob of an APM run, parsed by `HfArgumentParser` (CLI or YAML)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path

from .augment import DEFAULT_STRATEGY, parse_strategy

LABEL_MODES = ("logits_l1", "kd", "hard")

# Defaults that depend on the dataset ("configs as data"); a value given by the user always wins.
# Paper settings (APM, Table A9) are the generic defaults; `digits` is sized to finish in minutes on 2 CPU cores.
GENERIC_DEFAULTS = dict(ipc=10, iterations=2500, lr_img=1.0, lr_net=0.02, student_epochs=250, eval_epochs=1000,
                        num_teachers=5, teacher_epochs=50, dsa_strategy=DEFAULT_STRATEGY)
DATASET_DEFAULTS = {
    "digits": dict(ipc=10, iterations=150, lr_img=3.3, lr_net=0.1, student_epochs=60, eval_epochs=300,
                   num_teachers=3, teacher_epochs=30, dsa_strategy="color_crop_cutout_scale_rotate"),
}


def _arg(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class DistillationArguments:
    """Arguments of an APM dataset-distillation run.

    Fields left at `None` take a default that depends on the dataset: the paper's settings in general,
    smaller ones for the built-in `digits` (see `DATASET_DEFAULTS`). Names match the command-line flags.
    """

    # > Data
    dataset: str = _arg("digits", "Hub id, local folder (Hub layout or imagefolder), parquet files, or 'digits'.")
    dataset_config_name: str | None = _arg(None, "Configuration of the dataset, if it has several.")
    image_column: str | None = _arg(None, "Image column (default: the first `Image` feature).")
    label_column: str | None = _arg(None, "Label column (default: the first `ClassLabel` feature).")
    train_split: str | None = _arg(None, "Train split or slice (default: 'train').")
    test_split: str | None = _arg(None, "Test split or slice (default: 'test', else 'validation').")
    resolution: int | None = _arg(None, "Resize images to this side in pixels (default: keep).")
    output_dir: str | None = _arg(None, "Where outputs go (default: outputs/<dataset>-apm-ipc<ipc>).")

    # > Models
    model: str | None = _arg(None, "Distillation architecture, any timm name (default: convnet3, convnet4 at >= 64 px).")
    model_kwargs: str | None = _arg(None, "JSON dict of extra model arguments, e.g. '{\"net_width\": 64}' (a dict after parsing).")

    # > Teachers
    num_teachers: int | None = _arg(None, "Teachers in the pool (default 5; digits 3).")
    teacher_epochs: int | None = _arg(None, "Epochs per teacher (default 50; digits 30).")
    teachers_dir: str | None = _arg(None, "Reuse (and complete) the teachers saved here (default: <output_dir>/teachers).")

    # > APM
    ipc: int | None = _arg(None, "Synthetic images per class (default 10).")
    iterations: int | None = _arg(None, "Image updates (default 2500; digits 150).")
    lr_img: float | None = _arg(None, "Image learning rate, SGD momentum 0.5, x0.3 at half (default 1.0; digits 3.3).")
    lr_net: float | None = _arg(None, "Student and evaluation learning rate (default 0.02; digits 0.1).")
    student_epochs: int | None = _arg(None, "Epochs each student trains on the synthetic batch (default 250; digits 60).")
    num_checkpoints: int = _arg(5, "Student snapshots K used in the image loss, evenly spaced.")
    refresh_every: int = _arg(3, "Train fresh students every this many iterations.")
    ce_weight: float = _arg(0.1, "Weight of the teacher's cross-entropy term in the image loss.")
    batch_syn: int | None = _arg(None, "Synthetic images per iteration (default: all).")
    segment_size: int | None = _arg(None, "Images per gradient segment; smaller saves memory (default: batch_syn).")
    init: str = _arg("real", "Initialise images from random real images ('real') or Gaussian noise ('noise').",
                     choices=["real", "noise"])
    zca: bool = _arg(False, "ZCA-whiten inputs (eps 0.1) instead of mean/std normalisation.")
    batch_size: int = _arg(256, "Batch size for teachers, students and evaluation models.")
    dsa_strategy: str | None = _arg(None, f"DSA op groups, '_'-separated (default {DEFAULT_STRATEGY}; digits without flip).")
    mixed_precision: str = _arg("no", "Autocast precision.", choices=["no", "bf16", "fp16"])
    seed: int = _arg(0, "Seed of every random draw.")
    logging_steps: int = _arg(25, "Log the image loss every this many iterations.")

    # > Evaluation
    do_eval: bool = _arg(True, "Evaluate after distilling.")
    eval_models: list[str] | None = _arg(None, "Architectures trained on the distilled set (default: --model).")
    eval_epochs: int | None = _arg(None, "Epochs per evaluation model (default 1000; digits 300).")
    num_eval_runs: int = _arg(3, "Fresh initialisations per evaluated architecture.")
    eval_label_modes: list[str] = field(default_factory=lambda: list(LABEL_MODES), metadata={
        "help": "Targets for evaluation models: teacher logits with L1 ('logits_l1', APM's protocol), "
                "KL to teacher logits ('kd'), class ids ('hard'). The first is the headline.",
        "choices": list(LABEL_MODES)})
    kd_temperature: float = _arg(4.0, "Temperature of the 'kd' label mode.")

    def __post_init__(self):
        defaults = DATASET_DEFAULTS.get(self.dataset, GENERIC_DEFAULTS)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if isinstance(self.model_kwargs, str):
            self.model_kwargs = json.loads(self.model_kwargs)
        self.model_kwargs = dict(self.model_kwargs or {})
        if self.output_dir is None:
            self.output_dir = str(Path("outputs") / f"{_slug(self.dataset)}-apm-ipc{self.ipc}")
        parse_strategy(self.dsa_strategy)
        positive = ["ipc", "iterations", "student_epochs", "num_checkpoints", "refresh_every", "num_teachers",
                    "teacher_epochs", "eval_epochs", "num_eval_runs", "batch_size", "logging_steps"]
        for name in positive + ["batch_syn", "segment_size", "resolution"]:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"--{name} must be positive, got {value}.")
        for name in ("lr_img", "lr_net"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}.")
        if self.num_checkpoints > self.student_epochs:
            raise ValueError(f"--num_checkpoints ({self.num_checkpoints}) cannot exceed --student_epochs ({self.student_epochs}).")
        if self.segment_size is not None and self.batch_syn is not None and self.segment_size > self.batch_syn:
            raise ValueError(f"--segment_size ({self.segment_size}) cannot exceed --batch_syn ({self.batch_syn}).")
        unknown = [m for m in self.eval_label_modes if m not in LABEL_MODES]
        if unknown or not self.eval_label_modes:
            raise ValueError(f"--eval_label_modes {unknown} unknown; choose from {LABEL_MODES}.")

    def to_dict(self) -> dict:
        """JSON-able arguments."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _slug(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(dataset.rstrip("/")).name).strip("-").lower() or "dataset"
