"""Choose a benchmark row's free settings on a validation split carved out of train; never on test.

    python benchmarks/tune.py fashion_mnist_ipc1        # every candidate of that row in tuning.yaml

`tuning.yaml` gives, per row, the validation split (`train_split` / `test_split`, both slices of the
train split), a separate `teachers` (teachers trained on the reduced train split only) and `grids`: a
list of grids of candidate values, one per round of the search, so the file keeps every candidate tried.
Each candidate runs `examples/distill.py` with the row's config plus those overrides and
is scored by distilled minus random-subset accuracy on the validation slice. Every candidate's scores go to
`results/tuning/<row>.json`; the best one is printed, and copying it into `configs/<row>.yaml` is a
visible, reviewed edit. `fixed` overrides apply to every candidate (e.g. only the headline label mode).
A grid may name its own `teachers` pool, e.g. for candidates with another `model_kwargs`.
A candidate whose output folder already holds results for the same config and flags is reused; one that
finished with other settings (the row's config was edited since) stops the search rather than being replaced:
a round names every setting it relies on that a later config edit could change. A `seed` in a grid draws
other initial images; candidates that differ only in seed are summarised by their mean gain, and
the best setting is chosen among those run on the most seeds.
"""

import argparse
import itertools
import json
import re
from pathlib import Path

import yaml

from hf_distill.records import Summary
from run import run_once

HERE = Path(__file__).resolve().parent


def candidates(grids: list[dict[str, list]]) -> list[dict]:
    """Every combination of each grid's values, grid by grid, in a fixed order."""
    return [dict(zip(sorted(grid), values)) for grid in grids
            for values in itertools.product(*(grid[n] for n in sorted(grid)))]


def slug(value: object) -> str:
    """A setting's value as part of a folder name: a path by its last part, JSON without its punctuation."""
    text = str(value)
    return re.sub(r"[^A-Za-z0-9._-]", "", Path(text).name if "/" in text else text)


def run_candidate(row: str, spec: dict, overrides: dict) -> dict:
    tag = "_".join(f"{k}{slug(v)}" for k, v in overrides.items())
    output_dir = Path("outputs") / "tune" / row / tag
    flags = {"train_split": spec["train_split"], "test_split": spec["test_split"], "teachers": spec["teachers"],
             "output_dir": str(output_dir), **spec.get("fixed", {}), **overrides}
    config = yaml.safe_load((HERE / "configs" / f"{row}.yaml").read_text())
    result = run_once(config, flags, replace_stale=False)
    model = result["model"]
    distilled, random = result["results"]["distilled"][model], result["results"]["random_subset"][model]
    return {"overrides": overrides, "distilled": distilled, "random_subset": random,
            "gain": distilled["mean"] - random["mean"], "wall_time_s": result["compute"]["wall_time_s"]}


def by_setting(scored: list[dict], default_seed: int) -> list[dict]:
    """Candidates that differ only in `seed`, grouped: mean and std over their seeds of the gain, and of the
    distilled and random-subset accuracies (`runs` holds each seed's mean over its evaluation runs)."""
    groups: dict[str, dict] = {}
    for c in scored:
        setting = {k: v for k, v in c["overrides"].items() if k != "seed"}
        group = groups.setdefault(json.dumps(setting, sort_keys=True), {"setting": setting, "gains": {}, "runs": {}})
        seed = c["overrides"].get("seed", default_seed)
        group["gains"][seed] = c["gain"]
        group["runs"][seed] = c
    for group in groups.values():
        gain, runs = Summary.of(list(group["gains"].values())).to_dict(), group.pop("runs").values()
        group["mean_gain"], group["std_gain"] = gain["mean"], gain["std"]
        for name in ("distilled", "random_subset"):
            group[name] = Summary.of([c[name]["mean"] for c in runs]).to_dict()
    return list(groups.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row", help="a config name with an entry in tuning.yaml")
    row = parser.parse_args().row
    spec = yaml.safe_load((HERE / "tuning.yaml").read_text())[row]
    default_seed = yaml.safe_load((HERE / "configs" / f"{row}.yaml").read_text()).get("seed", 0)
    out = HERE / "results" / "tuning" / f"{row}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    scored = []
    for overrides in candidates(spec["grids"]):
        scored.append(run_candidate(row, spec, overrides))
        settings = by_setting(scored, default_seed)
        out.write_text(json.dumps({"row": row, "selection": spec, "candidates": scored, "settings": settings},
                                  indent=2) + "\n")
    most_seeds = max(len(g["gains"]) for g in settings)
    best = max((g for g in settings if len(g["gains"]) == most_seeds), key=lambda g: g["mean_gain"])
    for g in settings:
        per_seed = ", ".join(f"seed {seed}: {gain:+.1f}" for seed, gain in sorted(g["gains"].items()))
        print(f"{g['setting']}: gain {g['mean_gain']:+.1f} +- {g['std_gain']:.1f} ({per_seed}); distilled "
              f"{g['distilled']['mean']:.1f} +- {g['distilled']['std']:.1f}, random subset "
              f"{g['random_subset']['mean']:.1f} +- {g['random_subset']['std']:.1f}")
    print(f"best on validation (mean over {most_seeds} seed(s)): {best['setting']}")


if __name__ == "__main__":
    main()
