"""Choose a benchmark row's free settings on a validation split carved out of train; never on test.

    python benchmarks/tune.py fashion_mnist_ipc1        # every candidate of that row in tuning.yaml

`tuning.yaml` gives, per row, the validation split (`train_split` / `test_split`, both slices of the
train split), a separate `teachers` (teachers trained on the reduced train split only) and a `grid` of
candidate values. Each candidate runs `examples/distill.py` with the row's config plus those overrides and
is scored by distilled minus random-subset accuracy on the validation slice. Every candidate's scores go to
`results/tuning/<row>.json`; the best one is printed, and copying it into `configs/<row>.yaml` is a
visible, reviewed edit. `fixed` overrides apply to every candidate (e.g. only the headline label mode).
A candidate whose output folder already holds results for the same flags is reused.
"""

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def candidates(grid: dict[str, list]) -> list[dict]:
    """Every combination of the grid's values, in a fixed order."""
    names = sorted(grid)
    return [dict(zip(names, values)) for values in itertools.product(*(grid[n] for n in names))]


def run_candidate(row: str, spec: dict, overrides: dict) -> dict:
    tag = "_".join(f"{k}{v}" for k, v in overrides.items())
    output_dir = Path("outputs") / "tune" / row / tag
    flags = {"train_split": spec["train_split"], "test_split": spec["test_split"], "teachers": spec["teachers"],
             "output_dir": str(output_dir), **spec.get("fixed", {}), **overrides}
    results_file = ROOT / output_dir / "eval_results.json"
    if not (results_file.exists() and _same_args(json.loads(results_file.read_text())["args"], flags)):
        command = [sys.executable, str(ROOT / "examples" / "distill.py"), "--config", str(HERE / "configs" / f"{row}.yaml")]
        command += [arg for name, value in flags.items() for arg in (f"--{name}", str(value))]
        subprocess.run(command, cwd=ROOT, check=True)
    result = json.loads(results_file.read_text())
    model = result["model"]
    distilled, random = result["results"]["distilled"][model], result["results"]["random_subset"][model]
    return {"overrides": overrides, "distilled": distilled, "random_subset": random,
            "gain": distilled["mean"] - random["mean"], "wall_time_s": result["compute"]["wall_time_s"]}


def _same_args(args: dict, flags: dict) -> bool:
    """Whether a finished candidate ran with these flags (then it is reused, not re-run)."""
    as_list = lambda v: v if isinstance(v, list) else [v]  # noqa: E731
    return all([str(x) for x in as_list(args[k])] == [str(x) for x in as_list(v)] for k, v in flags.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row", help="a config name with an entry in tuning.yaml")
    row = parser.parse_args().row
    spec = yaml.safe_load((HERE / "tuning.yaml").read_text())[row]
    out = HERE / "results" / "tuning" / f"{row}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    scored = []
    for overrides in candidates(spec["grid"]):
        scored.append(run_candidate(row, spec, overrides))
        out.write_text(json.dumps({"row": row, "selection": spec, "candidates": scored}, indent=2) + "\n")
    best = max(scored, key=lambda c: c["gain"])
    for c in scored:
        print(f"{c['overrides']}: distilled {c['distilled']['mean']:.1f} random {c['random_subset']['mean']:.1f} "
              f"gain {c['gain']:+.1f}")
    print(f"best on validation: {best['overrides']}")


if __name__ == "__main__":
    main()
