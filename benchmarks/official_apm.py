"""Run the official APM code (github mchen725/DD_APM, no license: run outside this repository, never copied) on CPU
on a local CIFAR-10 copy, and export its set as a release `hf-distill evaluate` scores.

    git clone https://github.com/mchen725/DD_APM /tmp/dd_apm/src      # or any copy of it (commit 53c8847 was used)
    pip install --target /tmp/dd_apm/pylib kornia einops               # its imports that hf-distill does not need
    python benchmarks/official_apm.py data ../shared/data/cifar10_5k /tmp/dd_apm/data_5k
    python benchmarks/official_apm.py checkout /tmp/dd_apm/src /tmp/dd_apm/run_5k
    PYTHONPATH=/tmp/dd_apm/pylib python benchmarks/official_apm.py run /tmp/dd_apm/run_5k model_train/train.py \\
        --dataset CIFAR10 --zca --model ConvNetW64 --train_epochs 20 --num_experts 1 \\
        --buffer_path ./model_train/models --data_path /tmp/dd_apm/data_5k
    PYTHONPATH=/tmp/dd_apm/pylib python benchmarks/official_apm.py run /tmp/dd_apm/run_5k distill.py \\
        --dataset CIFAR10 --zca --model ConvNetW64 --ipc 10 --Iteration 90 --lr_img 5.6 --img_mom 0.5 --lr_net 0.1 \\
        --s_epoch 60 --s_num 5 --mid_gap 2 --ce 0.1 --loss l1 --soft_lab --batch_train 256 --eval_mode S \\
        --num_eval 1 --epoch_eval_train 300 --save --data_path /tmp/dd_apm/data_5k --save_path /tmp/dd_apm/run_5k/out
    python benchmarks/official_apm.py export /tmp/dd_apm/run_5k/out/*_best.pt outputs/bench/apm_official_5k.safetensors
    hf-distill evaluate outputs/bench/apm_official_5k.safetensors --dataset ../shared/data/cifar10_5k \\
        --teachers outputs/bench/cifar10_5k_teachers --protocol apm hard --models convnet3 --epochs 300 --num_runs 3

- `data` writes a Hub-layout CIFAR-10 (`img`, `label`) as torchvision's `cifar-10-batches-py/` files, which the
  official code reads.
- `checkout` copies the official code (`git archive HEAD` of a clone) and makes three edits, each a setting of ours:
  the set is evaluated and saved after the last iteration (the code evaluates every 50 iterations only, so at 90 it
  would keep the set of iteration 50); the teacher keeps its last epoch (the code keeps the epoch of best *test*
  accuracy); its lr drops at half its epochs (the code: at epoch 50, never reached in 20).
- `run` runs one of its scripts from the copy, with torchvision's CIFAR-10 checksum check switched off (the copy's
  files are converted, not downloaded).
- `export` writes its saved set (ZCA-space images, one teacher's logits) as a safetensors release with the class ids
  (`labels_hard`: the images are class-major) and `zca: yes`, so `hf-distill evaluate` whitens the real data the
  same way (the same formula, eps 0.1, fitted on the same train split; the official code fits in float32).

Its networks are re-seeded from the clock (`utils.py`), so two runs differ; that is left as it is.
"""

import argparse
import io
import os
import pickle
import re
import runpy
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

import datasets

EDITS = {  # file -> (pattern, replacement): our settings, see the module docstring
    "distill.py": [(r"eval_it_pool = .*", "eval_it_pool = [args.Iteration]")],
    "model_train/train.py": [(r"if test_acc > best_test_acc:", "if True:"),
                             (r"MultiStepLR\(teacher_optim,\s*\[50\]", "MultiStepLR(teacher_optim, [args.train_epochs // 2]")],
}


