"""Where does a distilled set stop transferring? Score one run's images under one changed factor at a time.

    python benchmarks/transfer.py outputs/bench/cifar10_5k_ipc10 --images 0 90 random --labels teacher hard \
        --models convnet3 alexnet_small --runs 1

Each combination of `--images`, `--labels` and `--models` (and the training settings) is one row: fresh models
trained on those images with those targets, scored once at the end. Rows are appended to `--out` (default
`benchmarks/results/transfer/<run folder name>.json`); a row already there with the same settings is not trained
again, so an interrupted call resumes.

- `--images`: an iteration of the run (its `checkpoint-<n>` images; 0 is the starting real images, labelled like
  the set), or `random`: a new draw of ipc real train images per class for each run (the baseline).
- `--labels`: `teacher` (L1 to the logits of teacher 0 of the run's pool: APM's protocol), `hard` (cross-entropy on
  class ids), `teacher@S` (L1 to teacher 0's logits rescaled so that their standard deviation over the set is S: one
  target scale for every set), `kd:T` (KL to teacher 0's logits at temperature T), or `own` (L1 to the logits of a
  teacher of the evaluation architecture, trained like the run's teachers into `<pool>-<architecture>/` the first
  time).
- `--split test` scores on the test split; `--split val` on 1,000 train images outside every scored set (for
  choosing evaluation settings without reading test). The random draws of `--runs` are left out of it, so rows
  share one validation slice only when they share `--runs`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import Callable

import torch

from hf_distill.checkpoints import ARGS_FILE, CHECKPOINT_PREFIX, load_checkpoint
from hf_distill.data import ImageClassificationData, load_image_dataset
from hf_distill.evaluation import EvalJob, LabelledSet, get_protocol, random_draw, sample_real_subset, train_and_test
from hf_distill.files import write_json
from hf_distill.preprocessing import Preprocessing
from hf_distill.host import hardware_description
from hf_distill.records import Summary
from hf_distill.teachers import TeacherPool, TeacherSpec, save_preprocessing
from hf_distill.training import predict

HERE = Path(__file__).resolve().parent
VALIDATION_SIZE = 1000
VALIDATION_SEED = 123


def run_args(run: Path) -> dict:
    """The distillation arguments of `run`, read from its newest checkpoint."""
    checkpoints = sorted(run.glob(f"{CHECKPOINT_PREFIX}*"), key=lambda p: int(p.name.removeprefix(CHECKPOINT_PREFIX)))
    if not checkpoints:
        raise SystemExit(f"error: {run} holds no {CHECKPOINT_PREFIX}<n> folder; run the distillation first.")
    return json.loads((checkpoints[-1] / ARGS_FILE).read_text())


def images_at(run: Path, iteration: int, start: torch.Tensor) -> torch.Tensor:
    """The run's synthetic images after `iteration` image updates (0: the starting images)."""
    if iteration == 0:
        return start
    path = run / f"{CHECKPOINT_PREFIX}{iteration}"
    if not path.is_dir():
        raise SystemExit(f"error: {path} does not exist; rerun the distillation with --save_steps dividing {iteration} "
                         f"and a --save_total_limit that keeps it.")
    return load_checkpoint(path).tensors["images"]


def own_teacher(pool: Path, model: str, args: dict, data: ImageClassificationData,
                preprocessing: Preprocessing) -> torch.nn.Module:
    """Teacher 0 of a pool of `model`, trained like the run's teachers (epochs, seed, DSA) the first time."""
    own = TeacherPool(pool.parent / f"{pool.name}-{model}")
    if own.missing(1):
        save_preprocessing(preprocessing, own.root)  # the run's pool's, so both teachers see the same inputs
        spec = TeacherSpec(model, {}, args["teacher_epochs"], args["seed"], args["batch_size"], args["dsa_strategy"])
        config = own.train(0, spec, data, torch.device("cpu"), progress=f"{model} teacher")
        print(f"{model} teacher: train accuracy {config.train_accuracy:.1f}% ({own.root})", flush=True)
    return own.load(data, count=1)[0][0]


def targets(labels: str, images: torch.Tensor, teacher: torch.nn.Module,
            own: Callable[[], torch.nn.Module]) -> tuple[str, torch.Tensor | None, float]:
    """(protocol, soft labels, kd temperature) of a `--labels` value for `images`."""
    if labels == "hard":
        return "hard", None, 4.0
    if labels == "teacher":
        return "apm", predict(teacher, images), 4.0
    if labels.startswith("teacher@"):  # the teacher's logits rescaled to one standard deviation for every set
        logits = predict(teacher, images)
        return "apm", logits * (float(labels.removeprefix("teacher@")) / logits.std()), 4.0
    if labels.startswith("kd:"):
        return "kd", predict(teacher, images), float(labels.removeprefix("kd:"))
    if labels == "own":
        return "apm", predict(own(), images), 4.0
    raise SystemExit(f"error: --labels {labels!r}: use teacher, teacher@S, hard, kd:T or own.")


def read_rows(out: Path) -> list[dict]:
    """The rows already in the results file `out` (none if there is none)."""
    return json.loads(out.read_text()) if out.exists() else []


