"""How much the random-subset baseline depends on the draw and on which teacher labels it.

    python benchmarks/teacher_spread.py outputs/tune/fashion_mnist_teachers --draws 10
    python benchmarks/teacher_spread.py outputs/bench/fashion_mnist_teachers --draws 30 --read_test

Reads the pool's dataset and splits from its teacher configs and scores on the pool's own `test_split`. A pool
trained on a slice of a split (as `benchmarks/tune.py` writes) is scored on its other slice, the validation slice.
A pool scored on the test split is refused unless `--read_test` is given: such a reading describes the baseline
for a report and must never choose a setting. Draws `--draws` random real subsets of `--ipc` images per class
(seeds 0, 1, ...: the draws of benchmark seeds 0, 1, ...), labels each with the logits of every teacher of the
pool, trains one fresh model per (draw, teacher) with the evaluation protocol (L1 to the logits, `--eval_epochs`,
`--lr_net`, DSA) and prints the accuracy per draw and teacher, then each teacher's mean and std; `--output`
also writes them to a JSON file.
"""

import argparse

import torch

from hf_distill import load_image_dataset
from hf_distill.evaluation import EvalJob, LabelledSet, get_protocol, sample_real_subset, train_and_test
from hf_distill.files import write_json
from hf_distill.records import Summary
from hf_distill.teachers import TeacherPool, read_teacher_config
from hf_distill.training import predict


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teachers", help="a local teacher pool folder (teacher-000, teacher-001, ...)")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--ipc", type=int, default=1)
    parser.add_argument("--eval_epochs", type=int, default=1000)
    parser.add_argument("--lr_net", type=float, default=0.1)
    parser.add_argument("--read_test", action="store_true", help="accept a pool scored on the test split (reporting only)")
    parser.add_argument("--output", help="a JSON file for the scores (e.g. benchmarks/results/baseline_spread/<name>.json)")
    args = parser.parse_args()
    pool = TeacherPool(args.teachers)
    count = len(pool)
    if count == 0:
        raise SystemExit(f"No teacher-000 in {args.teachers}: pass a local pool folder written by tune.py.")
    first = read_teacher_config(pool.teacher_dir(0))
    source = first.source
    if source["test_split"].split("[")[0] != source["train_split"].split("[")[0] and not args.read_test:
        raise SystemExit(f"{args.teachers} is scored on the split '{source['test_split']}', not on a slice of its train "
                         f"split '{source['train_split']}'; pass a validation pool written by tune.py, or add "
                         f"--read_test to describe the test baseline (never to choose a setting).")
    data = load_image_dataset(source["dataset"], source["config_name"], source["image_column"], source["label_column"],
                              source["train_split"], source["test_split"], first.resolution)
    teachers, configs = pool.load(data)
    preprocessing = pool.preprocessing
    protocol = get_protocol("apm", epochs=args.eval_epochs, lr=args.lr_net)
    job = EvalJob("random_subset", "apm", first.architecture, 0)
    print(f"{source['dataset']} train {source['train_split']}, scored on {source['test_split']}, IPC {args.ipc}")
    print("draw | " + " | ".join(f"teacher {i}" for i in range(count)))
    scores: list[list[float]] = [[] for _ in range(count)]
    for draw in range(args.draws):
        index = sample_real_subset(data.train_labels, args.ipc, data.num_classes, torch.Generator().manual_seed(draw))
        images = preprocessing(data.train_images[index])
        for i, teacher in enumerate(teachers):
            labelled = LabelledSet(images, data.train_labels[index], predict(teacher, images))
            scores[i].append(train_and_test(job, labelled, protocol, data, preprocessing, draw,
                                            model_kwargs=configs[i].model_kwargs))
        print(f"{draw} | " + " | ".join(f"{s[-1]:.1f}" for s in scores), flush=True)
    summaries = [Summary.of(s).to_dict() for s in scores]
    print("mean | " + " | ".join("{mean:.1f} +- {std:.1f}".format(**s) for s in summaries))
    if args.output:
        write_json(args.output, {"teachers": args.teachers, "source": source, "ipc": args.ipc, "draws": args.draws,
                                 "eval_epochs": args.eval_epochs, "lr_net": args.lr_net,
                                 "random_subset": {f"teacher {i}": s for i, s in enumerate(summaries)}})


if __name__ == "__main__":
    main()
