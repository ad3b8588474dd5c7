#!/usr/bin/env bash
# CUDA checks of hf-distill, for a machine with an NVIDIA GPU; run from the repository root:
#
#     bash benchmarks/gpu_check.sh          # logs and JSON in benchmarks/results/gpu_check/, one summary at the end
#
# 1. the tests that exercise the CUDA paths (with a GPU present the trainer runs on it): RNG state restore,
#    exact resume, bf16 autocast, compiled training, the image gradient;
# 2. benchmarks/speed.py on CUDA (s/it, refresh, image step, teacher and evaluation epochs; time and peak CUDA
#    memory per segment size) in float32, in bf16 and with --torch_compile;
# 3. benchmarks/eval_cost.py --parts together: whether training evaluation runs together (vmap) beats one after
#    another on the GPU (it does not on 2 CPU cores).
# Without ../shared/data/cifar10_5k (a bare GPU machine) it first generates a CIFAR-shaped set of the same size.
set -uo pipefail
OUT=${GPU_CHECK_OUT:-benchmarks/results/gpu_check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'error: no CUDA device; run this on a GPU machine.')" || exit 2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$OUT/gpu.txt"

python -m pytest -q -p no:cacheprovider tests/test_cuda.py tests/test_accelerated_paths.py tests/test_apm.py \
    tests/test_resume.py > "$OUT/tests.log" 2>&1
tests_status=$?

DATASET=../shared/data/cifar10_5k
if [ ! -d "$DATASET" ]; then
    DATASET=outputs/gpu_check/cifar_shaped
    python -c "from hf_distill.fake_data import make_image_dataset as m; m('$DATASET', 5085, 1017, num_classes=10, side=32)"
fi
speed_status=0
for run in "no" "bf16" "compile"; do
    flags=(--mixed_precision "$run"); [ "$run" = compile ] && flags=(--torch_compile)
    python benchmarks/speed.py --device cuda --dataset "$DATASET" "${flags[@]}" --out "$OUT/speed_$run.json" \
        > "$OUT/speed_$run.log" 2>&1 || speed_status=1
done
python benchmarks/eval_cost.py --device cuda --parts together --out "$OUT/eval_cost.json" > "$OUT/eval_cost.log" 2>&1 \
    || speed_status=1

python - "$OUT" "$tests_status" <<'PY'
import json, sys
from pathlib import Path
out, tests_status = Path(sys.argv[1]), int(sys.argv[2])
print("GPU:", (out / "gpu.txt").read_text().strip())
print("tests:", (out / "tests.log").read_text().strip().splitlines()[-1], "" if tests_status == 0 else "(FAILED: see tests.log)")
for run in ("no", "bf16", "compile"):
    path = out / f"speed_{run}.json"
    if not path.exists():
        print(f"speed {run}: failed, see speed_{run}.log")
        continue
    r = json.loads(path.read_text())["this"][0]
    segments = ", ".join(f"{k}: {v['image_step_s'] * 1000:.0f} ms / {v['peak_mb']:.0f} MB" for k, v in r["segments"].items())
    print(f"speed {run}: {r['s_per_iteration']:.3f} s/it (refresh {r['refresh_s']:.2f} s, image step "
          f"{r['image_step_s'] * 1000:.0f} ms), peak CUDA {r.get('peak_cuda_mb', 0):.0f} MB; teacher epoch "
          f"{r['teacher_epoch_s']:.2f} s, eval epoch {r['eval_epoch_s'] * 1000:.0f} ms; segments {segments}")
path = out / "eval_cost.json"
together = json.loads(path.read_text())["together"] if path.exists() else {}
print("runs together:", ", ".join(f"{ipc} one after another / together {r['median_ratio']:.2f}x" for ipc, r in together.items())
      or "failed, see eval_cost.log")
PY
exit $(( tests_status != 0 || speed_status != 0 ))
