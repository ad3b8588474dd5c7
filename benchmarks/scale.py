"""ImageNet-shaped scale benchmark: decode, reload, memory, teacher epoch and APM iteration cost as the train split grows.

    python benchmarks/scale.py                            # N = 50,000 and 200,000 -> benchmarks/results/scale.json
    python benchmarks/scale.py --rows 50000 --work /tmp/scale
    python benchmarks/scale.py --table                    # print the Markdown table of results/scale.json
    python benchmarks/scale.py --e2e                      # a whole CPU-sized run at 1000 classes, then check the export

For each N it generates an ImageNet-shaped parquet dataset (`hf_distill.fake_data`: 1000 classes, 64x64 RGB PNG,
N train rows and 10,000 test rows, seed 0) under --work and measures, one phase at a time, each in a fresh process
(so every peak is that phase's own):
- prepare: `datasets`' own first parquet -> Arrow conversion (a `load_dataset` call; not hf-distill code);
- decode-1 / decode-2: the first decode of both splits into the store with 1 and 2 worker processes;
- reload: `load_image_dataset` when the stores exist (memory-mapped, nothing decoded);
- fit: the mean/std fit over the whole train split, read batch by batch from the store;
- teacher: one teacher epoch of convnet4 (SGD, DSA) over 10,000 images of the store;
- apm-S: one APM iteration at the paper's ImageNet-1K setting (convnet4, IPC 10 so 10,000 synthetic images initialised
  from real ones, batch_syn 500, K 5) with segment_size S in 100, 250, 500. Reduced: student_epochs 5 (paper 250) and
  a randomly initialised teacher (training one on N images would take hours on a CPU; the cost per iteration does
  not depend on the teacher's weights).
`--e2e` runs `examples/distill.py` on the N = 50,000 set with every setting in `E2E` (IPC 1, reduced budgets) and
checks what it exported: 1000 rows, 1000-wide soft labels, the 1000 class names, readable by `load_dataset`; it writes
benchmarks/results/scale_e2e.json.

Peak RSS is the process's `VmHWM` (`hf_distill.host.peak_rss_mb`; it includes the store's file-backed pages it
touched); peak RssAnon is sampled from /proc/self/status every 2 ms by `hf_distill.host.PeakSampler` (anonymous memory
only: what the process itself allocated).
"""

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT = HERE / "results" / "scale.json"
TEST_ROWS = 10_000
SEGMENTS = (100, 250, 500)
APM = dict(ipc=10, batch_syn=500, student_epochs=5, num_checkpoints=5, refresh_every=3, lr_img=20.0, lr_net=0.1,
           ce_weight=0.1, model="convnet4")
E2E = dict(ipc=1, train_split="train[:20000]", model_kwargs='{"net_width": 32}', num_teachers=1, teacher_epochs=1,
           iterations=6, student_epochs=5, num_checkpoints=5, batch_syn=500, segment_size=250, lr_img=20.0, lr_net=0.1,
           eval_epochs=3, num_eval_runs=2, save_steps=3)
PHASES = ("prepare", "decode-1", "decode-2", "reload", "fit", "teacher", *(f"apm-{s}" for s in SEGMENTS))