def table(rows: list[dict]) -> str:
    """The rows as a Markdown table, in the order they were scored. `- start` is the paired difference with the
    starting images (iteration 0) under the same settings, run by run (same model seeds): mean ± std."""
    def settings(r: dict) -> tuple:
        return tuple(r[k] for k in ("labels", "model", "epochs", "lr", "augment", "split")) + (len(r["runs"]),)
    start = {settings(r): r["runs"] for r in rows if r["images"] == "0"}
    lines = ["| images | labels | model | epochs | lr | DSA | split | runs | top-1 % | - start | minutes |",
             "|---" * 11 + "|"]
    for r in rows:
        paired = "-"
        if r["images"] not in ("0", "random") and settings(r) in start and len(r["runs"]) > 1:
            gaps = Summary.of([a - b for a, b in zip(r["runs"], start[settings(r)])]).to_dict()
            paired = f"{gaps['mean']:+.1f} ± {gaps['std']:.1f}"
        lines.append(f"| {r['images']} | {r['labels']} | {r['model']} | {r['epochs']} | {r['lr']} | "
                     f"{'on' if r['augment'] else 'off'} | {r['split']} ({r['test_size']}) | {len(r['runs'])} | "
                     f"{r['mean']:.1f} ± {r['std']:.1f} | {paired} | {r['seconds'] / 60:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="a distillation output folder with checkpoints and a teacher pool")
    parser.add_argument("--images", nargs="+", default=["0", "last", "random"],
                        help="iterations (0, n, 'last') and/or 'random'")
    parser.add_argument("--labels", nargs="+", default=["teacher"])
    parser.add_argument("--models", nargs="+", default=["convnet3"])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--lr", type=float, default=None, help="default: the run's --lr_net")
    parser.add_argument("--no_augment", action="store_true", help="train the evaluation models without DSA")
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--table", action="store_true", help="only print the rows of --out as a Markdown table")
    opts = parser.parse_args()
    out = opts.out or HERE / "results" / "transfer" / f"{opts.run.name}.json"
    rows = read_rows(out)
    if opts.table:
        print(table(rows))
        return
    args = run_args(opts.run)
    data = load_image_dataset(args["dataset"], args["dataset_config_name"], args["image_column"], args["label_column"],
                              args["train_split"], args["test_split"], args["resolution"])
    pool = Path(args["teachers"] or opts.run / "teachers")
    preprocessing = TeacherPool(pool).preprocessing
    teacher = TeacherPool(pool).load(data, count=1)[0][0]
    ipc, classes, seed = args["ipc"], data.num_classes, args["seed"]
    start_index = sample_real_subset(data.train_labels, ipc, classes, torch.Generator().manual_seed(seed))
    start = preprocessing(data.train_images[start_index])
    labels_of_set = torch.arange(classes).repeat_interleave(ipc)
    full = data
    if opts.split == "val":
        used = torch.cat([start_index, *(random_draw(data.train_labels, ipc, classes, seed, r) for r in range(opts.runs))])
        keep = torch.ones(len(data.train_labels), dtype=torch.bool)
        keep[used] = False
        val = keep.nonzero().squeeze(1)[torch.randperm(int(keep.sum()), generator=torch.Generator().manual_seed(
            VALIDATION_SEED))[:VALIDATION_SIZE]].sort().values
        data = dataclasses.replace(data, test_images=data.train_images[val], test_labels=data.train_labels[val])
    lr = opts.lr or args["lr_net"]
    last = str(args["iterations"])
    for image_spec in [last if i == "last" else i for i in opts.images]:
        for labels in opts.labels:
            for model in opts.models:
                key = {"images": image_spec, "labels": labels, "model": model, "epochs": opts.epochs, "lr": lr,
                       "augment": not opts.no_augment, "split": opts.split}
                if any(all(row.get(k) == v for k, v in key.items()) and len(row["runs"]) == opts.runs for row in rows):
                    continue
                scores, began = [], time.perf_counter()
                for r in range(opts.runs):
                    if image_spec == "random":
                        index = random_draw(data.train_labels, ipc, classes, seed, r)
                        images, hard = preprocessing(data.train_images[index]), data.train_labels[index]
                    else:
                        images, hard = images_at(opts.run, int(image_spec), start), labels_of_set
                    name, soft, temperature = targets(labels, images, teacher,
                                                      lambda: own_teacher(pool, model, args, full, preprocessing))
                    protocol = get_protocol(name, epochs=opts.epochs, lr=lr, kd_temperature=temperature,
                                            augmentation="none" if opts.no_augment else args["dsa_strategy"])
                    kwargs = args["model_kwargs"] if model == (args["model"] or "convnet3") else {}
                    scores.append(train_and_test(EvalJob(image_spec, name, model, r), LabelledSet(images, hard, soft),
                                                 protocol, data, preprocessing, seed, args["batch_size"],
                                                 model_kwargs=kwargs))
                row = {**key, **Summary.of(scores).to_dict(), "seconds": time.perf_counter() - began,
                       "test_size": len(data.test_labels), "hardware": hardware_description()}
                rows = read_rows(out) + [row]  # read again: another call may have added rows meanwhile
                write_json(out, rows)
                print(f"images {image_spec:>6} labels {labels:<12} {model:<15} {row['mean']:5.1f} +- {row['std']:.1f} "
                      f"({opts.runs} run(s), {opts.epochs} ep, lr {lr}, augment {not opts.no_augment}, {opts.split}, "
                      f"{row['seconds'] / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    main()
