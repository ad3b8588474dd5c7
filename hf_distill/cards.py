"""Repo cards rendered from the Jinja templates in `model_cards/`: the distilled set's and the teacher pool's."""

from __future__ import annotations

import json
from pathlib import Path

from huggingface_hub import DatasetCard, DatasetCardData, ModelCard, ModelCardData

import datasets
from datasets.info import DatasetInfo, DatasetInfosDict
from datasets.splits import SplitDict, SplitInfo
from datasets.utils.metadata import MetadataConfigs

from .distilled import DistilledSet
from .hub import UNKNOWN_LICENSE
from .models import SMALL_INPUT_MODELS
from .preprocessing import Preprocessing
from .records import Compute, EvalResults, PoolSummary, Summary
from .teachers import TeacherConfig

TEMPLATES = Path(__file__).parent / "model_cards"
DATASET_TEMPLATE = TEMPLATES / "distilled_dataset.md"
TEACHER_TEMPLATE = TEMPLATES / "teacher_pool.md"
CITATION = """@article{chen2023apm,
  title   = {Dataset Distillation via Adversarial Prediction Matching},
  author  = {Chen, Mingyang and Huang, Bo and Lu, Junda and Li, Bing and Wang, Yi and Cheng, Minhao and Wang, Wei},
  journal = {arXiv preprint arXiv:2312.08912},
  year    = {2023}
}"""
SET_NAMES = {"distilled": "distilled, exact floats (`distilled.safetensors`)",
             "distilled_8bit": "distilled, 8-bit `image` column",
             "random_subset": "random real subset, same IPC (paired)",
             "random_draws": "random real subset, same IPC (new draw per run)"}
PROTOCOL_NAMES = {"apm": "soft: teacher logits, L1", "kd": "soft: teacher logits, KL", "hard": "hard: class ids, CE"}


def dataset_card(distilled: DistilledSet, dataset: datasets.Dataset, download_size: int,
                 eval_results: EvalResults | None = None, repo_id: str | None = None) -> DatasetCard:
    """The distilled set's dataset card: YAML `dataset_info`/`configs` for `load_dataset`, and the full description.

    Args:
        distilled (`DistilledSet`): the set; its `metadata` (written by `DistillationTrainer.train`) fills the card.
        dataset (`datasets.Dataset`): `distilled.to_dataset()`, for the features and sizes.
        download_size (`int`): bytes of the parquet files.
        eval_results (`EvalResults`, *optional*): `DistillationTrainer.evaluate()` output; without it the card says
            the set is not evaluated yet.
        repo_id (`str`, *optional*): the Hub id in the usage snippet (default: `args.hub_dataset_id`, else a placeholder).
    """
    meta = distilled.metadata
    args, source = meta.args, meta.source
    repo_id = repo_id or args.get("hub_dataset_id") or f"your-username/{_name(source, distilled.ipc)}"
    license = source.get("license") or UNKNOWN_LICENSE
    card_data = DatasetCardData(
        license=license, pretty_name=f"{source.get('dataset', 'dataset')} distilled with APM, IPC {distilled.ipc}",
        task_categories=["image-classification"], tags=["dataset-distillation", "synthetic", "apm", "hf-distill"],
        size_categories=[_size_category(len(dataset))],
        source_datasets=[source["dataset"]] if source.get("url") else None,
        hf_distill={"method": meta.method, "paper": meta.paper, "extensions": _extensions(args, meta.model),
                    "ipc": distilled.ipc, "model": meta.model,
                    "preprocessing": distilled.preprocessing.describe(),
                    "soft_labels": meta.soft_labels,
                    "source": {k: source.get(k) for k in ("dataset", "config_name", "revision", "fingerprint")}},
    )
    splits = SplitDict()
    splits.add(SplitInfo("train", num_bytes=dataset.data.nbytes, num_examples=len(dataset)))
    info = DatasetInfo(features=dataset.features, splits=splits, download_size=download_size,
                       dataset_size=dataset.data.nbytes)
    DatasetInfosDict({"default": info}).to_dataset_card_data(card_data)
    MetadataConfigs({"default": {"data_files": [{"split": "train", "path": "data/train-*"}]}}).to_dataset_card_data(card_data)
    images = distilled.images
    return DatasetCard.from_template(
        card_data, template_path=str(DATASET_TEMPLATE), title=card_data.pretty_name, repo_id=repo_id,
        citation=CITATION, source=source, license_text=_license_text(license),
        ipc=distilled.ipc, num_images=len(images), num_classes=len(distilled.class_names),
        class_names=", ".join(distilled.class_names), channels=images.shape[1], resolution=images.shape[-1],
        preprocessing=_preprocessing_text(distilled.preprocessing), soft_labels=card_data.hf_distill["soft_labels"],
        iterations_done=meta.iterations_done,
        extensions="; ".join(EXTENSIONS[flag] for flag in _extensions(args, meta.model)),
        teachers=_teachers(meta.teachers, eval_results),
        arguments=[(k, json.dumps(v)) for k, v in args.items()],
        evaluation=_evaluation(eval_results), compute=_compute(meta.compute, eval_results),
        usage=_usage(repo_id, meta.model or "convnet3", args, distilled),
    )