# ------------------------------------------------------------------------------------------- one phase, in its process
def run_phase(phase: str, data: Path, cache: Path, scratch: Path) -> dict:
    """Run one phase in this process and return its measurements."""
    from hf_distill.host import PeakSampler, peak_rss_mb, status_kb
    memory = PeakSampler(lambda: status_kb("RssAnon"))
    import datasets
    import torch

    from hf_distill import DistillationArguments, DistillationTrainer, create_model
    from hf_distill.data import load_image_dataset
    from hf_distill.preprocessing import Preprocessing
    from hf_distill.teachers import TEACHER_LR
    from hf_distill.training import FitConfig, fit, freeze

    out: dict = {"phase": phase}
    start = time.perf_counter()
    if phase == "prepare":
        for split in ("train", "test"):
            datasets.load_dataset(str(data), split=split, cache_dir=str(cache))
    elif phase.startswith("decode") or phase == "reload":
        workers = int(phase.split("-")[1]) if phase.startswith("decode") else 1
        loaded = load_image_dataset(str(data), num_workers=workers, cache_dir=str(cache))
        out["images"] = len(loaded.train_labels) + len(loaded.test_labels)
        out["images_per_s"] = out["images"] / (time.perf_counter() - start)
        out["store_gb"] = (loaded.train_images.numel() + loaded.test_images.numel()) / 1e9
    else:
        loaded = load_image_dataset(str(data), cache_dir=str(cache))
        start = time.perf_counter()
        if phase == "fit":
            Preprocessing.fit(loaded.train_images)
        elif phase == "teacher":
            preprocessing = Preprocessing.fit(loaded.train_images[:10_000])
            torch.manual_seed(0)
            model = create_model("convnet4", loaded.num_classes, 3, 64)
            start = time.perf_counter()
            fit(model, loaded.train_images[:10_000], loaded.train_labels[:10_000],
                FitConfig(epochs=1, lr=TEACHER_LR, loss="ce"), torch.Generator().manual_seed(0), transform=preprocessing)
        else:
            args = DistillationArguments(dataset=str(data), cache_dir=str(cache), output_dir=str(scratch), iterations=1,
                                         segment_size=int(phase.split("-")[1]), save_steps=1000, save_total_limit=1,
                                         do_eval=False, overwrite_output_dir=True, **APM)
            trainer = DistillationTrainer(args, data=loaded)
            trainer.preprocessing = Preprocessing.fit(loaded.train_images[:10_000])
            torch.manual_seed(0)
            trainer.teachers = [freeze(create_model("convnet4", loaded.num_classes, 3, 64))]
            _record_peak_after(trainer, "_train_students", memory, out, "before_refresh_peak_rss_anon_mb")
            _record_peak_after(trainer, "_image_step", memory, out, "refresh_peak_rss_anon_mb", "image_step_peak_rss_anon_mb")
            trainer.train()
            (timing,) = trainer.iteration_times
            out.update(refresh_s=timing.refresh_s, image_step_s=timing.image_step_s,
                       iteration_s=timing.refresh_s + timing.image_step_s)
            shutil.rmtree(scratch, ignore_errors=True)
    out["seconds"] = time.perf_counter() - start
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_rss_anon_mb"] = memory.peak_mb
    out["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return out


def _record_peak_after(trainer, method: str, memory, out: dict, *names: str) -> None:
    """Wrap `trainer.<method>` so that the RssAnon peak of the window before it is stored under names[0] and, with a
    second name, the peak of its own call under names[1] (the benchmark's view into one iteration's phases)."""
    real = getattr(trainer, method)

    def wrapped(*args, **kwargs):
        out[names[0]] = memory.take()
        result = real(*args, **kwargs)
        if len(names) > 1:
            out[names[1]] = memory.take()
        return result
    setattr(trainer, method, wrapped)


# ----------------------------------------------------------------------------------------------------- orchestration
def measure(rows: int, work: Path) -> dict:
    from hf_distill.fake_data import make_image_dataset

    data = work / f"imagenet64-{rows}"
    start = time.perf_counter()
    if not (data / "done").exists():
        shutil.rmtree(data, ignore_errors=True)
        make_image_dataset(data, rows, TEST_ROWS, num_classes=1000, side=64, num_proc=os.cpu_count() or 1)
        (data / "done").touch()
    generated = time.perf_counter() - start
    parquet_gb = sum(f.stat().st_size for f in (data / "data").iterdir()) / 1e9
    cache = work / f"cache-{rows}"
    shutil.rmtree(cache, ignore_errors=True)
    phases = {}
    for phase in PHASES:
        if phase.startswith("decode"):
            shutil.rmtree(cache / "hf_distill_images", ignore_errors=True)  # both decodes start from no store
        command = [sys.executable, __file__, "--phase", phase, "--data", str(data), "--cache", str(cache),
                   "--scratch", str(work / "scratch")]
        proc = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "HF_DATASETS_CACHE": str(cache)})
        if proc.returncode == 0:
            phases[phase] = json.loads(proc.stdout.strip().splitlines()[-1])
        else:  # e.g. killed for memory (-9): recorded, and the other phases still run
            phases[phase] = {"phase": phase, "failed": proc.returncode, "stderr": proc.stderr[-500:]}
        print(f"N={rows:,} {phase}: {json.dumps(phases[phase])}", flush=True)
    store_gb = phases["reload"]["store_gb"]
    shutil.rmtree(cache, ignore_errors=True)
    return {"train_rows": rows, "test_rows": TEST_ROWS, "generate_s": generated, "parquet_gb": parquet_gb,
            "store_gb": store_gb, "phases": phases}


