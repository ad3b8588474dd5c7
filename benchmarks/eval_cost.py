"""What scoring a distilled set costs, and whether training its runs together is faster.

    python benchmarks/eval_cost.py                  # -> benchmarks/results/eval_cost.json
    python benchmarks/eval_cost.py --device cuda --parts together --out eval_cost_cuda.json   # needs no data

score     `hf_distill.evaluate_set` of a 100-image set (../shared/peers/MTT_CIFAR10_ipc10) on
          ../shared/data/cifar10_5k under `hard`, convnet3, 300 epochs x 3 runs, without the random-subset row: wall
          time of the whole call, eager and with torch_compile, each in a fresh process (compilation included)
together  the same 3 runs trained one after another (`training.fit`) and together (one vmapped step over the 3
          models' stacked weights, torch.func), at IPC 1 and IPC 10 for --together_epochs epochs, alternating
          (A B A B) in one process: the ratio, and the largest difference between the two ways' final weights

Only ratios measured in one run mean anything: the machine is shared, and absolute times move with its load.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared"
SET = SHARED / "peers" / "MTT_CIFAR10_ipc10.safetensors"
DATASET = SHARED / "data" / "cifar10_5k"
RUNS = 3


def score_seconds(device: str, torch_compile: bool, epochs: int) -> dict:
    """Wall time of one `evaluate_set` call (this process: run it fresh to count compilation)."""
    from hf_distill import evaluate_set, load_image_dataset
    data = load_image_dataset(str(DATASET))
    start = time.perf_counter()
    result = evaluate_set(str(SET), data, ["hard"], ["convnet3"], epochs, None, RUNS, device=device,
                          random_subset=False, torch_compile=torch_compile)
    return {"seconds": time.perf_counter() - start, "runs": result.rows[0].runs}


def _models(device: str) -> list[torch.nn.Module]:
    """The RUNS fresh convnet3 models, each initialised from its run's seed."""
    from hf_distill.models import create_model
    models = []
    for run in range(RUNS):
        torch.manual_seed(run)
        models.append(create_model("convnet3", 10, 3, 32).to(device))
    return models


def one_after_another(images: torch.Tensor, labels: torch.Tensor, config, device: str) -> list[torch.Tensor]:
    """The runs trained by `training.fit`, one after another: their final weights, flattened."""
    from hf_distill.training import fit
    models = _models(device)
    for run, model in enumerate(models):
        fit(model, images, labels, config, torch.Generator().manual_seed(run))
    return [torch.cat([p.detach().flatten() for p in m.parameters()]) for m in models]


def together(images: torch.Tensor, labels: torch.Tensor, config, device: str) -> list[torch.Tensor]:
    """The same runs (same seeds, batches, augmentations and SGD) in one vmapped step over stacked weights."""
    from torch.func import functional_call, stack_module_state, vmap

    from hf_distill.augment import dsa
    from hf_distill.training import target_loss
    models = _models(device)
    params, buffers = stack_module_state(models)
    skeleton = copy.deepcopy(models[0]).to("meta")
    forward = vmap(lambda p, b, x: functional_call(skeleton, (p, b), (x,)))
    optimizer = torch.optim.SGD(list(params.values()), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[config.epochs // 2], gamma=0.1)
    generators = [torch.Generator().manual_seed(run) for run in range(RUNS)]
    for _ in range(config.epochs):
        orders = [torch.randperm(len(images), generator=g).split(config.batch_size) for g in generators]
        for batches in zip(*orders):
            x = torch.stack([dsa(images[b], g) for b, g in zip(batches, generators)])
            y = torch.stack([labels[b] for b in batches])
            losses = target_loss(forward(params, buffers, x).flatten(0, 1), y.flatten(), config.loss)
            (losses.view(RUNS, -1).mean(1).sum()).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        scheduler.step()
    return [torch.cat([p[run].detach().flatten() for p in params.values()]) for run in range(RUNS)]


def compare_together(device: str, epochs: int, rounds: int) -> dict:
    """One after another vs together at IPC 1 and 10, alternating, with the weights' largest difference."""
    from hf_distill.training import FitConfig
    config = FitConfig(epochs=epochs, lr=0.01)
    results = {}
    for ipc in (1, 10):
        generator = torch.Generator().manual_seed(0)
        images = torch.randn(10 * ipc, 3, 32, 32, generator=generator).to(device)
        labels = torch.arange(10).repeat_interleave(ipc).to(device)
        times: dict[str, list[float]] = {"one_after_another": [], "together": []}
        for _ in range(rounds + 1):  # the first round warms up and is not kept
            weights = []
            for name, train in (("one_after_another", one_after_another), ("together", together)):
                start = _sync(device)
                weights.append(train(images, labels, config, device))
                times[name].append(_sync(device) - start)
        ratios = [a / b for a, b in zip(times["one_after_another"][1:], times["together"][1:])]
        results[f"ipc{ipc}"] = {
            "seconds": {k: v[1:] for k, v in times.items()},
            "ratio_one_after_another_over_together": ratios,
            "median_ratio": statistics.median(ratios),
            "max_weight_difference": max(float((a - b).abs().max()) for a, b in zip(*weights)),
        }
    return results


def _sync(device: str) -> float:
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _fresh_process(*args: str) -> dict:
    """Run this script's `--part` in a new process and return its JSON answer."""
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--together_epochs", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--parts", nargs="+", choices=["score", "together"], default=["score", "together"])
    parser.add_argument("--out", default=str(HERE / "results" / "eval_cost.json"))
    parser.add_argument("--part", choices=["eager", "compiled"], default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.part:
        print(json.dumps(score_seconds(args.device, args.part == "compiled", args.epochs)))
        return
    common = ["--device", args.device, "--epochs", str(args.epochs)]
    score = {}
    for part in ("eager", "compiled") if "score" in args.parts else ():
        score[part] = _fresh_process("--part", part, *common)
        print(f"score, {part}: {score[part]['seconds'] / 60:.1f} min for {RUNS} runs x {args.epochs} epochs", flush=True)
    together_results = compare_together(args.device, args.together_epochs, args.rounds) if "together" in args.parts else {}
    for ipc, r in together_results.items():
        print(f"together, {ipc}: one after another / together = {r['median_ratio']:.2f}x "
              f"(rounds {[round(x, 2) for x in r['ratio_one_after_another_over_together']]}), "
              f"weights differ by at most {r['max_weight_difference']:.1e}", flush=True)
    from hf_distill.host import hardware_description
    Path(args.out).write_text(json.dumps({
        "command": "python benchmarks/eval_cost.py " + " ".join(sys.argv[1:]),
        "device": args.device, "hardware": hardware_description(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "set": SET.name, "dataset": DATASET.name, "protocol": "hard",
        "model": "convnet3", "runs": RUNS, "epochs": args.epochs, "score": score,
        "compiled_speedup": score["eager"]["seconds"] / score["compiled"]["seconds"] if score else None,
        "together_epochs": args.together_epochs, "together": together_results,
    }, indent=2) + "\n")


if __name__ == "__main__":
    main()
