"""The output folder of a run: `run_args.json` records the run's arguments, so that a run with other
arguments cannot silently reuse (or mix with) its teachers, checkpoints and results."""

from __future__ import annotations

import shutil
from pathlib import Path

from .arguments import DistillationArguments
from .checkpoints import CHECKPOINT_PREFIX, list_checkpoints
from .data import ImageClassificationData
from .evaluation import check_ipc
from .files import read_json, write_json
from .models import check_model

RUN_ARGS_FILE = "run_args.json"
RUN_OUTPUTS = ("distilled", "distilled_grid.png", "eval_results.json")


def check_run(args: DistillationArguments, data: ImageClassificationData, model: str, students: list[str]) -> None:
    """Raise, before any long work, if the run cannot work on `data`: an architecture that does not fit it, too few
    images of a class for --ipc, batch sizes above the synthetic set, or an `output_dir` of another run."""
    for name in dict.fromkeys([model, *students, *(args.eval_models or [])]):
        check_model(name, data.num_classes, data.channels, data.resolution, **(args.model_kwargs if name == model else {}))
    if args.init == "real" or args.do_eval:
        check_ipc(data.train_labels, args.ipc, data.num_classes)
    size = args.ipc * data.num_classes
    if args.batch_syn is not None and args.batch_syn > size:
        raise ValueError(f"--batch_syn ({args.batch_syn}) exceeds the {size} synthetic images (ipc x classes); "
                         f"lower it, or leave it unset to use all of them.")
    if args.segment_size is not None and args.segment_size > (args.batch_syn or size):
        raise ValueError(f"--segment_size ({args.segment_size}) exceeds the {args.batch_syn or size} images of a "
                         f"batch (--batch_syn); lower it, or leave it unset for one segment per batch.")
    check_output_dir(args)


def check_output_dir(args: DistillationArguments) -> None:
    """Raise if `output_dir` holds a run whose arguments differ in more than logging, checkpointing or evaluation,
    unless `--overwrite_output_dir` is set."""
    saved = Path(args.output_dir) / RUN_ARGS_FILE
    if args.overwrite_output_dir or not saved.exists():
        return
    changed = args.differences(read_json(saved, f"Delete {saved} if the run in {args.output_dir} is not needed."))
    if changed:
        raise ValueError(f"{args.output_dir} holds a run with other arguments ({'; '.join(changed)}). Pass "
                         f"--overwrite_output_dir to replace it, rerun with its arguments (plus --resume_from_checkpoint "
                         f"last to continue it), or choose another --output_dir.")


def start_output_dir(args: DistillationArguments) -> None:
    """Record the arguments in `output_dir/run_args.json`; with `--overwrite_output_dir`, first delete the earlier
    run's checkpoints, results and (when `--teachers` is not set) teachers."""
    root = Path(args.output_dir)
    if args.overwrite_output_dir:
        doomed = [*list_checkpoints(root), *root.glob(f".{CHECKPOINT_PREFIX}*"), *(root / name for name in RUN_OUTPUTS)]
        if args.teachers is None:
            doomed.append(root / "teachers")
        for path in doomed:
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    write_json(root / RUN_ARGS_FILE, args.to_dict())
