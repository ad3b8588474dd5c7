"""Does an evaluation model learn anything from a set in its first epochs? Trace one model's training on it.

    python benchmarks/plateau.py outputs/bench/cifar10_ipc10_lr14 --images random final --model alexnet_small
    python benchmarks/plateau.py outputs/bench/cifar10_ipc10_lr14 --images random final --torch_init --seeds 0 1 2

Trains one `--model` per seed in `--seeds` on a run's final images or on a random real draw (ipc per class, seed 123), with L1 to
teacher 0's logits rescaled to std 3 (transfer.py's `teacher@3`), DSA, SGD at `--lr`, and prints every 10 epochs the
L1 on the set, the spread of the model's logits across the images (mean over classes of their std over images: near 0
means the model gives every image the same output) and its accuracy on the set's own class ids. `--torch_init`
re-draws the convolutions with PyTorch's default initialisation before training (alexnet_small's own, He-normal with
zero biases, replaced it on 2026-12-07).
"""

import argparse
from pathlib import Path

import torch

from hf_distill import load_distilled, load_image_dataset
from hf_distill.evaluation import sample_real_subset
from hf_distill.models import create_model
from hf_distill.teachers import TeacherPool
from hf_distill.training import FitConfig, fit, predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a distillation output folder (distilled/ and a teacher pool)")
    parser.add_argument("--images", nargs="+", choices=["final", "random"], default=["random", "final"])
    parser.add_argument("--model", default="alexnet_small")
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="model seeds, one model each")
    parser.add_argument("--torch_init", action="store_true")
    opts = parser.parse_args()
    distilled = load_distilled(opts.run / "distilled")
    args = distilled.metadata.args
    data = load_image_dataset(args["dataset"], args["dataset_config_name"], args["image_column"], args["label_column"],
                              args["train_split"], args["test_split"], args["resolution"])
    teacher = TeacherPool.open(args["teachers"] or str(opts.run / "teachers")).load(data, count=1)[0][0]
    for which in opts.images:
        if which == "random":
            index = sample_real_subset(data.train_labels, distilled.ipc, data.num_classes, torch.Generator().manual_seed(123))
            images, labels = distilled.preprocessing(data.train_images[index]), data.train_labels[index]
        else:
            images, labels = distilled.images, distilled.labels
        logits = predict(teacher, images)
        targets = logits * (3 / logits.std())
        for seed in opts.seeds:
            torch.manual_seed(seed)
            model = create_model(opts.model, data.num_classes, data.channels, data.resolution)
            if opts.torch_init:
                for module in model.modules():
                    if isinstance(module, torch.nn.Conv2d):
                        module.reset_parameters()

            def trace(epoch: int) -> None:
                if epoch % 10 == 0:
                    with torch.no_grad():
                        model.eval()
                        out = model(images)
                        model.train()
                    print(f"{which:>6} seed {seed} epoch {epoch:3d}: L1 {(out - targets).abs().mean():.3f}, logit spread "
                          f"over images {out.std(0).mean():.3f}, accuracy on the set "
                          f"{(out.argmax(1) == labels).float().mean():.2f}", flush=True)

            fit(model, images, targets, FitConfig(epochs=opts.epochs, lr=opts.lr, loss="l1"),
                torch.Generator().manual_seed(seed), on_epoch_end=trace)


if __name__ == "__main__":
    main()