def write_batches(source: str, out: Path) -> None:
    """`source`'s train and test splits as cifar-10-batches-py pickles (rows of R, G, B planes, uint8)."""
    folder = out / "cifar-10-batches-py"
    partial = out / "cifar-10-batches-py.partial"  # renamed once every file is written
    partial.mkdir(parents=True, exist_ok=True)
    ds = datasets.load_dataset(source)
    names = ds["train"].features["label"].names

    def rows(split: str) -> tuple[np.ndarray, list[int]]:
        images = np.stack([np.asarray(im.convert("RGB")).transpose(2, 0, 1).reshape(-1) for im in ds[split]["img"]])
        return images.astype(np.uint8), [int(y) for y in ds[split]["label"]]

    images, labels = rows("train")
    for k, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
        with open(partial / f"data_batch_{k}", "wb") as f:
            pickle.dump({"data": images[part], "labels": [labels[i] for i in part]}, f)
    test_images, test_labels = rows("test")
    with open(partial / "test_batch", "wb") as f:
        pickle.dump({"data": test_images, "labels": test_labels}, f)
    with open(partial / "batches.meta", "wb") as f:
        pickle.dump({"label_names": names}, f)
    if folder.exists():
        shutil.rmtree(folder)
    partial.rename(folder)
    print(f"{out}: {len(labels):,} train and {len(test_labels):,} test images, classes {names}")


def checkout(clone: Path, out: Path) -> None:
    """The official code at `clone`'s HEAD, copied to `out` with `EDITS` made (each must apply exactly once)."""
    archive = subprocess.run(["git", "-C", str(clone), "archive", "HEAD"], check=True, capture_output=True).stdout
    out.mkdir(parents=True, exist_ok=True)
    tarfile.open(fileobj=io.BytesIO(archive)).extractall(out, filter="data")
    commit = subprocess.run(["git", "-C", str(clone), "rev-parse", "HEAD"], check=True, capture_output=True, text=True)
    for name, edits in EDITS.items():
        path = out / name
        text = path.read_text()
        for pattern, replacement in edits:
            text, count = re.subn(pattern, replacement, text)
            if count != 1:
                sys.exit(f"error: {name}: {pattern!r} matched {count} times, not once; the code changed since commit "
                         "53c8847, so check the edits by hand")
        path.write_text(text)
    (out / "SOURCE_COMMIT").write_text(commit.stdout)
    print(f"{out}: commit {commit.stdout.strip()}, {sum(map(len, EDITS.values()))} edits")


def run(copy: Path, script: str, args: list[str]) -> None:
    """`script` of the copy run as __main__ from the copy's root, without torchvision's checksum check."""
    import torchvision.datasets.cifar as cifar

    cifar.check_integrity = lambda *args, **kwargs: True  # batches.meta
    cifar.CIFAR10._check_integrity = lambda self: True  # the batches
    os.chdir(copy)
    sys.path[:0] = [str((copy / script).parent), str(copy)]
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


def export(saved: Path, out: Path) -> None:
    """The set of one `--save` file of the official `distill.py` as a safetensors release."""
    images, logits = torch.load(saved, map_location="cpu", weights_only=False)["data"][:2]  # also holds numpy
    ipc = len(images) // logits.shape[1]
    hard = torch.arange(logits.shape[1]).repeat_interleave(ipc)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    save_file({"images": images.float().contiguous(), "labels": logits.float().contiguous(), "labels_hard": hard}, tmp,
              metadata={"zca": "yes (kornia ZCAWhitening, eps 0.1, fitted on the train split)",
                        "method": "APM-official", "source": str(saved)})
    tmp.rename(out)
    agree = (logits.argmax(1) == hard).float().mean().item()
    print(f"{out}: {len(images)} images (ipc {ipc}), logit std {logits.std():.2f}, teacher agrees with {agree:.0%}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    data = commands.add_parser("data")
    data.add_argument("source")
    data.add_argument("out", type=Path)
    copy = commands.add_parser("checkout")
    copy.add_argument("clone", type=Path)
    copy.add_argument("out", type=Path)
    runner = commands.add_parser("run")
    runner.add_argument("copy", type=Path)
    runner.add_argument("script")
    runner.add_argument("args", nargs=argparse.REMAINDER)
    exported = commands.add_parser("export")
    exported.add_argument("saved", type=Path)
    exported.add_argument("out", type=Path)
    opts = parser.parse_args()
    if opts.command == "data":
        write_batches(opts.source, opts.out)
    elif opts.command == "checkout":
        checkout(opts.clone, opts.out)
    elif opts.command == "run":
        run(opts.copy.resolve(), opts.script, opts.args)
    else:
        export(opts.saved, opts.out)


if __name__ == "__main__":
    main()
