"""`DistillationTrainer`: dataset distillation with APM, in the shape of the Hugging Face Trainer.

Not to be confused with `trl.DistillationTrainer`, which distils one language *model* into another:
this trainer distils a *dataset* into a few synthetic images per class.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn as nn
from accelerate import Accelerator
from accelerate.utils import broadcast, gather_object
from tqdm.auto import tqdm
from transformers import TrainerCallback, TrainerControl, TrainerState

from .allocator import keep_freed_memory
from .apm import accumulate_image_gradient, initial_images, mean_disagreement, snapshot_epochs
from .arguments import DistillationArguments
from .augment import sample_dsa
from .callbacks import make_callback_handler
from .checkpoints import (LoopState, list_checkpoints, resumable_checkpoint, rng_state, rotate_checkpoints,
                          save_checkpoint)
from .data import ImageClassificationData, load_image_dataset
from .distilled import DistilledSet
from .evaluation import collect, evaluate_distilled, format_table, real_start, tracker_scalars
from .export import RunOutputsMixin
from .host import clock
from .models import create_model
from .preprocessing import Preprocessing
from .records import Compute, EvalResults, EvalSettings, IterationTime, PoolSummary, RunMetadata, Summary
from .run_dir import check_run, start_output_dir
from .teachers import TeacherConfig, TeacherPool, TeacherSpec
from .trackers import RunTrackers, make_trackers
from .training import FitConfig, compile_model, fit, predict

logger = logging.getLogger(__name__)

STUDENT_SEED_OFFSET = 1_000_000


class DistillationTrainer(RunOutputsMixin):
    """Dataset distillation with APM (Adversarial Prediction Matching) on Accelerate.

    Example:
        ```python
        from hf_distill import DistillationArguments, DistillationTrainer

        args = DistillationArguments(dataset="digits", ipc=1, output_dir="outputs/digits-ipc1")
        trainer = DistillationTrainer(args)
        trainer.train()
        print(trainer.evaluate().headline["distilled"])
        trainer.save_distilled("outputs/digits-ipc1/distilled")
        ```

    Args:
        args: the run's `DistillationArguments`.
        data: already-loaded data; by default `args.dataset` is loaded.
        callbacks: `transformers.TrainerCallback`s (which ones work, and what they receive: `hf_distill.callbacks`).
        accelerator: by default one is created with `args.mixed_precision` and the trackers of `args.report_to`.

    After `train()`, `trainer.iteration_times` holds each iteration's refresh and image-step time (`IterationTime`).
    """

    def __init__(self, args: DistillationArguments, data: ImageClassificationData | None = None,
                 callbacks: list[TrainerCallback] | None = None, accelerator: Accelerator | None = None):
        self.args = args
        self.callback_handler = make_callback_handler(callbacks or [])
        self.accelerator = accelerator or Accelerator(
            mixed_precision=args.mixed_precision, project_dir=args.logging_dir,
            log_with=make_trackers(args.report_to, args.run_name, args.logging_dir) or None)
        self.trackers = RunTrackers(self.accelerator, args.run_name, args.to_dict(), args.report_to)
        self._start_time = time.time()
        if data is None:
            with self.accelerator.main_process_first():
                data = load_image_dataset(args.dataset, args.dataset_config_name, args.image_column, args.label_column,
                                          args.train_split, args.test_split, args.resolution,
                                          args.preprocessing_num_workers, args.cache_dir)
        keep_freed_memory()  # after loading: what converting the data freed goes back to the system first
        self.data = data
        self.model_name = args.model or ("convnet4" if data.resolution >= 64 else "convnet3")
        self.student_models = args.student_models or [self.model_name]
        check_run(args, data, self.model_name, self.student_models)
        self.pool = TeacherPool(args.teachers or Path(args.output_dir) / "teachers")
        if not (args.overwrite_output_dir and args.teachers is None):  # otherwise the saved teachers are deleted
            self.pool.check(data, args.num_teachers)
        if self.is_main_process:
            start_output_dir(args)
        self.accelerator.wait_for_everyone()
        self.state = TrainerState()
        self.control = TrainerControl()
        self.preprocessing: Preprocessing | None = None
        self.teachers: list[nn.Module] = []
        self.teacher_configs: list[TeacherConfig] = []
        self.distilled: DistilledSet | None = None
        self.eval_results: EvalResults | None = None
        self.iteration_times: list[IterationTime] = []
        self._distilled_path: Path | None = None

    @property
    def is_main_process(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def _shard(self) -> tuple[int, int]:
        return self.accelerator.process_index, self.accelerator.num_processes

    def _sum(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, "sum") if self.accelerator.num_processes > 1 else tensor

    def prepare_teachers(self) -> list[nn.Module]:
        """Load the teacher pool `--teachers` (local, or downloaded from the Hub); train the missing ones of a local pool
        (split across processes)."""
        if self.teachers:
            return self.teachers
        args, acc = self.args, self.accelerator
        with acc.main_process_first():
            self.pool = TeacherPool.open(self.pool.source, args.num_teachers)
        self.teachers, self.teacher_configs = self.pool.prepare(
            self.data, args.num_teachers, args.zca, lambda i: TeacherSpec(self.model_name, args.model_kwargs,
                                                                          args.teacher_epochs, args.seed + i,
                                                                          args.batch_size, args.dsa_strategy),
            acc, args.torch_compile)
        self.preprocessing = self.pool.preprocessing
        return self.teachers

    def _start_loop(self) -> tuple[LoopState, torch.Tensor]:
        """The loop before its first iteration, from the initial images (the same on every process), and the labels."""
        args, acc = self.args, self.accelerator
        generator = torch.Generator().manual_seed(args.seed)
        images, labels = initial_images(self.data, args.ipc, args.init, self.preprocessing, generator)
        images = images.to(acc.device)
        images = broadcast(images.contiguous()) if acc.num_processes > 1 else images
        return LoopState.start(images, generator, args.lr_img, args.iterations, args.seed), labels.to(acc.device)

    def _train_students(self, images: torch.Tensor, teacher: nn.Module, generator: torch.Generator,
                        seed: int, model: str) -> list[nn.Module]:
        """A fresh `model` student trained on `images` to match the teacher's logits; K evenly spaced snapshots."""
        args = self.args
        with torch.no_grad(), self.accelerator.autocast():
            targets = teacher(images).float()
        torch.manual_seed(seed)
        config = FitConfig(epochs=args.student_epochs, lr=args.lr_net, batch_size=args.batch_size, loss="l1",
                           dsa_strategy=args.dsa_strategy, compile=args.torch_compile)
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

    def _image_step(self, loop: LoopState, batch: torch.Tensor, labels: torch.Tensor, teacher: nn.Module,
                    segment_size: int) -> float:
        """One APM update of the images on `batch`; returns the loss summed over processes."""
        acc, images, step = self.accelerator, loop.images, self.state.global_step + 1
        loop.optimizer.zero_grad(set_to_none=False)
        views = sample_dsa(len(batch), images.shape[-1], loop.generator, self.args.dsa_strategy) \
            if self.args.image_dsa else None
        local_loss = accumulate_image_gradient(images, batch, labels, teacher, loop.students, self.args.ce_weight,
                                               segment_size, self._shard, acc.autocast, views,
                                               self.args.standardize_logits)
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
        checkpoint = resumable_checkpoint(resume, args.output_dir, args.differences)
        self.trackers.start()  # before the teachers: a tracker that cannot start fails the run at once
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
        window_start = (self.state.global_step, clock(acc.device))
        for it in bar:
            self.control = self.callback_handler.on_step_begin(args, self.state, self.control)
            batch = torch.randperm(len(loop.images), generator=loop.generator)[:batch_syn].to(acc.device)
            start = clock(acc.device)
            if it % args.refresh_every == 0:
                loop.teacher_index = loop.teacher_draws.randrange(len(teachers))
                loop.students = self._train_students(loop.images[batch].detach(), teachers[loop.teacher_index],
                                                     loop.generator, args.seed + STUDENT_SEED_OFFSET + it,
                                                     self._student_model(it))
            refreshed = clock(acc.device)
            loss = self._image_step(loop, batch, labels, teachers[loop.teacher_index], segment_size)
            self.iteration_times.append(IterationTime(it + 1, refreshed - start, clock(acc.device) - refreshed))
            self.state.global_step = it + 1
            bar.set_postfix(loss=f"{loss:.4f}")
            if (it + 1) % args.logging_steps == 0 or it + 1 == args.iterations:
                self._log(loop, batch, segment_size, loss, window_start)
                window_start = (it + 1, clock(acc.device))
            if (it + 1) % args.save_steps == 0 or it + 1 == args.iterations:
                self._save_checkpoint(loop)
            self.control = self.callback_handler.on_step_end(args, self.state, self.control, images=loop.images.detach())
            if self.control.should_training_stop:
                break
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        images = loop.images.detach()
        soft_labels = predict(teachers[0], images, autocast=acc.autocast)
        if args.real_scale_labels:
            real, _ = real_start(self.data, args.ipc, self.preprocessing, torch.Generator().manual_seed(args.seed))
            soft_labels = soft_labels * (predict(teachers[0], real.to(acc.device), autocast=acc.autocast).std() /
                                         soft_labels.std())
        self.distilled = DistilledSet(images.cpu(), labels.cpu(), soft_labels, self.preprocessing, self.data.class_names,
                                      self._metadata())
        return self.distilled

    def _log(self, loop: LoopState, batch: torch.Tensor, segment_size: int, loss: float,
             window_start: tuple[int, float]) -> None:
        """Log the loss, lr_img and the students' mean disagreement with the teacher on `batch` (to the callbacks and
        `log_history`), and with the iteration times since `window_start` (step, clock) to the trackers."""
        step, acc = self.state.global_step, self.accelerator
        gap = mean_disagreement(loop.images, batch, self.teachers[loop.teacher_index], loop.students, segment_size,
                                acc.autocast, self.args.standardize_logits)
        logs = {"loss": loss, "lr_img": loop.scheduler.get_last_lr()[0], "disagreement": gap, "step": step}
        self.state.log_history.append(logs)
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs=logs)
        times = self.iteration_times[window_start[0] - step:] if step > window_start[0] else []
        seconds = (clock(acc.device) - window_start[1]) / max(1, step - window_start[0])
        self.trackers.log_training(logs, times, seconds, step)

    def _metadata(self) -> RunMetadata:
        pool = PoolSummary(self.model_name, len(self.teachers), self.pool.source, [c.epochs for c in self.teacher_configs],
                           [c.train_accuracy for c in self.teacher_configs])
        return RunMetadata(self.model_name, self.args.to_dict(), self.data.source, self.data.resolution,
                           self.data.channels, self.preprocessing.describe(), "logits of teacher 0 on the final images",
                           self.state.global_step, self._compute(), pool)

    def _compute(self) -> Compute:
        return Compute.since(self._start_time, self.accelerator.device, self.accelerator.num_processes)

    def evaluate(self, distilled: DistilledSet | None = None) -> EvalResults:
        """Score the distilled set and real baselines (`evaluation.distilled_sets`) on the test split under each of
        `--eval_protocols` (`distilled_8bit` and `random_draws` under the first only)."""
        args, acc, data = self.args, self.accelerator, self.data
        distilled = distilled or self.distilled
        if distilled is None:
            raise ValueError("Nothing to evaluate: call train() first or pass a DistilledSet.")
        teachers = self.prepare_teachers()
        settings = EvalSettings(list(args.eval_protocols), args.eval_models or [self.model_name], args.eval_epochs,
                                args.num_eval_runs, args.eval_lr, args.batch_size, args.eval_dsa_strategy,
                                args.kd_temperature, data.source.get("test_split"), len(data.test_labels), len(teachers))
        scores, teacher_scores = evaluate_distilled(distilled, data, teachers, settings, args.seed, args.torch_compile,
                                                    {self.model_name: args.model_kwargs}, acc)
        results = EvalResults(args.dataset, distilled.ipc, self.model_name, Summary.of(teacher_scores), collect(scores),
                              settings, args.to_dict(), self._compute())
        self.control = self.callback_handler.on_evaluate(args, self.state, self.control,
                                                         metrics=results.to_dict()["results"])
        self.trackers.log(tracker_scalars(results), self.state.global_step)
        self.eval_results = results
        return results

    def results_table(self, results: EvalResults) -> str:
        return format_table(results)
