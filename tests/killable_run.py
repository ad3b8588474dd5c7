"""examples/distill.py, stopped at a chosen point: it touches MARKER, then waits to be killed (used by test_resume).

    python tests/killable_run.py MARKER step N ARGS...         # before the image update of this process's N-th iteration
    python tests/killable_run.py MARKER checkpoint N ARGS...   # while writing checkpoint-N, after its tensors
    python tests/killable_run.py MARKER teacher N ARGS...      # before this process trains its N-th teacher
"""

import itertools
import runpy
import sys
import time
from pathlib import Path

import hf_distill.checkpoints as checkpoints_module
import hf_distill.teachers as teachers_module
import hf_distill.trainer as trainer_module

SCRIPT = Path(__file__).resolve().parents[1] / "examples" / "distill.py"
marker, point, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])


def wait_to_be_killed():
    marker.touch()
    time.sleep(600)


def stop_before_call(module, name, number):
    real, calls = getattr(module, name), itertools.count(1)

    def wrapped(*args, **kwargs):
        if next(calls) == number:
            wait_to_be_killed()
        return real(*args, **kwargs)
    setattr(module, name, wrapped)


def stop_after_tensors_of_checkpoint(number):
    real = checkpoints_module.save_tensors

    def wrapped(tensors, path, *args, **kwargs):
        real(tensors, path, *args, **kwargs)
        if Path(path).parent.name.startswith(f".checkpoint-{number}-"):
            wait_to_be_killed()
    checkpoints_module.save_tensors = wrapped


if point == "step":
    stop_before_call(trainer_module, "accumulate_image_gradient", n)
elif point == "teacher":
    stop_before_call(teachers_module, "train_teacher", n)
else:
    stop_after_tensors_of_checkpoint(n)
sys.argv = [str(SCRIPT), *sys.argv[4:]]
runpy.run_path(str(SCRIPT), run_name="__main__")
