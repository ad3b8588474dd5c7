"""How far a distilled set moved from its real initialisation, and what its teacher still says about it.

    python benchmarks/diagnose.py outputs/bench/fashion_mnist_ipc1

Reads `<output_dir>/distilled` and `<output_dir>/teachers` of a finished run (real initialisation) and
prints: mean |change| of the images against the pixel-space std of the start, teacher-0 agreement with the
hard labels, and the scale of teacher 0's logits (mean |logit|, std, max, top-1 margin) on the distilled set, the real
images it started from and 1,000 random real train images. Then it trains one student on the starting images the way the run's refreshes do
(`student_epochs`, `lr_net`, L1 to teacher 0's logits) and prints, per snapshot, how far its logits on those images
still are from the teacher's: the disagreement the first image step has to work with.
"""

import sys
from pathlib import Path

import torch

from hf_distill import load_distilled, load_image_dataset
from hf_distill.evaluation import sample_real_subset
from hf_distill.teachers import TeacherPool
from hf_distill.apm import snapshot_epochs
from hf_distill.models import create_model
from hf_distill.training import FitConfig, fit, predict


def main(output_dir: str) -> None:
    distilled = load_distilled(Path(output_dir) / "distilled")
    args = distilled.metadata.args
    pool = args["teachers"] or str(Path(output_dir) / "teachers")
    data = load_image_dataset(args["dataset"], args["dataset_config_name"], args["image_column"], args["label_column"],
                              args["train_split"], args["test_split"], args["resolution"])
    index = sample_real_subset(data.train_labels, distilled.ipc, data.num_classes, torch.Generator().manual_seed(args["seed"]))
    start = distilled.preprocessing(data.train_images[index])
    teacher = TeacherPool.open(pool).load(data, count=1)[0][0]
    start_logits = predict(teacher, start)
    print(f"image std at start {start.std():.3f}, mean |change| {(distilled.images - start).abs().mean():.3f}")
    sample = torch.randperm(len(data.train_labels), generator=torch.Generator().manual_seed(args["seed"]))[:1000]
    real_logits = predict(teacher, distilled.preprocessing(data.train_images[sample]))
    for name, logits, labels in (("real start", start_logits, distilled.labels),
                                 ("distilled", distilled.soft_labels, distilled.labels),
                                 ("1,000 real", real_logits, data.train_labels[sample])):
        agree = (logits.argmax(1) == labels).float().mean() * 100
        top2 = logits.topk(2, dim=1).values
        print(f"{name:>10}: teacher-0 argmax == label {agree:.0f}%, mean |soft label| {logits.abs().mean():.2f}, "
              f"std {logits.std():.2f}, max |logit| {logits.abs().max():.1f}, top-1 margin {(top2[:, 0] - top2[:, 1]).mean():.2f}")
    epochs = args["student_epochs"]
    torch.manual_seed(args["seed"])
    student = create_model(distilled.metadata.model, data.num_classes, data.channels, data.resolution,
                           **args["model_kwargs"])
    config = FitConfig(epochs=epochs, lr=args["lr_net"], batch_size=args["batch_size"], loss="l1",
                       dsa_strategy=args["dsa_strategy"])
    snapshots = fit(student, start, start_logits, config, torch.Generator().manual_seed(args["seed"]),
                    snapshot_epochs=snapshot_epochs(epochs, args["num_checkpoints"]))
    gaps = ", ".join(f"{(predict(s, start) - start_logits).abs().mean():.2f}" for s in snapshots)
    print(f"student ({epochs} epochs) on the starting images: mean |s - t| per snapshot {gaps}")


if __name__ == "__main__":
    main(sys.argv[1])
