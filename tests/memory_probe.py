"""Peak anonymous memory (RssAnon) of a whole tiny run on a generated dataset: decode, preprocessing fit, teacher,
real initialisation, APM, random subset and test scoring. Prints the peak in kB as JSON.

    python tests/memory_probe.py DATASET_ROOT CACHE_DIR OUTPUT_DIR
"""

import json
import sys
import threading
import time

from hf_distill import DistillationArguments, DistillationTrainer

peak = 0


def rss_anon_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("RssAnon:"))


def sample_forever() -> None:
    global peak
    while True:
        peak = max(peak, rss_anon_kb())
        time.sleep(0.002)


threading.Thread(target=sample_forever, daemon=True).start()
dataset, cache_dir, output_dir = sys.argv[1:4]
args = DistillationArguments(dataset=dataset, cache_dir=cache_dir, output_dir=output_dir, preprocessing_num_workers=1,
                             model_kwargs='{"net_width": 8}', num_teachers=1, teacher_epochs=1, ipc=2, iterations=2,
                             student_epochs=1, num_checkpoints=1, eval_epochs=1, num_eval_runs=1,
                             eval_label_modes=["logits_l1"], batch_size=256)
trainer = DistillationTrainer(args)
trainer.train()
trainer.evaluate()
time.sleep(0.05)
print(json.dumps({"peak_rss_anon_kb": max(peak, rss_anon_kb()), "train_images": len(trainer.data.train_labels)}))
