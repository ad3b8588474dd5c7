"""How far a distilled set moved from its real initialisation, and what its teacher still says about it.

    python benchmarks/diagnose.py outputs/bench/fashion_mnist_ipc1

Reads `<output_dir>/distilled` and `<output_dir>/teachers` of a finished run (real initialisation) and
prints: mean |change| of the images against the pixel-space std of the start, teacher-0 agreement with the
hard labels, and the mean |logit| of the soft labels, for the distilled set and the real images it
started from.
"""

import sys
from pathlib import Path

import torch

from hf_distill import load_distilled, load_image_dataset
from hf_distill.evaluation import sample_real_subset
from hf_distill.teacher_repos import resolve_teacher_pool
from hf_distill.teachers import load_teacher, teacher_dir
from hf_distill.training import predict


def main(output_dir: str) -> None:
    distilled = load_distilled(Path(output_dir) / "distilled")
    args = distilled.metadata["args"]
    pool = args["teachers"] or str(Path(output_dir) / "teachers")
    root = resolve_teacher_pool(pool, 1)
    data = load_image_dataset(args["dataset"], args["dataset_config_name"], args["image_column"], args["label_column"],
                              args["train_split"], args["test_split"], args["resolution"])
    index = sample_real_subset(data.train_labels, distilled.ipc, data.num_classes, torch.Generator().manual_seed(args["seed"]))
    start = distilled.preprocessing(data.train_images[index])
    teacher, _ = load_teacher(teacher_dir(root, 0))
    start_logits = predict(teacher, start)
    print(f"image std at start {start.std():.3f}, mean |change| {(distilled.images - start).abs().mean():.3f}")
    for name, logits in (("real start", start_logits), ("distilled", distilled.soft_labels)):
        agree = (logits.argmax(1) == distilled.labels).float().mean() * 100
        print(f"{name:>10}: teacher-0 argmax == label {agree:.0f}%, mean |soft label| {logits.abs().mean():.2f}")


if __name__ == "__main__":
    main(sys.argv[1])
