"""Score other methods' CIFAR-10 releases (../shared/peers) and, optionally, our own set under one protocol.

    python benchmarks/score_peers.py --epochs 300 --torch_compile \
        --ours outputs/bench/cifar10_5k_ipc10/distilled --teachers outputs/bench/cifar10_5k_teachers
        # the committed leaderboard: the CIFAR-10 peers under `hard` and our set (from `benchmarks/run.py
        # cifar10_5k_ipc10`) under `apm` and `hard`, on the 4 architectures; only rows the file lacks are scored,
        # architecture by architecture, so a stopped run resumes where it stopped
    python benchmarks/score_peers.py --models convnet3 --epochs 300   # the literature check alone
    python benchmarks/score_peers.py --models resnet18_small --ipc 1 --epochs 300 --torch_compile   # cheap rows first
    python benchmarks/score_peers.py --compare                        # only rebuild the comparison with the papers
    python benchmarks/score_peers.py --epochs 300 --models convnet3 --scores \
        --ours outputs/bench/cifar10_5k_ipc10/distilled --teachers outputs/bench/cifar10_5k_teachers
        # the rows of DD-Ranking's scores on convnet3 (README: Scores): no augmentation, the full-train-split model

Every set is scored with `hf_distill.evaluate_set` on the test split of `--dataset` (default: the bit-exact
../shared/data/cifar10_5k, 1,017 images; the papers used the full 10,000, as ../shared/data/cifar10_jpeg has in a
JPEG q75 copy), next to one random-subset row per IPC, protocol and architecture (a new
draw per run). Rows go to `benchmarks/results/leaderboard.json` (render: `hf-distill leaderboard
benchmarks/results/leaderboard.json`); the comparison with each paper's reported ConvNet accuracy is printed and
written to `leaderboard_vs_papers.md`.
"""

import argparse
import json
from pathlib import Path

from safetensors import safe_open

from hf_distill import evaluate_set, load_image_dataset
from hf_distill.evaluation import PROTOCOLS
from hf_distill.leaderboard import ScoreRow, current_rows
from hf_distill.sets import read_set

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT.parent / "shared" / "peers"
SOURCE = ROOT.parent / "shared" / "data" / "cifar10_5k"
RESULTS = ROOT / "benchmarks" / "results"
# Releases whose own metadata does not say ZCA, but which only work whitened (KIP: its own ZCA, approximated by ours).
WHITENED = {"KIP_CIFAR10_ipc10"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["convnet3", "vgg11_small", "alexnet_small", "resnet18_small"],
                        help="Architectures, scored in this order (resnet18_small, the costliest, last).")
    parser.add_argument("--epochs", type=int, default=None, help="Default: the protocol's (1000).")
    parser.add_argument("--num_runs", type=int, default=3)
    parser.add_argument("--ipc", type=int, nargs="+", default=None,
                        help="Score only sets of these IPCs (e.g. 1: the cheap rows first on a costly architecture).")
    parser.add_argument("--ours", default=None, help="Our distilled/ folder of CIFAR-10 5k IPC 10.")
    parser.add_argument("--teachers", default=None, help="The teacher pool of --ours (adds the `apm` protocol).")
    parser.add_argument("--dataset", default=str(SOURCE), help="Source dataset whose test split scores every set.")
    parser.add_argument("--output", default=str(RESULTS / "leaderboard.json"))
    parser.add_argument("--ours_only", action="store_true", help="Score only --ours (the peers' rows stay).")
    parser.add_argument("--fresh", action="store_true", help="Start --output anew (default: add only missing rows).")
    parser.add_argument("--torch_compile", action="store_true", help="Compile the models (evaluate_set's torch_compile).")
    parser.add_argument("--compare", action="store_true", help="Only rebuild the comparison from --output.")
    parser.add_argument("--scores", action="store_true", help="Also the rows of DD-Ranking's scores (evaluate_set's "
                        "`scores`): each set without augmentation, and a full-train-split model per architecture.")
    args = parser.parse_args()
    output = Path(args.output)
    if not args.compare:
        score(args, output)
    text = compare_with_papers(output, args.dataset)
    (output.parent / f"{output.stem}_vs_papers.md").write_text(text + "\n")
    print(text)


def score(args: argparse.Namespace, output: Path) -> None:
    """Add to `output` every (set, protocol, architecture) row it lacks, architecture by architecture: --ours first,
    then the CIFAR-10 peers, with the random-subset rows (one per IPC and protocol). `evaluate_set` trains only the
    rows `output` lacks (matched by fingerprint too, so a re-made set under a known name is scored, not skipped, and
    by `model_fingerprint`, so a changed model definition is scored again) and adds each as soon as it is done, so a
    stopped run resumes there. With --scores, also the rows of DD-Ranking's scores."""
    data = load_image_dataset(args.dataset)
    if args.fresh:
        output.unlink(missing_ok=True)
    sets = [] if args.ours_only else [(str(p), read_set(str(p), data, p.stem in WHITENED or None), "hard")
                                      for p in sorted(PEERS.glob("*_CIFAR10_*.safetensors"))]
    if args.ours:
        ours = read_set(args.ours, data, method="APM (hf-distill)")
        protocols = ["apm", "hard"] if args.teachers and ours.soft_labels is not None else ["hard"]  # apm: soft labels
        sets[:0] = [(args.ours, ours, protocol) for protocol in protocols]
    for model in args.models:
        for path, scored, protocol in sets:
            if args.ipc and scored.ipc not in args.ipc:
                continue
            soft = PROTOCOLS[protocol].soft
            result = evaluate_set(path, data, [protocol], [model], args.epochs, None, args.num_runs,
                                  teachers=args.teachers if soft else None, zca=scored.name in WHITENED or None,
                                  method=scored.method, torch_compile=args.torch_compile, scores=args.scores,
                                  leaderboard=output)
            print(result.to_markdown(), flush=True)


def compare_with_papers(output: Path, dataset: str) -> str:
    """Each scored peer's convnet3 `hard` row on `dataset` (on convnet3's latest definition, with the default DSA as the
    papers trained) next to the ConvNet accuracy its paper reports (release metadata)."""
    rows = [r for r in current_rows([ScoreRow(**r) for r in json.loads(output.read_text())["rows"]])[0]
            if Path(str(r.dataset)).name == Path(dataset).name]
    size = next((f"{r.test_size:,}" for r in rows if r.test_size), "?")
    lines = [f"| set | paper (ConvNet, 10,000 test images) | here (convnet3, hard, {size} test images) | difference |",
             "|---|---|---|---|"]
    for row in rows:
        path = PEERS / f"{row.set}.safetensors"
        if row.model != "convnet3" or row.protocol != "hard" or row.augmentation is not None or not path.exists():
            continue
        with safe_open(path, framework="pt") as f:
            reported = json.loads((f.metadata() or {}).get("paper_reported_percent", "null"))
        if reported is not None:
            lines.append(f"| {row.set} | {reported:.1f} | {row.mean:.1f} ± {row.std:.1f} ({row.epochs} "
                         f"epochs, {len(row.runs)} runs) | {row.mean - reported:+.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
