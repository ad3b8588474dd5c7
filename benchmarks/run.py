"""CPU-sized benchmarks on real data: distilled set vs random real subset under one protocol.

    python benchmarks/run.py                              # every config in benchmarks/configs
    python benchmarks/run.py fashion_mnist_ipc1           # one row
    python benchmarks/run.py --table                      # rebuild benchmarks/README.md from results/

Each row runs `examples/distill.py --config benchmarks/configs/<row>.yaml` in its own process (so peak
memory is per row) and writes `benchmarks/results/<row>.json`: eval_results.json plus `dataset`, `ipc`
and the config. Rows that share `teachers` reuse the same teachers.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_row(name: str) -> dict:
    config_path = HERE / "configs" / f"{name}.yaml"
    config = yaml.safe_load(config_path.read_text())
    subprocess.run([sys.executable, str(ROOT / "examples" / "distill.py"), "--config", str(config_path)], cwd=ROOT, check=True)
    result = json.loads((ROOT / config["output_dir"] / "eval_results.json").read_text())
    result.update(row=name, config=config)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def table(results: list[dict]) -> str:
    rows = ["| row | dataset | IPC | model | teacher | distilled | random subset | gain | distilled (hard) | random (hard) | wall time | peak RAM |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    fmt = lambda r: f"{r['mean']:.1f} ± {r['std']:.1f}"  # noqa: E731
    for res in results:
        r, model = res["results"], res["model"]
        hard = r["label_modes"].get("hard", {})
        gain = r["distilled"][model]["mean"] - r["random_subset"][model]["mean"]
        rows.append(" | ".join([
            f"| {res['row']}", res["dataset"], str(res["ipc"]), model, fmt(r["teacher"]), fmt(r["distilled"][model]),
            fmt(r["random_subset"][model]), f"{gain:+.1f}",
            fmt(hard["distilled"][model]) if hard else "–", fmt(hard["random_subset"][model]) if hard else "–",
            f"{res['compute']['wall_time_s'] / 60:.1f} min", f"{res['compute']['peak_memory_mb'] / 1024:.1f} GB |"]))
    return "\n".join(rows)


def write_readme(results: list[dict]) -> None:
    hardware = sorted({r["compute"].get("hardware", "?") for r in results})
    settings = "\n".join(f"- `{r['row']}`: " + ", ".join(f"{k}={v}" for k, v in r["config"].items() if k != "output_dir")
                         for r in results)
    text = f"""# Benchmarks (CPU-sized)

Produced by `python benchmarks/run.py` (then `python benchmarks/run.py --table`); raw numbers in `results/`.
Top-1 % on the full test split, mean ± std over {results[0]['protocol']['num_eval_runs']} fresh initialisations.
"distilled" and "random subset" use APM's protocol (L1 to the logits of teacher 0); "(hard)" trains on class ids.
The random subset is `ipc` random real train images per class (the distilled set's initialisation),
trained with the same protocol and budget. Nothing is selected on the test split.

Hardware: {'; '.join(hardware)}.

{table(results)}

These are CPU-sized runs, far shorter than the paper's (2500 iterations, 250 student epochs,
1000 evaluation epochs, ConvNet width 128): compare rows with each other, not with the paper.

Settings per row (everything not listed is the default of `DistillationArguments`):
{settings}
"""
    (HERE / "README.md").write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="*", help="config names (default: all)")
    parser.add_argument("--table", action="store_true", help="only rebuild README.md from results/")
    args = parser.parse_args()
    if not args.table:
        for name in args.rows or sorted(p.stem for p in (HERE / "configs").glob("*.yaml")):
            run_row(name)
    results = [json.loads(p.read_text()) for p in sorted((HERE / "results").glob("*.json"))]
    write_readme(results)
    print(table(results))


if __name__ == "__main__":
    main()
