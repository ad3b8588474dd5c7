"""`DistillationTrainer`: dataset distillation with APM, in the shape of the Hugging Face Trainer.

Not to be confused with `trl.DistillationTrainer`, which distils one language *model* into another:
this trainer distils a *dataset* into a few synthetic images per class.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import random
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
from accelerate import Accelerator
from accelerate.utils import broadcast, gather_object
from tqdm.auto import tqdm
from transformers import DefaultFlowCallback, EarlyStoppingCallback, TrainerCallback, TrainerControl, TrainerState
from transformers.trainer_callback import CallbackHandler
from transformers.utils import logging as transformers_logging

from .allocator import keep_freed_memory
from .apm import accumulate_image_gradient, disagreement, snapshot_epochs
from .arguments import NO_AUGMENTATION, DistillationArguments
from .augment import sample_dsa
from .checkpoints import (Checkpoint, LoopState, checkpoint_to_resume, list_checkpoints, load_checkpoint, rng_state,
                          rotate_checkpoints, save_checkpoint)
from .data import ImageClassificationData, load_image_dataset
from .distilled import PARQUET_DIR, DistilledSet, grid_image, save_distilled, save_grid, write_card
from .evaluation import (EvalJob, EvalPlan, assemble_results, check_ipc, format_table, random_draw,
                         sample_real_subset, tracker_scalars, train_and_test)
from .files import write_json
from .models import check_model, create_model
from .preprocessing import Preprocessing
from .hub import push_folder, require_token
from .run_dir import check_output_dir, start_output_dir
from .teacher_repos import push_teachers, resolve_teacher_pool
from .trackers import log_image, make_trackers, tracker_config
from .teachers import (TeacherSpec, check_saved_teachers, check_teacher, load_preprocessing, load_teacher,
                       save_preprocessing, save_teacher, teacher_dir, train_teacher)
from .training import FitConfig, accuracy, compile_model, fit, predict

logger = logging.getLogger(__name__)

IMAGE_MOMENTUM = 0.5
IMAGE_LR_DECAY = 0.3
STUDENT_SEED_OFFSET = 1_000_000


@dataclass
class IterationTime:
    """Wall time of one APM iteration of this process: the student refresh (0 when none) and the image step."""

    step: int
    refresh_s: float
    image_step_s: float


class DistillationTrainer:
    """Dataset distillation with APM (Adversarial Prediction Matching) on Accelerate.

    Example:
        ```python
        from hf_distill import DistillationArguments, DistillationTrainer

        args = DistillationArguments(dataset="digits", ipc=1, output_dir="outputs/digits-ipc1")
        trainer = DistillationTrainer(args)
        trainer.train()
        print(trainer.evaluate()["results"]["distilled"])
        trainer.save_distilled("outputs/digits-ipc1/distilled")
        ```

    Args:
        args: the run's `DistillationArguments`.
        data: already-loaded data; by default `args.dataset` is loaded.
        callbacks: `transformers.TrainerCallback`s; `on_train_begin`, `on_step_begin`, `on_step_end`,
            `on_log`, `on_evaluate` and `on_train_end` are called, and `control.should_training_stop` is honoured.
            `on_step_end` also receives `images`, the synthetic images after that step. Stock callbacks that only
            read the logs (`PrinterCallback`, `ProgressCallback`) work; those that need `TrainingArguments` (the
            reporting integrations such as `TensorBoardCallback`, `DefaultFlowCallback`, `EarlyStoppingCallback`)
            are refused: use `--report_to` for trackers.
        accelerator: by default one is created with `args.mixed_precision` and the trackers of `args.report_to`.

    After `train()`, `trainer.iteration_times` holds each iteration's refresh and image-step time (`IterationTime`).
    """

    def __init__(self, args: DistillationArguments, data: ImageClassificationData | None = None,
                 callbacks: list[TrainerCallback] | None = None, accelerator: Accelerator | None = None):
        self.args = args
        keep_freed_memory()
        self.callback_handler = make_callback_handler(callbacks or [])
        self.accelerator = accelerator or Accelerator(
            mixed_precision=args.mixed_precision, project_dir=args.logging_dir,
            log_with=make_trackers(args.report_to, args.run_name, args.logging_dir) or None)
        self._start_time = time.time()
        if data is None:
            with self.accelerator.main_process_first():
                data = load_image_dataset(args.dataset, args.dataset_config_name, args.image_column, args.label_column,
                                          args.train_split, args.test_split, args.resolution,
                                          args.preprocessing_num_workers, args.cache_dir)
        self.data = data
        self.model_name = args.model or ("convnet4" if data.resolution >= 64 else "convnet3")
        self.student_models = args.student_models or [self.model_name]
        for name in dict.fromkeys([self.model_name, *self.student_models, *(args.eval_models or [])]):
            check_model(name, data.num_classes, data.channels, data.resolution,
                        **(args.model_kwargs if name == self.model_name else {}))
        if args.init == "real" or args.do_eval:
            check_ipc(data.train_labels, args.ipc, data.num_classes)
        self._check_batch_sizes()
        check_output_dir(args)
        if not (args.overwrite_output_dir and args.teachers is None):  # otherwise the saved teachers are deleted
            check_saved_teachers(self._teachers_root, data, args.num_teachers)
        if self.is_main_process:
            start_output_dir(args)
        self.accelerator.wait_for_everyone()
        self.state = TrainerState()
        self.control = TrainerControl()
        self._trackers_started = False
        self.preprocessing: Preprocessing | None = None
        self.teachers: list[nn.Module] = []
        self.distilled: DistilledSet | None = None
        self.teacher_configs: list[dict] = []
        self.eval_results: dict | None = None
        self.iteration_times: list[IterationTime] = []
        self._distilled_path: Path | None = None

    # ----------------------------------------------------------------------------------- helpers
    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def _shard(self) -> tuple[int, int]:
        return self.accelerator.process_index, self.accelerator.num_processes

    @property
    def _teachers_root(self) -> Path:
        return Path(self.args.teachers or Path(self.args.output_dir) / "teachers")

    def _check_batch_sizes(self) -> None:
        args, size = self.args, self.args.ipc * self.data.num_classes
        if args.batch_syn is not None and args.batch_syn > size:
            raise ValueError(f"--batch_syn ({args.batch_syn}) exceeds the {size} synthetic images (ipc x classes); "
                             f"lower it, or leave it unset to use all of them.")
        if args.segment_size is not None and args.segment_size > (args.batch_syn or size):
            raise ValueError(f"--segment_size ({args.segment_size}) exceeds the {args.batch_syn or size} images of a "
                             f"batch (--batch_syn); lower it, or leave it unset for one segment per batch.")

    def _sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, "sum") if self.accelerator.num_processes > 1 else tensor

    def _fit_config(self, epochs: int, lr: float, dsa_strategy: str) -> FitConfig:
        return FitConfig(epochs=epochs, lr=lr, batch_size=self.args.batch_size, loss="l1",
                         augment=dsa_strategy != NO_AUGMENTATION, dsa_strategy=dsa_strategy,
                         kd_temperature=self.args.kd_temperature, compile=self.args.torch_compile)

    # ---------------------------------------------------------------------------------- teachers
    def prepare_teachers(self) -> list[nn.Module]:
        """Load the teacher pool `--teachers` (local, or downloaded from the Hub); train the missing ones of a local pool
        (split across processes)."""
        if self.teachers:
            return self.teachers
        args, data, acc = self.args, self.data, self.accelerator
        with acc.main_process_first():
            root = resolve_teacher_pool(str(self._teachers_root), args.num_teachers)
        if acc.is_main_process and load_preprocessing(root) is None:
            save_preprocessing(Preprocessing.fit(data.train_images, zca=args.zca), root)
        acc.wait_for_everyone()
        self.preprocessing = load_preprocessing(root)
        if self.preprocessing.zca != args.zca:
            raise ValueError(f"Teachers in {root} use zca={self.preprocessing.zca}, but --zca is {args.zca}; "
                             f"use another --teachers pool or match --zca.")
        missing = [i for i in range(args.num_teachers) if not (teacher_dir(root, i) / "config.json").exists()]
        rank, world = self._shard
        for i in missing[rank::world]:
            spec = TeacherSpec(self.model_name, args.model_kwargs, args.teacher_epochs, args.seed + i, args.batch_size,
                               args.dsa_strategy)
            label = f"teacher {i + 1}/{args.num_teachers} (rank {rank})" if world > 1 else f"teacher {i + 1}/{args.num_teachers}"
            model, config = train_teacher(spec, data, self.preprocessing, acc.device, acc.autocast, progress=label,
                                          compile=args.torch_compile)
            save_teacher(model, config, teacher_dir(root, i))
            logger.info("%s: train accuracy %.2f%%", label, config["train_accuracy"])
        acc.wait_for_everyone()
        self.teachers, self.teacher_configs = [], []
        for i in range(args.num_teachers):
            model, config = load_teacher(teacher_dir(root, i), acc.device)
            check_teacher(config, data, teacher_dir(root, i))
            self.teachers.append(compile_model(model) if args.torch_compile else model)
            self.teacher_configs.append(config)
        return self.teachers

    # ------------------------------------------------------------------------------ distillation
    def _initial_images(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        args, data = self.args, self.data
        labels = torch.arange(data.num_classes).repeat_interleave(args.ipc)
        if args.init == "real":
            index = sample_real_subset(data.train_labels, args.ipc, data.num_classes, generator)
            images = self.preprocessing(data.train_images[index])
        else:
            images = torch.randn(len(labels), data.channels, data.resolution, data.resolution, generator=generator)
        return images.to(self.accelerator.device), labels.to(self.accelerator.device)

    def _train_students(self, images: torch.Tensor, teacher: nn.Module, generator: torch.Generator,
                        seed: int, model: str) -> list[nn.Module]:
        """A fresh `model` student trained on `images` to match the teacher's logits; K evenly spaced snapshots."""
        args = self.args
        with torch.no_grad(), self.accelerator.autocast():
            targets = teacher(images).float()
        torch.manual_seed(seed)
        config = self._fit_config(args.student_epochs, args.lr_net, args.dsa_strategy)
        return fit(self._new_student(model), images, targets, config, generator,
                   snapshot_epochs=snapshot_epochs(args.student_epochs, args.num_checkpoints),
                   autocast=self.accelerator.autocast, shard=self._shard, all_reduce=self._sum)

    def _student_model(self, iteration: int) -> str:
        """The architecture of the students trained at the last refresh at or before `iteration` (0-based)."""
        return self.student_models[(iteration // self.args.refresh_every) % len(self.student_models)]

    def _new_student(self, model: str) -> nn.Module:
        data = self.data
        kwargs = self.args.model_kwargs if model == self.model_name else {}
        student = create_model(model, data.num_classes, data.channels, data.resolution,
                               **kwargs).to(self.accelerator.device)
        return compile_model(student) if self.args.torch_compile else student

    def _start_loop(self) -> tuple[LoopState, torch.Tensor]:
        """Initial images (the same on every process) with their optimiser and scheduler, the loop's generators, labels."""
        args, acc = self.args, self.accelerator
        generator = torch.Generator().manual_seed(args.seed)
        images, labels = self._initial_images(generator)
        images = broadcast(images.contiguous()) if acc.num_processes > 1 else images
        images.requires_grad_(True)
        optimizer = torch.optim.SGD([images], lr=args.lr_img, momentum=IMAGE_MOMENTUM)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, [args.iterations // 2], gamma=IMAGE_LR_DECAY)
        return LoopState(images, optimizer, scheduler, generator, random.Random(args.seed)), labels

    def _checkpoint_to_resume(self, resume: str | bool | None) -> Checkpoint | None:
        path = checkpoint_to_resume(resume, self.args.output_dir)
        if path is None:
            return None
        checkpoint = load_checkpoint(path)
        changed = self.args.differences(checkpoint.args)
        if changed:
            raise ValueError(f"{path} was written by a run with other arguments ({'; '.join(changed)}); resume it with "
                             f"its own arguments, or start this run without --resume_from_checkpoint.")
        return checkpoint

    def _image_step(self, loop: LoopState, batch: torch.Tensor, labels: torch.Tensor, teacher: nn.Module,
                    segment_size: int) -> float:
        """One APM update of the images on `batch`; returns the loss summed over processes."""
        acc, images, step = self.accelerator, loop.images, self.state.global_step + 1
        loop.optimizer.zero_grad(set_to_none=False)
        views = sample_dsa(len(batch), images.shape[-1], loop.generator, self.args.dsa_strategy) \
            if self.args.image_dsa else None
        local_loss = accumulate_image_gradient(images, batch, labels, teacher, loop.students, self.args.ce_weight,
                                               segment_size, self._shard, acc.autocast, views)
        if images.grad is None:
            images.grad = torch.zeros_like(images)
        images.grad = self._sum(images.grad)
        loss = self._sum(torch.tensor([local_loss], device=acc.device)).item()
        if not math.isfinite(loss):
            raise self._non_finite(f"The APM loss is {loss}", step)
        loop.optimizer.step()
        loop.scheduler.step()
        if not torch.isfinite(images).all():
            raise self._non_finite("The synthetic images became infinite or NaN", step)
        return loss

    def _clock(self) -> float:
        """Seconds on a monotonic clock, once the accelerator's queued work is done."""
        if self.accelerator.device.type == "cuda":
            torch.cuda.synchronize(self.accelerator.device)
        return time.perf_counter()

    def _non_finite(self, problem: str, step: int) -> FloatingPointError:
        last = list_checkpoints(self.args.output_dir)[-1:]
        kept = f"{last[0]} holds the last good images" if last else "no checkpoint had been written yet"
        return FloatingPointError(f"{problem} at iteration {step} of {self.args.iterations}, so the run stopped without "
                                  f"saving it ({kept}). Lower --lr_img (or use --mixed_precision no) and start again.")

    def _save_checkpoint(self, loop: LoopState) -> None:
        """`checkpoint-<step>` with every process's RNG states, written by the main process; older ones rotate out."""
        args, states = self.args, [rng_state()]
        states = gather_object(states) if self.accelerator.num_processes > 1 else states
        if self.is_main_process:
            with_students = self.state.global_step % args.refresh_every != 0
            save_checkpoint(args.output_dir, loop, self.state, args.to_dict(), states, with_students)
            rotate_checkpoints(args.output_dir, args.save_total_limit)

    def train(self, resume_from_checkpoint: str | bool | None = None) -> DistilledSet:
        """Run APM for `iterations` image updates and return the distilled set (also kept as `self.distilled`).

        Every `save_steps` iterations, and at the last one, the loop state goes to `<output_dir>/checkpoint-<step>`.
        `resume_from_checkpoint` (default: `args.resume_from_checkpoint`) is a checkpoint folder, or `True` /
        "last" for the newest one in `output_dir`; the run then continues exactly as if it had not stopped.
        """
        args, acc = self.args, self.accelerator
        resume = args.resume_from_checkpoint if resume_from_checkpoint is None else resume_from_checkpoint
        checkpoint = self._checkpoint_to_resume(resume)
        self._trackers_on()  # before the teachers: a tracker that cannot start fails the run at once
        teachers = self.prepare_teachers()
        loop, labels = self._start_loop()
        self.state = TrainerState(max_steps=args.iterations, logging_steps=args.logging_steps, save_steps=args.save_steps)
        if checkpoint is not None:
            students_of = self._student_model(checkpoint.trainer_state.global_step - 1)
            self.state = checkpoint.restore(loop, lambda: self._new_student(students_of), acc.process_index)
            logger.info("Resuming from %s: %d of %d iterations done.", checkpoint.path, self.state.global_step,
                        args.iterations)
        self.state.is_local_process_zero, self.state.is_world_process_zero = acc.is_local_main_process, acc.is_main_process
        batch_syn = args.batch_syn or len(loop.images)
        segment_size = args.segment_size or batch_syn
        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        bar = tqdm(range(self.state.global_step, args.iterations), initial=self.state.global_step, total=args.iterations,
                   desc="APM", disable=not acc.is_main_process)
        window_start = (self.state.global_step, self._clock())
        for it in bar:
            self.control = self.callback_handler.on_step_begin(args, self.state, self.control)
            batch = torch.randperm(len(loop.images), generator=loop.generator)[:batch_syn].to(acc.device)
            start = self._clock()
            if it % args.refresh_every == 0:
                loop.teacher_index = loop.teacher_draws.randrange(len(teachers))
                loop.students = self._train_students(loop.images[batch].detach(), teachers[loop.teacher_index],
                                                     loop.generator, args.seed + STUDENT_SEED_OFFSET + it,
                                                     self._student_model(it))
            refreshed = self._clock()
            loss = self._image_step(loop, batch, labels, teachers[loop.teacher_index], segment_size)
            self.iteration_times.append(IterationTime(it + 1, refreshed - start, self._clock() - refreshed))
            self.state.global_step = it + 1
            bar.set_postfix(loss=f"{loss:.4f}")
            if (it + 1) % args.logging_steps == 0 or it + 1 == args.iterations:
                self._log(loop, batch, segment_size, loss, window_start)
                window_start = (it + 1, self._clock())
            if (it + 1) % args.save_steps == 0 or it + 1 == args.iterations:
                self._save_checkpoint(loop)
            self.control = self.callback_handler.on_step_end(args, self.state, self.control, images=loop.images.detach())
            if self.control.should_training_stop:
                break
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        images = loop.images.detach()
        soft_labels = predict(teachers[0], images, autocast=acc.autocast)
        self.distilled = DistilledSet(images.cpu(), labels.cpu(), soft_labels, self.preprocessing, self.data.class_names,
                                      self._metadata())
        return self.distilled

    def _log(self, loop: LoopState, batch: torch.Tensor, segment_size: int, loss: float,
             window_start: tuple[int, float]) -> None:
        """Log the loss, lr_img and the students' mean disagreement with the teacher on `batch` (to the callbacks and
        `log_history`), and with the iteration times since `window_start` (step, clock) to the trackers."""
        step, teacher = self.state.global_step, self.teachers[loop.teacher_index]
        gap = 0.0
        with torch.no_grad(), self.accelerator.autocast():
            for segment in batch.split(segment_size):
                x = loop.images[segment]
                gap += disagreement(x, teacher(x).float(), loop.students).item() * len(segment)
        logs = {"loss": loss, "lr_img": loop.scheduler.get_last_lr()[0],
                "disagreement": gap / (len(batch) * len(loop.students)), "step": step}
        self.state.log_history.append(logs)
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs=logs)
        times = self.iteration_times[window_start[0] - step:] if step > window_start[0] else []
        refreshes = [t.refresh_s for t in times if t.refresh_s > 0]
        self._track({"train/loss": loss, "train/lr_img": logs["lr_img"], "train/disagreement": logs["disagreement"],
                     "time/s_per_iteration": (self._clock() - window_start[1]) / max(1, step - window_start[0]),
                     "time/refresh_s": sum(refreshes) / len(refreshes) if refreshes else 0.0,
                     "time/image_step_s": sum(t.image_step_s for t in times) / max(1, len(times))}, step)

    def _trackers_on(self) -> bool:
        """Whether the run reports to trackers; they are started on the first call, with the run's arguments as their
        configuration."""
        if self.accelerator.log_with and not self._trackers_started:
            try:
                self.accelerator.init_trackers(self.args.run_name, config=tracker_config(self.args.to_dict()))
            except Exception as error:  # each tracker raises its own kinds (login, network, files)
                raise ConnectionError(f"--report_to {self.args.report_to} could not start: {type(error).__name__}: "
                                      f"{error}. Log in to the tracker (e.g. `wandb login`, or WANDB_MODE=offline), "
                                      f"or leave it out of --report_to.") from error
            self._trackers_started = True
        return bool(self.accelerator.log_with)

    def _track(self, values: dict[str, float], step: int) -> None:
        if self._trackers_on():
            self.accelerator.log(values, step=step)

    def _metadata(self) -> dict:
        return {"method": "APM", "paper": "arXiv:2312.08912", "model": self.model_name, "args": self.args.to_dict(),
                "source": self.data.source, "resolution": self.data.resolution, "channels": self.data.channels,
                "preprocessing": self.preprocessing.describe(), "soft_labels": "logits of teacher 0 on the final images",
                "iterations_done": self.state.global_step, "compute": self._compute(),
                "teachers": {"architecture": self.model_name, "count": len(self.teachers),
                             "source": str(self._teachers_root), "epochs": [c["epochs"] for c in self.teacher_configs],
                             "train_accuracy": [c["train_accuracy"] for c in self.teacher_configs]}}

    def _compute(self) -> dict:
        """Wall time since the trainer started, peak memory and hardware."""
        acc = self.accelerator
        return {"wall_time_s": time.time() - self._start_time, "peak_memory_mb": peak_memory_mb(),
                "device": str(acc.device), "num_processes": acc.num_processes, "hardware": hardware_description(),
                "torch": torch.__version__}

    # -------------------------------------------------------------------------------- evaluation
    def evaluate(self, distilled: DistilledSet | None = None) -> dict:
        """Score the distilled set and a random real subset (same IPC, same teacher labels) on the test split.

        Returns the `eval_results.json` content; `results.distilled.<model>` and
        `results.random_subset.<model>` hold mean/std/runs (top-1 %) for the headline label mode.
        `results.distilled_8bit.<model>` scores what the published `image` column gives: the images as 8-bit
        pixels, preprocessed again, with the same soft labels (headline label mode only, to bound the cost).
        """
        args, acc, data = self.args, self.accelerator, self.data
        distilled = distilled or self.distilled
        if distilled is None:
            raise ValueError("Nothing to evaluate: call train() first or pass a DistilledSet.")
        teachers = self.prepare_teachers()
        preprocessing = distilled.preprocessing
        subset = sample_real_subset(data.train_labels, distilled.ipc, data.num_classes,
                                    torch.Generator().manual_seed(args.seed))
        subset_images = preprocessing(data.train_images[subset])
        sets = {
            "distilled": (distilled.images, distilled.labels, distilled.soft_labels),
            "distilled_8bit": (preprocessing(distilled.pixels_uint8()), distilled.labels, distilled.soft_labels),
            "random_subset": (subset_images, data.train_labels[subset],
                              predict(teachers[0], subset_images, autocast=acc.autocast)),
        }
        models, headline = args.eval_models or [self.model_name], args.eval_label_modes[0]
        jobs = [EvalJob(s, mode, m, r) for mode in args.eval_label_modes for s in [*sets, "random_draws"] for m in models
                for r in range(args.num_eval_runs) if s not in ("distilled_8bit", "random_draws") or mode == headline]
        rank, world = self._shard
        fit_config = self._fit_config(args.eval_epochs, args.eval_lr, args.eval_dsa_strategy)
        plan = EvalPlan(jobs, args.eval_epochs, math.ceil(len(distilled.labels) / args.batch_size))
        if acc.is_main_process:
            logger.info(plan.describe())
        mine = []
        for index in tqdm(range(rank, len(jobs), world), desc="evaluate", disable=not acc.is_main_process):
            job, start = jobs[index], time.perf_counter()
            kwargs = args.model_kwargs if job.model == self.model_name else {}
            inputs = sets[job.set_name] if job.set_name in sets else self._random_draw(distilled, job.run)
            score = train_and_test(job, *inputs, data, preprocessing, fit_config, args.seed, kwargs,
                                   acc.device, acc.autocast, self._estimate_after_first_epoch(plan, world) if not mine else None)
            if not mine and acc.is_main_process:
                logger.info(plan.estimate(time.perf_counter() - start, world, whole_model=True))
            mine.append((index, score))
        scores = dict(gather_object(mine) if world > 1 else mine)
        teacher_scores = [accuracy(t, data.test_images, data.test_labels, preprocessing, acc.autocast) for t in teachers]
        results = assemble_results(jobs, [scores[i] for i in range(len(jobs))], teacher_scores, headline)
        output = {
            "dataset": args.dataset, "ipc": distilled.ipc, "model": self.model_name, "results": results,
            "protocol": {"label_modes": args.eval_label_modes, "headline_label_mode": headline,
                         "eval_models": models, "eval_epochs": args.eval_epochs, "num_eval_runs": args.num_eval_runs,
                         "lr_net": args.eval_lr, "batch_size": args.batch_size, "dsa_strategy": args.eval_dsa_strategy,
                         "optimizer": "SGD momentum 0.9, wd 5e-4, lr x0.1 at half", "test_split": data.source.get("test_split"),
                         "test_size": len(data.test_labels),
                         "random_subset": "ipc real train images per class drawn with --seed (the starting images "
                                          "under --init real), labelled by teacher 0; paired run by run with distilled",
                         "random_draws": "a new draw of ipc real train images per class for each run, labelled by "
                                         "teacher 0; its spread includes the subset-to-subset spread; headline label "
                                         "mode only",
                         "distilled_8bit": "the images as 8-bit pixels (the `image` column), preprocessed again, "
                                           "with the same soft labels; headline label mode only",
                         "soft_labels": "logits of teacher 0", "teachers": len(teachers)},
            "args": args.to_dict(),
            "compute": self._compute(),
        }
        self.control = self.callback_handler.on_evaluate(args, self.state, self.control, metrics=results)
        self._track(tracker_scalars(results), self.state.global_step)
        self.eval_results = output
        return output

    def _random_draw(self, distilled: DistilledSet, run: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The real subset of evaluation run `run` (a new draw per run), preprocessed, with its labels and teacher-0
        logits."""
        index = random_draw(self.data.train_labels, distilled.ipc, self.data.num_classes, self.args.seed, run)
        images = distilled.preprocessing(self.data.train_images[index])
        return images, self.data.train_labels[index], predict(self.teachers[0], images, autocast=self.accelerator.autocast)

    def _estimate_after_first_epoch(self, plan: EvalPlan, world: int) -> Callable[[int], None]:
        """An `on_epoch_end` hook that logs the evaluation's expected duration once its first epoch is done."""
        start = time.perf_counter()

        def hook(epoch: int) -> None:
            if epoch == 1 and self.is_main_process:
                logger.info(plan.estimate(time.perf_counter() - start, world))
        return hook

    # ----------------------------------------------------------------------------------- outputs
    def save_distilled(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the distilled set as a Hub dataset-repo folder (card, parquet, safetensors; see `save_distilled`) and
        `distilled_grid.png`; main process only. The card includes the evaluation results if `evaluate()` ran, and
        `save_eval_results` refreshes it when they come later."""
        if self.distilled is None:
            raise ValueError("Nothing to save: call train() first.")
        path = Path(path or Path(self.args.output_dir) / "distilled")
        if self.is_main_process:
            save_distilled(self.distilled, path, self.eval_results, self.args.hub_dataset_id)
            save_grid(self.distilled, path.parent / "distilled_grid.png")
        if self._trackers_on():
            log_image(self.accelerator, "distilled", grid_image(self.distilled), self.state.global_step)
        self.accelerator.wait_for_everyone()
        self._distilled_path = path
        return path

    def save_eval_results(self, results: dict, path: str | os.PathLike | None = None) -> Path:
        """Write `eval_results.json` atomically (main process only); the card of a distilled set saved by this trainer
        is re-rendered with the results."""
        path = Path(path or Path(self.args.output_dir) / "eval_results.json")
        if self.is_main_process:
            write_json(path, results)
            if self._distilled_path is not None:
                write_card(self._distilled_path, self.distilled, results, self.args.hub_dataset_id)
        self.eval_results = results
        return path

    def push_to_hub(self, repo_id: str | None = None, private: bool | None = None, token: str | None = None) -> str | None:
        """Push the saved distilled/ folder as a Hub dataset repo (created if needed); return its URL.

        The folder is saved first if it was not, and its card is rendered for `repo_id` (with the evaluation results
        when there are some). Main process only; other processes return `None`.

        Args:
            repo_id (`str`, *optional*): "org/name"; defaults to `args.hub_dataset_id`.
            private (`bool`, *optional*): defaults to `args.hub_private`.
            token (`str`, *optional*): defaults to the logged-in token (`hf auth login`) or `HF_TOKEN`.

        Raises:
            `hf_distill.hub.HubError`: one sentence when there is no token or the Hub cannot be reached; every local
            file is kept.
        """
        repo_id = repo_id or self.args.hub_dataset_id
        if not repo_id:
            raise ValueError("push_to_hub needs a dataset repo id: pass repo_id or set --hub_dataset_id.")
        path = self._distilled_path or self.save_distilled()
        if not self.is_main_process:
            return None
        token = require_token(token, path)
        write_card(path, self.distilled, self.eval_results, repo_id)
        private = self.args.hub_private if private is None else private
        return push_folder(path, repo_id, "dataset", private, token, commit_message="Upload distilled set with hf-distill",
                           delete_patterns=[f"{PARQUET_DIR}/*.parquet"])

    def push_teachers_to_hub(self, repo_id: str | None = None, private: bool | None = None,
                             token: str | None = None) -> str | None:
        """Push the run's teacher pool as a timm model repo (exported to `<pool>-hub/` first); return its URL.

        Main process only; other processes return `None`. Arguments and errors as `push_to_hub`, with `repo_id`
        defaulting to `args.hub_teachers_id`.
        """
        repo_id = repo_id or self.args.hub_teachers_id
        if not repo_id:
            raise ValueError("push_teachers_to_hub needs a model repo id: pass repo_id or set --hub_teachers_id.")
        if not self.is_main_process:
            return None
        private = self.args.hub_private if private is None else private
        return push_teachers(self._teachers_root, repo_id, private, require_token(token, self._teachers_root))

    def results_table(self, results: dict) -> str:
        return format_table(results["results"])


REFUSED_CALLBACKS = (DefaultFlowCallback, EarlyStoppingCallback)  # they drive the Trainer's flow from TrainingArguments


def make_callback_handler(callbacks: list[TrainerCallback | type[TrainerCallback]]) -> CallbackHandler:
    """transformers' `CallbackHandler` for `callbacks`; raise for stock callbacks that need `TrainingArguments`."""
    for callback in callbacks:
        cls = callback if isinstance(callback, type) else type(callback)
        if issubclass(cls, REFUSED_CALLBACKS) or cls.__module__.startswith("transformers.integrations"):
            raise ValueError(f"{cls.__name__} works with transformers' Trainer only (it reads TrainingArguments); "
                             f"DistillationTrainer reports to trackers with --report_to (e.g. 'tensorboard' or 'wandb').")
    # The handler warns when DefaultFlowCallback is missing; that callback schedules the Trainer's own logging and
    # saving, which DistillationTrainer does itself. (model, processing_class/tokenizer, optimizer, lr_scheduler: none.)
    handler_logger = transformers_logging.get_logger("transformers.trainer_callback")
    handler_logger.addFilter(_no_default_flow_warning)
    try:
        return CallbackHandler(callbacks, None, None, None, None)
    finally:
        handler_logger.removeFilter(_no_default_flow_warning)


def _no_default_flow_warning(record: logging.LogRecord) -> bool:
    return "DefaultFlowCallback" not in record.getMessage()


def hardware_description() -> str:
    """CPU model and core count, plus the GPU name when CUDA is used."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        cpu = next((line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                    if line.startswith("model name")), cpu)
    text = f"{cpu}, {os.cpu_count()} cores"
    return text + (f", {torch.cuda.get_device_name()}" if torch.cuda.is_available() else "")


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA memory when used), in MB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        peak += torch.cuda.max_memory_allocated() / 2**20
    return peak
