"""Peak anonymous memory of a whole tiny run on a generated dataset, summed over its process tree (Pss_Anon, sampled
by `hf_distill.host.PeakSampler`): load (converting the parquet files on a first run), decode, preprocessing fit,
teacher, real initialisation, APM, random subset and test scoring. Prints the peak in kB as JSON.

    python tests/memory_probe.py DATASET_ROOT CACHE_DIR OUTPUT_DIR
"""

import json
import sys
import time

from hf_distill import DistillationArguments, DistillationTrainer
from hf_distill.host import PeakSampler

memory = PeakSampler(interval=0.005)
dataset, cache_dir, output_dir = sys.argv[1:4]
args = DistillationArguments(dataset=dataset, cache_dir=cache_dir, output_dir=output_dir, preprocessing_num_workers=1,
                             model_kwargs='{"net_width": 8}', num_teachers=1, teacher_epochs=1, ipc=2, iterations=2,
                             student_epochs=1, num_checkpoints=1, eval_epochs=1, num_eval_runs=1,
                             eval_protocols=["apm"], batch_size=256)
trainer = DistillationTrainer(args)
trainer.train()
trainer.evaluate()
time.sleep(0.05)
print(json.dumps({"peak_pss_anon_kb": round(memory.peak_mb * 1024), "train_images": len(trainer.data.train_labels)}))
