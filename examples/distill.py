"""Distil an image-classification dataset with APM: teachers -> distillation -> evaluation -> outputs.

The same script runs on CPU, one GPU, several GPUs or machines:

    python examples/distill.py                                   # built-in offline `digits`, a few minutes on CPU
    python examples/distill.py --dataset ../shared/data/fashion_mnist --ipc 10 --iterations 300
    python examples/distill.py --config run.yaml --seed 1        # YAML file, flags override it
    accelerate launch examples/distill.py --dataset uoft-cs/cifar10 --zca --ipc 50
    accelerate launch --multi_gpu --num_processes 8 examples/distill.py --dataset uoft-cs/cifar10 --zca
    ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 examples/distill.py   # 2 CPU processes
    python examples/distill.py --resume_from_checkpoint last     # continue an interrupted run from its newest checkpoint
    python examples/distill.py --push_to_hub --hub_dataset_id org/digits-apm-ipc10   # share distilled/ on the Hub
    python examples/distill.py --push_to_hub --hub_dataset_id org/digits-apm-ipc10 --hub_teachers_id org/digits-teachers

Outputs in --output_dir: teachers/, checkpoint-<iteration>/, distilled/, distilled_grid.png, eval_results.json.
"""

import logging

from hf_distill import DistillationArguments, DistillationTrainer, HubError
from hf_distill.cli import parse_args


def main(args: DistillationArguments) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    trainer = DistillationTrainer(args)
    trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    trainer.save_distilled()
    if args.do_eval:
        results = trainer.evaluate()
        trainer.save_eval_results(results)
        trainer.accelerator.print(trainer.results_table(results))
    trainer.accelerator.print(f"Outputs written to {args.output_dir}")
    if args.push_to_hub:
        try:
            trainer.accelerator.print(f"Pushed to {trainer.push_to_hub()}")
            if args.hub_teachers_id:
                trainer.accelerator.print(f"Pushed teachers to {trainer.push_teachers_to_hub()}")
        except HubError as error:
            raise SystemExit(str(error)) from None
    trainer.accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
