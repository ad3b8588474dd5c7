"""Run a tiny distillation on every process; save each rank's images, a hash of its images after every step, the
work it did, and whether resuming from checkpoint-2 reproduces its images (used by test_multiprocess)."""

import hashlib
import json
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import TrainerCallback

import hf_distill.evaluation as evaluation_module
import hf_distill.teachers as teachers_module
import hf_distill.trainer as trainer_module
from hf_distill import DistillationTrainer
from hf_distill.cli import parse_args

work = {"segments": 0, "eval_jobs": 0, "teachers": 0}


def counting(fn, key, count=lambda *a, **k: 1):
    def wrapped(*args, **kwargs):
        work[key] += count(*args, **kwargs)
        return fn(*args, **kwargs)
    return wrapped


def segments(images, batch, labels, teacher, students, ce_weight, segment_size, shard=(0, 1), *_, **__):
    return len(batch.split(segment_size)[shard[0]::shard[1]])


class ImageHashes(TrainerCallback):
    def __init__(self):
        self.hashes = []

    def on_step_end(self, args, state, control, images=None, **kwargs):
        self.hashes.append(hashlib.sha256(images.cpu().numpy().tobytes()).hexdigest())


trainer_module.accumulate_image_gradient = counting(trainer_module.accumulate_image_gradient, "segments", segments)
evaluation_module.train_and_test = counting(evaluation_module.train_and_test, "eval_jobs")
teachers_module.train_teacher = counting(teachers_module.train_teacher, "teachers")

out = Path(sys.argv[1])
args = parse_args(sys.argv[2:])
hashes = ImageHashes()
trainer = DistillationTrainer(args, callbacks=[hashes])
distilled = trainer.train()
results = trainer.evaluate()
rank = trainer.accelerator.process_index
done = dict(work)
checkpoint = Path(args.output_dir) / "checkpoint-2"
resumed = DistillationTrainer(args, data=trainer.data).train(resume_from_checkpoint=str(checkpoint))
save_file({"images": distilled.images.contiguous(), "soft_labels": distilled.soft_labels.contiguous()},
          out / f"rank{rank}.safetensors")
(out / f"rank{rank}.json").write_text(json.dumps({"work": done, "world": trainer.accelerator.num_processes,
                                                  "results": results.to_dict()["results"], "image_hashes": hashes.hashes,
                                                  "resume_is_exact": torch.equal(resumed.images, distilled.images)}))