def teacher_card(configs: list[TeacherConfig], preprocessing: Preprocessing, repo_id: str | None = None) -> ModelCard:
    """The model card of an exported teacher pool (teacher 0 at the root, the others in `teacher-NNN/`)."""
    first = configs[0]
    source = first.source
    license = source.get("license") or UNKNOWN_LICENSE
    repo_id = repo_id or f"your-username/{_name(source, None)}-teachers"
    card_data = ModelCardData(
        license=license, library_name="timm", pipeline_tag="image-classification",
        tags=["image-classification", "timm", "hf-distill", "dataset-distillation"],
        datasets=[source["dataset"]] if source.get("url") else None,
    )
    return ModelCard.from_template(
        card_data, template_path=str(TEACHER_TEMPLATE), repo_id=repo_id,
        architecture=first.architecture, model_kwargs=json.dumps(first.model_kwargs),
        count=len(configs), num_classes=first.num_classes, class_names=", ".join(first.class_names),
        channels=first.in_chans, resolution=first.resolution, source=source,
        license_text=_license_text(license), preprocessing=_preprocessing_text(preprocessing),
        training={"lr": first.lr, "batch_size": first.batch_size, "dsa_strategy": first.dsa_strategy},
        teachers=[(i, c.seed, c.epochs, f"{c.train_accuracy:.2f}") for i, c in enumerate(configs)],
    )


# What hf-distill adds to APM as published, by flag; a set made without any of them is the paper's method.
EXTENSIONS = {"image_dsa": "`--image_dsa`: the image update saw the images through one DSA draw per iteration",
              "student_models": "`--student_models`: students of several architectures, taken in turn",
              "standardize_logits": "`--standardize_logits`: the image loss compared z-scored logits",
              "real_scale_labels": "`--real_scale_labels`: soft labels rescaled to the teacher's logit scale on real "
                                   "images"}


def _extensions(args: dict, model: str | None) -> list[str]:
    """The `EXTENSIONS` flags that were on in the run that made the set (students of `model` alone are the paper's)."""
    return [flag for flag in EXTENSIONS if args.get(flag) and args.get(flag) != [model]]


def _name(source: dict, ipc: int | None) -> str:
    name = Path(str(source.get("dataset", "dataset")).rstrip("/")).name.lower()
    return f"{name}-apm-ipc{ipc}" if ipc is not None else name


def _size_category(n: int) -> str:
    for limit, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if n < limit:
            return label
    return "100K<n<1M"


def _license_text(license: str | list) -> str:
    text = ", ".join(license) if isinstance(license, list) else license
    if text == UNKNOWN_LICENSE:
        return "unknown — check the source dataset's license before you use or share this set"
    return f"`{text}`, inherited from the source dataset"


