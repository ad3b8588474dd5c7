"""Distil an image-classification dataset with APM: teachers -> distillation -> evaluation -> outputs.

This script is `hf-distill distill` (see `hf_distill.cli.distill` for the pipeline), for `accelerate launch`.
The same command runs on CPU, one GPU, several GPUs or machines:

    python examples/distill.py                                   # built-in offline `digits`, a few minutes on CPU
    python examples/distill.py --dataset ../shared/data/fashion_mnist --ipc 10 --iterations 300
    python examples/distill.py --config run.yaml --seed 1        # YAML file, flags override it
    accelerate launch examples/distill.py --dataset uoft-cs/cifar10 --zca --ipc 50
    accelerate launch --multi_gpu --num_processes 8 examples/distill.py --dataset uoft-cs/cifar10 --zca
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/distill.py   # 2 CPU processes
    python examples/distill.py --resume_from_checkpoint last     # continue an interrupted run from its newest checkpoint
    python examples/distill.py --report_to tensorboard           # watch it: tensorboard --logdir outputs/digits-apm-ipc1/runs
    python examples/distill.py --push_to_hub --hub_dataset_id org/digits-apm-ipc1   # share distilled/ on the Hub

Outputs in --output_dir: teachers/, checkpoint-<iteration>/, distilled/, distilled_grid.png, eval_results.json, runs/.
Errors print one line `error: ...` (status 2 for bad input, 1 for a failure on the way); --debug shows the traceback.
"""

import sys

from hf_distill.cli import main

if __name__ == "__main__":
    sys.exit(main(["distill", *sys.argv[1:]]))
