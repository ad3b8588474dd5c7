"""`DistillationArguments`: every knob of an APM run, parsed by `HfArgumentParser` (CLI or YAML)."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .augment import DEFAULT_STRATEGY, parse_strategy
from .evaluation import NO_AUGMENTATION, PROTOCOL_ALIASES, PROTOCOLS, protocol_name
from .trackers import tracker_names

DEFAULT_PROTOCOLS = ("apm", "hard")  # the headline and the hard-label score that spec §7 always reports
ARGUMENT_ALIASES = {"eval_label_modes": "eval_protocols"}  # earlier names, still read from YAML and flags

# Fields that leave the distilled images unchanged: an output_dir or a checkpoint may be reused when only these differ.
RUN_NEUTRAL_FIELDS = ("output_dir", "preprocessing_num_workers", "cache_dir", "logging_steps", "report_to", "logging_dir",
                      "run_name", "save_steps", "save_total_limit",
                      "resume_from_checkpoint", "overwrite_output_dir", "do_eval", "eval_models", "eval_epochs",
                      "num_eval_runs", "eval_protocols", "eval_lr", "eval_dsa_strategy", "kd_temperature",
                      "push_to_hub", "hub_dataset_id", "hub_private", "hub_teachers_id")
LAST_CHECKPOINT = ("true", "last")  # --resume_from_checkpoint values meaning the newest checkpoint in output_dir

# Defaults that depend on the dataset ("configs as data"); a value given by the user always wins.
# Paper settings (APM, Table A9) are the generic defaults; `digits` is sized to finish in minutes on 2 CPU cores.
GENERIC_DEFAULTS = dict(ipc=10, iterations=2500, lr_img=1.0, lr_net=0.02, student_epochs=250, eval_epochs=1000,
                        num_teachers=5, teacher_epochs=50, dsa_strategy=DEFAULT_STRATEGY)
DATASET_DEFAULTS = {
    # IPC 1: at IPC 10, 100 real digits already train a model to the teachers' accuracy, so no set can show a gain
    # (benchmarks/NOTES.md, "The digits demo"); lr_img keeps lr_img x iterations / images at 5, as at IPC 10.
    "digits": dict(ipc=1, iterations=150, lr_img=0.33, lr_net=0.1, student_epochs=25, eval_epochs=300,
                   num_teachers=3, teacher_epochs=30, dsa_strategy="color_crop_cutout_scale_rotate"),
}


def _arg(default, help: str, **extra):
    return field(default=default, metadata={"help": help, **extra})


@dataclass
class DistillationArguments:
    """Arguments of an APM dataset-distillation run.

    Fields left at `None` take a default that depends on the dataset: the paper's settings in general,
    smaller ones for the built-in `digits` (see `DATASET_DEFAULTS`). Names match the command-line flags.

    Defaults that differ from the official APM code (github.com/mchen725/DD_APM, its argparse defaults, README and
    the paper's Table A9, read at commit 53c8847):
    - `num_teachers` 5 and `teacher_epochs` 50 (official: 100 teachers of 100 epochs, lr x0.1 at the fixed epoch 50,
      each kept at its epoch of best *test* accuracy; here: lr x0.1 at half, the last epoch is kept).
    - `zca` off (Table A9 whitens CIFAR: pass --zca). Without ZCA the official code normalises with fixed CIFAR
      statistics; here the mean and std are fitted on the train split.
    - `num_eval_runs` 3 (official 5); `eval_protocols` apm and hard (official: L1 to teacher logits only);
      soft labels from teacher 0 (official: a random teacher); the final set is scored once (official: every 50
      iterations, keeping the best test accuracy).
    - `ipc` 10 (official argparse 50); `lr_net` 0.02, `student_epochs` 250, `refresh_every` 3 and `ce_weight` 0.1
      follow Table A9, not the official argparse defaults (0.01, 500, every 6 iterations, 10).
    - Epoch counts are exact: 2500 iterations, 250 student epochs, 1000 evaluation epochs (each official loop runs
      one more), and every random draw is seeded (official: network initialisation is seeded from the clock).
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
    preprocessing_num_workers: int | None = _arg(None, "Processes that decode a split the first time it is used "
                                                       "(default: the available cores).")
    cache_dir: str | None = _arg(None, "Cache folder for `datasets` and for the decoded images, which later runs "
                                       "memory-map (default: the `datasets` cache, ~/.cache/huggingface/datasets).")

    # > Models
    model: str | None = _arg(None, "Distillation architecture, any timm name (default: convnet3, convnet4 at >= 64 px).")
    model_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "Extra model arguments as a JSON object, e.g. '{\"net_width\": 64}'."})

    # > Teachers
    num_teachers: int | None = _arg(None, "Teachers in the pool (default 5; digits 3).")
    teacher_epochs: int | None = _arg(None, "Epochs per teacher (default 50; digits 30).")
    teachers: str | None = _arg(None, "Teacher pool: a local folder, reused and completed with newly trained teachers, "
                                      "or 'hf-hub:org/name[@revision]', downloaded and used as is "
                                      "(default: <output_dir>/teachers).")

    # > APM
    ipc: int | None = _arg(None, "Synthetic images per class (default 10; digits 1).")
    iterations: int | None = _arg(None, "Image updates (default 2500; digits 150).")
    lr_img: float | None = _arg(None, "Image learning rate, SGD momentum 0.5, x0.3 at half (default 1.0; digits 0.33).")
    lr_net: float | None = _arg(None, "Student and evaluation learning rate (default 0.02; digits 0.1).")
    student_epochs: int | None = _arg(None, "Epochs each student trains on the synthetic batch (default 250; digits 25).")
    num_checkpoints: int = _arg(5, "Student snapshots K used in the image loss, evenly spaced.")
    refresh_every: int = _arg(3, "Train fresh students every this many iterations.")
    ce_weight: float = _arg(0.1, "Weight of the teacher's cross-entropy term in the image loss.")
    batch_syn: int | None = _arg(None, "Synthetic images per iteration (default: all).")
    segment_size: int | None = _arg(None, "Images per gradient segment; smaller saves memory (default: batch_syn).")
    student_models: list[str] | None = _arg(None, "Not in the paper: architectures of the students, taken in turn at "
                                                  "each refresh, so the images are hard for more than one network "
                                                  "(default: --model alone, APM as published).")
    image_dsa: bool = _arg(False, "Not in the paper: the image update sees the images through one DSA draw per "
                                  "iteration (the same view for teacher and students), so they must stay hard under "
                                  "augmentation. Off: APM as published.")
    standardize_logits: bool = _arg(False, "Not in the paper: the image loss compares the students' and the teacher's "
                                           "logits after z-scoring each image's logits over the classes, so the images "
                                           "cannot raise the disagreement by inflating the teacher's logit scale. Off: "
                                           "APM as published.")
    real_scale_labels: bool = _arg(False, "Not in the paper: ship teacher 0's logits rescaled (one factor for the set) "
                                          "to the standard deviation they have on the starting real images, since "
                                          "the image update inflates them. Off: APM as published.")
    init: str = _arg("real", "Initialise images from random real images ('real') or Gaussian noise ('noise').",
                     choices=["real", "noise"])
    zca: bool = _arg(False, "ZCA-whiten inputs (eps 0.1) instead of mean/std normalisation.")
    batch_size: int = _arg(256, "Batch size for teachers, students and evaluation models.")
    dsa_strategy: str | None = _arg(None, f"DSA op groups, '_'-separated (default {DEFAULT_STRATEGY}; digits without flip).")
    mixed_precision: str = _arg("no", "Autocast precision: 'bf16' (CPUs and GPUs that have it), or 'no'. 'fp16' is "
                                      "refused: it needs loss scaling, which hf-distill does not do.",
                                choices=["no", "bf16", "fp16"])
    torch_compile: bool = _arg(False, "Compile the models of the hot loops (students, teachers, evaluation models) "
                                      "with torch.compile: a slower start (compiling takes tens of seconds per model "
                                      "mode), faster steps on long runs. Changes results in the last float digits.")
    seed: int = _arg(0, "Seed of every random draw.")
    logging_steps: int = _arg(25, "Log the image loss every this many iterations.")
    report_to: str = _arg("none", "Trackers that receive the logs: 'none', 'all', or a comma list of Accelerate trackers "
                                  "such as 'tensorboard,wandb' (each needs its package, e.g. "
                                  "`pip install \"hf-distill[tensorboard]\"`).")
    logging_dir: str | None = _arg(None, "Tracker folder (default: <output_dir>/runs).")
    run_name: str | None = _arg(None, "Name of the run in the trackers (default: the output folder's name and the "
                                      "start time).")

    # > Long runs
    save_steps: int = _arg(100, "Write <output_dir>/checkpoint-<iteration> every this many iterations, and at the last one.")
    save_total_limit: int | None = _arg(2, "Keep the newest this many checkpoints (None: keep all).")
    resume_from_checkpoint: str | None = _arg(None, "Continue from this checkpoint folder, or from the newest one in "
                                                    "--output_dir with 'last' (or 'true').")
    overwrite_output_dir: bool = _arg(False, "Start afresh in an --output_dir that holds a run with other arguments: "
                                             "its checkpoints, results and teachers (unless --teachers) are deleted.")

    # > Evaluation
    do_eval: bool = _arg(True, "Evaluate after distilling.")
    eval_models: list[str] | None = _arg(None, "Architectures trained on the distilled set (default: --model).")
    eval_epochs: int | None = _arg(None, "Epochs per evaluation model (default 1000; digits 300).")
    eval_lr: float | None = _arg(None, "Learning rate of the evaluation models (default: --lr_net).")
    eval_dsa_strategy: str | None = _arg(None, "DSA op groups of the evaluation models (default: --dsa_strategy); "
                                               "'none' trains them without augmentation.")
    num_eval_runs: int = _arg(3, "Fresh initialisations per evaluated architecture.")
    eval_protocols: list[str] = field(default_factory=lambda: list(DEFAULT_PROTOCOLS), metadata={
        "help": "How evaluation models learn from a set: L1 to the teacher logits ('apm', APM's protocol; also "
                "spelt 'logits_l1'), KL to them ('kd'), cross-entropy on class ids ('hard'). The first is the headline "
                "(default: apm hard).", "choices": [*PROTOCOLS, *PROTOCOL_ALIASES],
        "aliases": [f"--{old}" for old, new in ARGUMENT_ALIASES.items() if new == "eval_protocols"]})
    kd_temperature: float = _arg(4.0, "Temperature of the 'kd' protocol.")

    # > Hub
    push_to_hub: bool = _arg(False, "Push the distilled/ folder as a Hub dataset repo at the end (needs --hub_dataset_id "
                                    "and a token from `hf auth login` or HF_TOKEN).")
    hub_dataset_id: str | None = _arg(None, "Dataset repo id to push to, e.g. 'org/cifar10-apm-ipc10'; also used in "
                                            "the card's usage snippet.")
    hub_private: bool = _arg(False, "Create the dataset repo (and the teachers' model repo) as private.")
    hub_teachers_id: str | None = _arg(None, "With --push_to_hub, also push the teacher pool as a timm model repo with "
                                             "this id, e.g. 'org/cifar10-convnet3-teachers'; later runs reuse it with "
                                             "--teachers hf-hub:<id>.")

    def __post_init__(self):
        defaults = DATASET_DEFAULTS.get(self.dataset, GENERIC_DEFAULTS)
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        if isinstance(self.model_kwargs, str):
            self.model_kwargs = json_object(self.model_kwargs)
        self.model_kwargs = dict(self.model_kwargs or {})
        if self.output_dir is None:
            self.output_dir = str(Path("outputs") / f"{_slug(self.dataset)}-apm-ipc{self.ipc}")
        if isinstance(self.report_to, (list, tuple)):  # a YAML list
            self.report_to = ",".join(self.report_to)
        self.report_to = ",".join(tracker_names(self.report_to)) or "none"
        if self.logging_dir is None:
            self.logging_dir = str(Path(self.output_dir) / "runs")
        if self.run_name is None:
            self.run_name = f"{Path(self.output_dir).name}-{time.strftime('%Y%m%d-%H%M%S')}"
        if self.mixed_precision == "fp16":
            raise ValueError("--mixed_precision fp16 is not supported: float16 gradients underflow without loss "
                             "scaling, which hf-distill does not do; use --mixed_precision bf16 (or no).")
        if self.push_to_hub and not self.hub_dataset_id:
            raise ValueError("--push_to_hub needs --hub_dataset_id, the dataset repo to create, e.g. 'org/digits-apm-ipc1'.")
        if self.hub_teachers_id and not self.push_to_hub:
            raise ValueError("--hub_teachers_id is only used with --push_to_hub; add --push_to_hub, or drop it.")
        if self.hub_teachers_id and (self.teachers or "").startswith("hf-hub:"):
            raise ValueError(f"--hub_teachers_id: the teachers already come from the Hub ({self.teachers}); drop "
                             f"--hub_teachers_id.")
        parse_strategy(self.dsa_strategy)
        self.eval_lr = self.eval_lr if self.eval_lr is not None else self.lr_net
        self.eval_dsa_strategy = self.eval_dsa_strategy or self.dsa_strategy
        if self.eval_dsa_strategy != NO_AUGMENTATION:
            parse_strategy(self.eval_dsa_strategy)
        positive = ["ipc", "iterations", "student_epochs", "num_checkpoints", "refresh_every", "num_teachers",
                    "teacher_epochs", "eval_epochs", "num_eval_runs", "batch_size", "logging_steps", "save_steps",
                    "lr_img", "lr_net", "eval_lr", "kd_temperature"]
        for name in positive + ["batch_syn", "segment_size", "resolution", "save_total_limit", "preprocessing_num_workers"]:
            value = getattr(self, name)
            if value is not None and not value > 0:  # `not >` also rejects NaN
                raise ValueError(f"--{name} must be positive, got {value}.")
        if not self.ce_weight >= 0:
            raise ValueError(f"--ce_weight must be zero or positive, got {self.ce_weight}; a negative weight would push "
                             f"the images away from their class.")
        if self.num_checkpoints > self.student_epochs:
            raise ValueError(f"--num_checkpoints ({self.num_checkpoints}) cannot exceed --student_epochs ({self.student_epochs}).")
        if self.segment_size is not None and self.batch_syn is not None and self.segment_size > self.batch_syn:
            raise ValueError(f"--segment_size ({self.segment_size}) cannot exceed --batch_syn ({self.batch_syn}).")
        for f in fields(self):
            values = getattr(self, f.name) if isinstance(getattr(self, f.name), list) else [getattr(self, f.name)]
            if "choices" in f.metadata and (not values or any(v not in f.metadata["choices"] for v in values)):
                raise ValueError(f"--{f.name} {getattr(self, f.name)!r} is not valid; choose from {f.metadata['choices']}.")
        self.eval_protocols = list(dict.fromkeys(map(protocol_name, self.eval_protocols)))
        if self.overwrite_output_dir and str(self.resume_from_checkpoint).lower() in LAST_CHECKPOINT:
            raise ValueError("--overwrite_output_dir deletes the checkpoints that --resume_from_checkpoint "
                             f"{self.resume_from_checkpoint} would continue from; pass only one of them.")

    def to_dict(self) -> dict:
        """The arguments as a JSON-able dict (they hold no secret: a Hub token is never an argument)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def differences(self, saved: dict) -> list[str]:
        """What differs from `saved` (an earlier run's `to_dict()`) and changes the distilled images, as
        '--name saved -> now' strings; empty when this run may reuse that run's outputs."""
        now = json.loads(json.dumps(self.to_dict()))
        return [f"--{name} {saved[name]!r} -> {value!r}" for name, value in now.items()
                if name not in RUN_NEUTRAL_FIELDS and name in saved and saved[name] != value]


def json_object(text: str) -> dict[str, Any]:
    """A JSON object given on the command line, as a dict."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{text!r} is not valid JSON ({err}); write an object such as '{{\"net_width\": 64}}'.") from None
    if not isinstance(value, dict):
        raise ValueError(f"{text!r} is not a JSON object; write one such as '{{\"net_width\": 64}}'.")
    return value


def _slug(dataset: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", Path(dataset.rstrip("/")).name).strip("-").lower() or "dataset"