def _preprocessing_text(preprocessing: Preprocessing) -> str:
    """One Markdown paragraph saying exactly how pixels become model inputs."""
    if preprocessing.zca:
        return ("ZCA whitening of the flattened `x / 255` (x = uint8 pixels), fit on the source train split with "
                "eps 0.1 added to the eigenvalues: `(x / 255 - zca_mean) @ zca_matrix`. The matrices are the "
                "`preprocessing.zca_mean`, `preprocessing.zca_matrix` and `preprocessing.zca_inverse` tensors of "
                "`distilled.safetensors`.")
    mean = ", ".join(f"{v:.6f}" for v in preprocessing.mean.tolist())
    std = ", ".join(f"{v:.6f}" for v in preprocessing.std.tolist())
    return f"Per-channel normalisation `(x / 255 - mean) / std` (x = uint8 pixels) with mean = ({mean}) and std = ({std})."


def _score(entry: Summary) -> str:
    return f"{entry.mean:.2f} ± {entry.std:.2f}"


def _teachers(teachers: PoolSummary, eval_results: EvalResults | None) -> dict:
    test = eval_results.teacher if eval_results else None
    return {"architecture": teachers.architecture, "count": teachers.count or len(teachers.train_accuracy),
            "epochs": ", ".join(str(e) for e in sorted(set(teachers.epochs))) or "not recorded",
            "source": teachers.source,
            "train_accuracy": ", ".join(f"{a:.2f}" for a in teachers.train_accuracy) or "not recorded",
            "test_accuracy": f"{_score(test)} over {len(test.runs)} teachers" if test else "not evaluated yet"}


def _evaluation(eval_results: EvalResults | None) -> dict | None:
    """The results table (every protocol, set and model) and the settings, or None before evaluation."""
    if not eval_results:
        return None
    rows = []
    for protocol, sets in eval_results.scores.items():
        for set_name in SET_NAMES:
            for model, entry in sets.get(set_name, {}).items():
                rows.append({"set": SET_NAMES[set_name], "labels": PROTOCOL_NAMES.get(protocol, protocol),
                             "model": model, "score": _score(entry), "runs": len(entry.runs)})
    return {"rows": rows, "settings": eval_results.settings}


def _compute(compute: Compute | None, eval_results: EvalResults | None) -> list[tuple[str, str]]:
    rows = []
    if compute:
        rows += [("distillation wall time, teachers included", _duration(compute.wall_time_s)),
                 ("hardware", compute.hardware), ("processes", str(compute.num_processes)),
                 ("peak memory (main process, VmHWM)", f"{compute.peak_memory_mb:.0f} MB"), ("torch", compute.torch)]
    if eval_results and eval_results.compute:
        total = eval_results.compute
        rows += [("wall time with evaluation", _duration(total.wall_time_s)),
                 ("peak memory with evaluation", f"{total.peak_memory_mb:.0f} MB")]
    return rows


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.1f} min"


def _usage(repo_id: str, model: str, args: dict, distilled: DistilledSet) -> str:
    """A runnable snippet that trains a fresh model on the set loaded with `datasets.load_dataset`."""
    kwargs = dict(args.get("model_kwargs") or {})
    if model in SMALL_INPUT_MODELS:
        kwargs["img_size"] = distilled.images.shape[-1]
    model_args = "".join(f", {k}={v!r}" for k, v in kwargs.items())
    return f'''import timm
import torch
import torch.nn.functional as F
from datasets import load_dataset

import hf_distill  # registers hf-distill's small-input models with timm; reads the preprocessing

repo = "{repo_id}"
train = load_dataset(repo, split="train").with_format("torch")[:]
preprocessing = hf_distill.load_distilled(repo).preprocessing  # apply it to real test images (uint8 NCHW) too
images = preprocessing(train["image"])  # 8-bit pixels -> model inputs; exact floats: hf_distill.load_distilled(repo).images
targets = train["soft_label"]  # teacher logits, trained on with L1 as in the evaluation below

torch.manual_seed(0)
model = timm.create_model("{model}", num_classes={len(distilled.class_names)}, in_chans={distilled.images.shape[1]}{model_args})
optimizer = torch.optim.SGD(model.parameters(), lr={args.get("eval_lr") or args.get("lr_net", 0.01)}, momentum=0.9, weight_decay=5e-4)
EPOCHS = {args.get("eval_epochs", 300)}
for epoch in range(EPOCHS):
    for batch in torch.randperm(len(images)).split({args.get("batch_size", 256)}):
        loss = F.l1_loss(model(images[batch]), targets[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
print(f"final L1 loss {{loss.item():.4f}}")'''