def table(result: dict) -> str:
    """Markdown rows of the measured figures, one column per N."""
    runs = result["runs"]
    head = "| | " + " | ".join(f"N = {r['train_rows']:,}" for r in runs) + " |\n|---|" + "---|" * len(runs)

    def row(name, value):
        return f"| {name} | " + " | ".join(value(r) for r in runs) + " |"

    def p(r, phase):
        return r["phases"][phase]
    lines = [head,
             row("parquet on disk / decoded store", lambda r: f"{r['parquet_gb']:.2f} GB / {r['store_gb']:.2f} GB"),
             row("`datasets` parquet -> Arrow (first load_dataset)",
                 lambda r: f"{p(r, 'prepare')['seconds']:.0f} s, RssAnon {p(r, 'prepare')['peak_rss_anon_mb']:.0f} MB"),
             *[row(f"first decode, {w} worker(s)", lambda r, w=w: f"{p(r, f'decode-{w}')['images_per_s']:,.0f} img/s "
                   f"({p(r, f'decode-{w}')['seconds']:.0f} s), RssAnon {p(r, f'decode-{w}')['peak_rss_anon_mb']:.0f} MB")
               for w in (1, 2)],
             row("cached reload (memory-mapped)", lambda r: f"{p(r, 'reload')['seconds']:.1f} s, RssAnon "
                 f"{p(r, 'reload')['peak_rss_anon_mb']:.0f} MB, RSS {p(r, 'reload')['peak_rss_mb']:.0f} MB"),
             row("mean/std fit over the train split", lambda r: f"{p(r, 'fit')['seconds']:.1f} s, RssAnon "
                 f"{p(r, 'fit')['peak_rss_anon_mb']:.0f} MB, RSS {p(r, 'fit')['peak_rss_mb']:.0f} MB"),
             row("teacher epoch per 10,000 images (convnet4)", lambda r: f"{p(r, 'teacher')['seconds']:.0f} s, RssAnon "
                 f"{p(r, 'teacher')['peak_rss_anon_mb']:.0f} MB")]
    def apm(r, s):
        m = p(r, f"apm-{s}")
        if "failed" in m:
            return f"did not finish (exit {m['failed']}{', killed: out of memory' if m['failed'] == -9 else ''})"
        return (f"{m['iteration_s']:.0f} s ({m['refresh_s']:.0f} + {m['image_step_s']:.0f}); RssAnon peak "
                f"{m['refresh_peak_rss_anon_mb'] / 1024:.1f} GB refresh, {m['image_step_peak_rss_anon_mb'] / 1024:.1f} GB "
                f"image step")
    for s in SEGMENTS:
        lines.append(row(f"APM iteration, segment {s} (refresh + image step)", lambda r, s=s: apm(r, s)))
    return "\n".join(lines)


def end_to_end(work: Path) -> dict:
    """`examples/distill.py` at 1000 classes with the `E2E` settings, timed; then the exported set is checked."""
    import datasets

    from hf_distill.fake_data import make_image_dataset

    data = work / "imagenet64-50000"
    if not (data / "done").exists():
        make_image_dataset(data, 50_000, TEST_ROWS, num_classes=1000, side=64, num_proc=os.cpu_count() or 1)
        (data / "done").touch()
    out = work / "e2e"
    flags = [arg for k, v in {**E2E, "dataset": data, "output_dir": out, "cache_dir": work / "cache-e2e"}.items()
             for arg in (f"--{k}", str(v))]
    start = time.perf_counter()
    subprocess.run([sys.executable, str(HERE.parent / "examples" / "distill.py"), *flags, "--overwrite_output_dir"],
                   check=True)
    wall = time.perf_counter() - start
    exported = datasets.load_dataset(str(out / "distilled"), split="train", cache_dir=str(work / "cache-e2e-check"))
    checks = {"rows": len(exported), "soft_label_width": len(exported[0]["soft_label"]),
              "class_names": len(exported.features["label"].names),
              "parquet_files": sorted(f.name for f in (out / "distilled" / "data").iterdir())}
    assert checks["rows"] == checks["soft_label_width"] == checks["class_names"] == 1000, checks
    results = json.loads((out / "eval_results.json").read_text())
    return {"settings": E2E, "wall_time_s": wall, "export": checks, "results": results["results"],
            "compute": results["compute"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="+", default=[50_000, 200_000], help="train rows N to measure")
    parser.add_argument("--work", type=Path, default=Path("outputs/scale"), help="folder for generated data and stores")
    parser.add_argument("--table", action="store_true", help="print the table of results/scale.json and stop")
    parser.add_argument("--e2e", action="store_true", help="run the 1000-class end-to-end check and stop")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--cache", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args.phase, args.data, args.cache, args.scratch)))
        return
    if args.e2e:
        result = end_to_end(args.work)
        (HERE / "results" / "scale_e2e.json").write_text(json.dumps(result, indent=2))
        print(json.dumps({k: result[k] for k in ("wall_time_s", "export")}, indent=2))
        return
    if args.table:
        print(table(json.loads(RESULT.read_text())))
        return
    import torch

    from hf_distill.host import hardware_description

    result = {"hardware": hardware_description(), "torch": torch.__version__, "python": platform.python_version(),
              "apm_setting": {**APM, "segment_size": list(SEGMENTS), "teacher": "random init (reduced)"}, "runs": []}
    for rows in args.rows:
        result["runs"].append(measure(rows, args.work))
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        RESULT.write_text(json.dumps(result, indent=2))  # after each N, so a later failure keeps what was measured
    print(table(result))


if __name__ == "__main__":
    main()
