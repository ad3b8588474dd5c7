"""CPU-sized benchmarks on real data: distilled set vs random real subset under one protocol.

    python benchmarks/run.py                              # every config in benchmarks/configs
    python benchmarks/run.py fashion_mnist_ipc1           # one row
    python benchmarks/run.py --table                      # rebuild benchmarks/README.md from results/

Each row runs `examples/distill.py --config benchmarks/configs/<row>.yaml` in its own process (so peak
memory is per row) and writes `benchmarks/results/<row>.json`: eval_results.json plus `dataset`, `ipc`
and the config. Rows that share `teachers` reuse the same teachers. A config with `seeds: [...]` runs once
per seed (other initial images, students and evaluation inits) into `<output_dir>/seed<n>` and pools the runs
of all seeds. A run whose folder already finished with the same settings is reused; one that finished with
other settings (an edited config) is run again in place.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from hf_distill.evaluation import summarize

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


def run_distill(config: dict, flags: dict) -> None:
    """`examples/distill.py` with `config` (without the benchmark-only `seeds`) as `--config`, and `flags` on top."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as file:
        yaml.safe_dump({k: v for k, v in config.items() if k != "seeds"}, file)
        command = [sys.executable, str(ROOT / "examples" / "distill.py"), "--config", file.name]
        subprocess.run(command + [arg for k, v in flags.items() for arg in (f"--{k}", str(v))], cwd=ROOT, check=True)


def run_once(config: dict, flags: dict, replace_stale: bool = True) -> dict:
    """The eval_results of `config` with `flags` on top: reused if its output folder finished with these settings,
    else run. A folder that finished with other settings (an edited config) is run again in place, or, without
    `replace_stale`, raises so that a recorded result is never silently replaced."""
    done = ROOT / flags.get("output_dir", config["output_dir"]) / "eval_results.json"
    if done.exists() and ran_with(json.loads(done.read_text())["args"], {**config, **flags}):
        return json.loads(done.read_text())
    if done.exists() and not replace_stale:
        raise ValueError(f"{done.parent} finished with other settings than it is asked for now (was the config "
                         f"edited?); name the settings it ran with in its round of tuning.yaml, or delete the folder "
                         f"to run it again.")
    run_distill(config, {**flags, "overwrite_output_dir": True} if done.exists() else flags)
    return json.loads(done.read_text())


def run_row(name: str) -> dict:
    config = yaml.safe_load((HERE / "configs" / f"{name}.yaml").read_text())
    seeds = config.get("seeds")
    if not seeds:
        result = run_once(config, {})
    else:
        result = pool_seeds([run_once(config, {"seed": seed, "output_dir": str(Path(config["output_dir"]) / f"seed{seed}")})
                             for seed in seeds])
    result.update(row=name, config=config)
    (HERE / "results" / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def ran_with(args: dict, settings: dict) -> bool:
    """Whether a finished run's `args` hold every value of `settings` (a config and/or flags; `output_dir` and
    the benchmark-only `seeds` aside), so that its results can be reused instead of running it again."""
    value = lambda k, v: json.loads(v) if k == "model_kwargs" and isinstance(v, str) else v  # noqa: E731
    as_list = lambda v: [str(x) for x in (v if isinstance(v, list) else [v])]  # noqa: E731
    return all(as_list(args[k]) == as_list(value(k, v)) for k, v in settings.items() if k not in ("output_dir", "seeds"))


def pool_seeds(results: list[dict]) -> dict:
    """One result for runs with different seeds: every mean/std/runs entry pools the runs of all seeds, and
    `seed_means` keeps each seed's mean. Wall time and peak memory are the sum and the max over seeds."""
    def pool(parts: list):
        if isinstance(parts[0], dict) and "runs" in parts[0]:
            return {**summarize([x for p in parts for x in p["runs"]]), "seed_means": [p["mean"] for p in parts]}
        if isinstance(parts[0], dict):
            return {key: pool([p[key] for p in parts]) for key in parts[0]}
        return parts[0]
    first = results[0]
    compute = {**first["compute"], "wall_time_s": sum(r["compute"]["wall_time_s"] for r in results),
               "peak_memory_mb": max(r["compute"]["peak_memory_mb"] for r in results)}
    return {**first, "results": pool([r["results"] for r in results]), "compute": compute,
            "seeds": [r["args"]["seed"] for r in results], "args": [r["args"] for r in results]}


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
    searches = sorted(p.stem for p in (HERE / "results" / "tuning").glob("*.json"))
    tuned = (f"Settings of {', '.join(f'`{s}`' for s in searches)} were chosen with `benchmarks/tune.py` on a "
             "validation slice of the train split (every candidate tried is in `results/tuning/`); the other rows "
             "use settings fixed before they ran.") if searches else "Every row uses settings fixed before it ran."
    per_seed = "\n".join(
        f"- `{r['row']}`, per seed {r['seeds']}: distilled "
        + ", ".join(f"{m:.1f}" for m in r["results"]["distilled"][r["model"]]["seed_means"]) + "; random subset "
        + ", ".join(f"{m:.1f}" for m in r["results"]["random_subset"][r["model"]]["seed_means"])
        for r in results if "seeds" in r)
    text = f"""# Benchmarks (CPU-sized)

Produced by `python benchmarks/run.py` (then `python benchmarks/run.py --table`); raw numbers in `results/`.
Top-1 % on the full test split, mean ± std over {results[0]['protocol']['num_eval_runs']} fresh initialisations.
"distilled" and "random subset" use APM's protocol (L1 to the logits of teacher 0); "(hard)" trains on class ids.
The random subset is `ipc` random real train images per class (the distilled set's initialisation),
trained with the same protocol and budget. Nothing is selected on the test split.

Hardware: {'; '.join(hardware)}.

{table(results)}

A row with `seeds` pools the runs of every seed (each seed draws other initial images); its means per seed:
{per_seed or "- none"}

These are CPU-sized runs, far shorter than the paper's (2500 iterations, 250 student epochs,
1000 evaluation epochs, ConvNet width 128): compare rows with each other, not with the paper.

Settings per row (everything not listed is the default of `DistillationArguments`):
{settings}

{tuned}
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
    rows = sorted(p.stem for p in (HERE / "configs").glob("*.yaml"))  # results/ also holds other benchmarks' files
    results = [json.loads((HERE / "results" / f"{row}.json").read_text()) for row in rows
               if (HERE / "results" / f"{row}.json").exists()]
    write_readme(results)
    print(table(results))


if __name__ == "__main__":
    main()
