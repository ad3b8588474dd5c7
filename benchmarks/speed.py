"""Speed of hf-distill at the "APM-small" setting, and the same measurements on another git revision.

    python benchmarks/speed.py                       # this checkout -> benchmarks/results/speed.json
    python benchmarks/speed.py --compare main        # this checkout and `main` in alternation (A B A B),
                                                     # with the ratios main / this (> 1: this is faster)
    python benchmarks/speed.py --compare 00cd540 --torch_compile   # the committed speed.json: this checkout
                                                     # without and with --torch_compile, then 00cd540, per round
    python benchmarks/speed.py --device cuda --mixed_precision bf16 --out speed_cuda.json

Setting: ../shared/data/cifar10_5k, --zca, convnet3 (width 128, instance norm), IPC 10, student_epochs 50,
num_checkpoints 5, refresh_every 3, lr_img 1, lr_net 0.02, ce_weight 0.1, two quick teachers prepared once
(1 epoch each; their quality does not change the cost). Each part runs in its own process (so its peak memory
is its own), importing hf_distill from the checkout under test:

  apm       30 APM iterations: s/it, student refresh, image step (medians), peak RSS (and peak CUDA memory) of
            the run, and the RSS once data and teachers are loaded, before the loop
  teacher   a teacher epoch on the 5,085 train images (batch 256, ZCA applied per batch), median of 3
  eval      an evaluation model's epoch on 100 images (L1 to logits), median of 30
  segments  the image step on 100 images (teacher and K=5 students) at segment_size 10, 25, 50, 100, each in its
            own process: time (median of 3 after the first), and the first step's peak memory above what the process
            held before it (VmHWM reset through /proc/self/clear_refs; CUDA: peak allocated)
  conv      the convolutions of one student step alone (forward, input and weight gradients, batch 100): their
            FLOP/s on this machine, and 50 x their time, the floor under a student refresh of 50 one-batch epochs
            (this checkout only: `--parts conv apm` gives the refresh's share of it from one run)

Only ratios measured in one run mean anything: the machine is shared, and absolute times move with its load.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATASET = str((ROOT / ".." / "shared" / "data" / "cifar10_5k").resolve())
SETTING = dict(zca=True, model="convnet3", ipc=10, student_epochs=50, num_checkpoints=5,
               refresh_every=3, lr_img=1.0, lr_net=0.02, ce_weight=0.1, num_teachers=2, teacher_epochs=1, seed=0)
PARTS = ("apm", "teacher", "eval", "segments", "conv")
SEGMENT_SIZES = (10, 25, 50, 100)
COMPILED_PARTS = ("apm", "teacher", "eval")  # measured with --torch_compile beside the plain run, with --compare


# ------------------------------------------------------------------------------------- one part, one process
def _rss_mb(field: str) -> float:
    """VmRSS / VmHWM of this process in MB (not ru_maxrss: a spawned process inherits its parent's peak there)."""
    line = next(l for l in Path("/proc/self/status").read_text().splitlines() if l.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def _reset_peak(device: str) -> None:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    else:
        Path("/proc/self/clear_refs").write_text("5")


def _peak_above(device: str, before: float) -> float:
    import torch
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20 - before
    return _rss_mb("VmHWM") - before


def _held(device: str) -> float:
    import torch
    return torch.cuda.memory_allocated() / 2**20 if device == "cuda" else _rss_mb("VmRSS")


def _sync(device: str) -> float:
    import torch
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def _arguments(opts: argparse.Namespace, **extra):
    from hf_distill import DistillationArguments
    compile_flag = {"torch_compile": True} if opts.torch_compile else {}  # older revisions lack the flag
    return DistillationArguments(**SETTING, dataset=opts.dataset, teachers=opts.teachers,
                                 mixed_precision=opts.mixed_precision, **compile_flag, **extra)


def _trainer(opts: argparse.Namespace, **extra):
    from hf_distill import DistillationTrainer
    return DistillationTrainer(_arguments(opts, output_dir=tempfile.mkdtemp(prefix="speed-"), do_eval=False,
                                          **extra))


def _autocast(opts: argparse.Namespace):
    import contextlib
    import torch
    if opts.mixed_precision == "no":
        return contextlib.nullcontext
    return lambda: torch.autocast(opts.device, dtype=torch.bfloat16)


def _compile(opts: argparse.Namespace) -> dict:
    return {"compile": True} if opts.torch_compile else {}


def part_apm(opts: argparse.Namespace) -> dict:
    import torch
    trainer = _trainer(opts, iterations=opts.iterations, save_steps=10**6)
    trainer.prepare_teachers()
    loaded = _rss_mb("VmRSS")
    trainer.train()
    times = trainer.iteration_times
    refreshes = [t.refresh_s for t in times if (t.step - 1) % SETTING["refresh_every"] == 0]
    result = {"s_per_iteration": statistics.mean(t.refresh_s + t.image_step_s for t in times),
              "refresh_s": statistics.median(refreshes), "image_step_s": statistics.median(t.image_step_s for t in times),
              "peak_rss_mb": _rss_mb("VmHWM"), "rss_before_loop_mb": loaded}
    if opts.device == "cuda":
        result["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def _epoch_times(device: str, fit_call) -> list[float]:
    """Seconds of each epoch of `fit_call(on_epoch_end)`."""
    stamps = [time.perf_counter()]
    fit_call(lambda epoch: stamps.append(_sync(device)))
    return [b - a for a, b in zip(stamps, stamps[1:])]


def part_teacher(opts: argparse.Namespace) -> dict:
    import torch
    from hf_distill.models import create_model
    from hf_distill.training import FitConfig, fit
    trainer = _trainer(opts)
    trainer.prepare_teachers()
    data = trainer.data
    torch.manual_seed(0)
    model = create_model("convnet3", data.num_classes, data.channels, data.resolution).to(opts.device)
    config = FitConfig(epochs=3, lr=0.01, loss="ce", **_compile(opts))
    epochs = _epoch_times(opts.device, lambda hook: fit(model, data.train_images, data.train_labels, config,
                                           torch.Generator().manual_seed(0), transform=trainer.preprocessing,
                                           autocast=_autocast(opts), on_epoch_end=hook))
    return {"teacher_epoch_s": statistics.median(epochs)}


def part_eval(opts: argparse.Namespace) -> dict:
    import torch
    from hf_distill.models import create_model
    from hf_distill.training import FitConfig, fit, predict
    trainer = _trainer(opts)
    teachers = trainer.prepare_teachers()
    data = trainer.data
    images = trainer.preprocessing(data.train_images[:100]).to(opts.device)
    targets = predict(teachers[0], images).to(opts.device)
    torch.manual_seed(0)
    model = create_model("convnet3", data.num_classes, data.channels, data.resolution).to(opts.device)
    config = FitConfig(epochs=30, lr=0.02, loss="l1", **_compile(opts))
    epochs = _epoch_times(opts.device, lambda hook: fit(model, images, targets, config, torch.Generator().manual_seed(0),
                                           autocast=_autocast(opts), on_epoch_end=hook))
    return {"eval_epoch_s": statistics.median(epochs)}


def part_conv(opts: argparse.Namespace) -> dict:
    """The student step's convolutions alone (forward, input and weight gradients), at its batch of 100 images."""
    import torch
    from hf_distill.allocator import keep_freed_memory  # a property of the machine: measured at its best
    keep_freed_memory()
    torch.manual_seed(0)
    shapes = [(3, 32), (128, 16), (128, 8)]  # convnet3 at width 128: (input channels, side) of each conv
    layers = [torch.nn.Conv2d(c, 128, 3, padding=1).to(opts.device) for c, _ in shapes]
    inputs = [torch.randn(100, c, side, side, device=opts.device, requires_grad=i > 0)
              for i, (c, side) in enumerate(shapes)]
    grads = [torch.randn(100, 128, side, side, device=opts.device) for _, side in shapes]
    flops = sum(2 * 100 * side * side * 128 * c * 9 * (3 if i > 0 else 2) for i, (c, side) in enumerate(shapes))

    def step():
        for layer, x, grad in zip(layers, inputs, grads):
            layer(x).backward(grad)

    step()
    times = []
    for _ in range(10):
        start = _sync(opts.device)
        step()
        times.append(_sync(opts.device) - start)
    seconds = statistics.median(times)
    return {"conv_gflop_per_s": flops / seconds / 1e9,
            "refresh_conv_floor_s": seconds * SETTING["student_epochs"]}


def part_segments(opts: argparse.Namespace) -> dict:
    import torch
    from hf_distill.apm import accumulate_image_gradient
    from hf_distill.models import create_model
    from hf_distill.training import freeze
    trainer = _trainer(opts)
    teacher = trainer.prepare_teachers()[0]
    data = trainer.data
    images = trainer.preprocessing(data.train_images[:100]).to(opts.device).requires_grad_(True)
    labels = data.train_labels[:100].to(opts.device)
    torch.manual_seed(0)
    students = [freeze(create_model("convnet3", data.num_classes, data.channels, data.resolution).to(opts.device))
                for _ in range(SETTING["num_checkpoints"])]
    if opts.torch_compile:
        from hf_distill.training import compile_model
        teacher, students = compile_model(teacher), [compile_model(s) for s in students]
    batch = torch.arange(100, device=opts.device)
    step = lambda: accumulate_image_gradient(images, batch, labels, teacher, students, SETTING["ce_weight"],
                                             opts.segment_size, autocast=_autocast(opts))
    before = _held(opts.device)  # nothing large was allocated yet: the first step's peak is its own
    _reset_peak(opts.device)
    step()
    peak = _peak_above(opts.device, before)
    times = []
    for _ in range(3):
        images.grad = None
        start = _sync(opts.device)
        step()
        times.append(_sync(opts.device) - start)
    return {"segments": {str(opts.segment_size): {"image_step_s": statistics.median(times), "peak_mb": peak}}}


def run_part(opts: argparse.Namespace) -> None:
    sys.path.insert(0, opts.code)
    import hf_distill
    import torch
    if not Path(hf_distill.__file__).resolve().is_relative_to(Path(opts.code).resolve()):
        raise SystemExit(f"error: imported hf_distill from {hf_distill.__file__}, not from {opts.code}")
    result = globals()[f"part_{opts.part}"](opts)
    Path(opts.json).write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------ driver
def prepare_teachers(opts: argparse.Namespace) -> None:
    """Train the two quick teachers once with this checkout (every revision loads the same pool)."""
    sys.path.insert(0, str(ROOT))
    from hf_distill import DistillationTrainer
    if not (Path(opts.teachers) / "teacher-001" / "config.json").exists():
        DistillationTrainer(_arguments(opts, output_dir=tempfile.mkdtemp(prefix="speed-"),
                                       do_eval=False)).prepare_teachers()


def measure(code: str, opts: argparse.Namespace, compiled: bool = False, parts: tuple[str, ...] = PARTS) -> dict:
    """The parts of `opts.parts` (among `parts`), each in a fresh process importing hf_distill from `code`;
    `compiled`: with --torch_compile."""
    result = {}
    runs = [(part, size) for part in opts.parts if part in parts
            for size in (SEGMENT_SIZES if part == "segments" else (0,))]
    for part, size in runs:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            command = [sys.executable, __file__, "--part", part, "--code", code, "--json", out.name,
                       "--segment_size", str(size), "--teachers", opts.teachers, "--dataset", opts.dataset,
                       "--device", opts.device, "--mixed_precision", opts.mixed_precision,
                       "--iterations", str(opts.iterations)] + (["--torch_compile"] if compiled else [])
            env = {**os.environ, "PYTHONPATH": code, "TQDM_DISABLE": "1"}
            done = subprocess.run(command, env=env, cwd=code, stderr=subprocess.PIPE, text=True)
            if done.returncode:
                raise SystemExit(f"{part} failed on {code}:\n{done.stderr[-3000:]}")
            measured = json.loads(Path(out.name).read_text())
        print(f"  {part}{f' {size}' if size else ''}: {json.dumps(measured)}", flush=True)
        if part == "segments":
            measured = {"segments": {**result.get("segments", {}), **measured["segments"]}}
        result.update(measured)
    return result


def checkout(revision: str) -> str:
    """The files of git `revision` in a temporary folder."""
    sha = subprocess.run(["git", "rev-parse", revision], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()
    folder = tempfile.mkdtemp(prefix=f"hf-distill-{sha[:8]}-")
    archive = subprocess.run(["git", "archive", sha], cwd=ROOT, check=True, capture_output=True).stdout
    with tempfile.TemporaryFile() as file:
        file.write(archive)
        file.seek(0)
        tarfile.open(fileobj=file).extractall(folder, filter="data")
    return folder


def flatten(result: dict) -> dict[str, float]:
    flat = {k: v for k, v in result.items() if not isinstance(v, dict)}
    for size, values in result.get("segments", {}).items():
        flat.update({f"segment_{size}_{k}": v for k, v in values.items()})
    return flat


def ratios(this: list[dict], other: list[dict]) -> dict[str, float]:
    """Median over rounds of other / this, per measurement (> 1: this checkout is faster or smaller)."""
    a, b = [flatten(r) for r in this], [flatten(r) for r in other]
    return {k: statistics.median(y[k] / x[k] for x, y in zip(a, b)) for k in a[0] if k in b[0] and a[0][k] > 0}


def environment(opts: argparse.Namespace) -> dict:
    import torch
    from hf_distill.host import hardware_description
    return {"hardware": hardware_description(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": torch.get_num_threads(), "device": opts.device, "mixed_precision": opts.mixed_precision,
            "torch_compile (this checkout)": opts.torch_compile,
            "setting": {**SETTING, "dataset": Path(opts.dataset).name, "iterations": opts.iterations}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compare", metavar="REV", help="also measure git revision REV, alternating with this checkout")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of A B with --compare (default 2)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--mixed_precision", default="no", choices=["no", "bf16"])
    parser.add_argument("--torch_compile", action="store_true",
                        help="measure this checkout with --torch_compile; with --compare, also without it (the other "
                             "revision as it is)")
    parser.add_argument("--dataset", default=DATASET, help="default: ../shared/data/cifar10_5k")
    parser.add_argument("--teachers", default=None, help="the quick teachers' pool (default: outputs/speed/<dataset>)")
    parser.add_argument("--out", default=str(HERE / "results" / "speed.json"))
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    parser.add_argument("--segment_size", type=int, help=argparse.SUPPRESS)
    opts = parser.parse_args()
    opts.teachers = opts.teachers or str(ROOT / "outputs" / "speed" / Path(opts.dataset).name)
    if opts.part:
        return run_part(opts)
    prepare_teachers(opts)
    other = checkout(opts.compare) if opts.compare else None
    both = bool(other and opts.torch_compile)  # this checkout without and with --torch_compile, then REV
    report = {**environment(opts), "this": [], "this_compiled": [], "other": [], "compare": opts.compare}
    for round_ in range(opts.rounds if other else 1):
        print(f"round {round_ + 1}: this checkout{'' if both or not opts.torch_compile else ' (--torch_compile)'}",
              flush=True)
        report["this"].append(measure(str(ROOT), opts, opts.torch_compile and not both))
        if both:
            print(f"round {round_ + 1}: this checkout (--torch_compile)", flush=True)
            report["this_compiled"].append(measure(str(ROOT), opts, True, COMPILED_PARTS))
        if other:
            print(f"round {round_ + 1}: {opts.compare}", flush=True)
            report["other"].append(measure(other, opts, parts=tuple(p for p in PARTS if p != "conv")))
    for name, this in (("ratios", report["this"]), ("ratios_compiled", report["this_compiled"])):
        if other and this:
            report[name] = ratios(this, report["other"])
            print(f"\n{opts.compare} / this checkout{' with --torch_compile' if name.endswith('compiled') else ''} "
                  f"(> 1: this checkout is faster or smaller), median of {opts.rounds} rounds:")
            for key, value in report[name].items():
                print(f"  {key:32s} {value:6.2f}x")
    Path(opts.out).parent.mkdir(parents=True, exist_ok=True)
    Path(opts.out).write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {opts.out}")


if __name__ == "__main__":
    main()
