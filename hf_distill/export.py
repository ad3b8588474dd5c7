"""Writing what a run made for the Hub, and pushing it: the distilled set's dataset-repo folder (card, parquet, exact
floats) and the teacher pool as a timm model repo.

An exported pool keeps teacher 0 (the one whose logits are a distilled set's soft labels) at its root, so that
`timm.create_model("hf-hub:org/name", pretrained=True)` loads it, and the other teachers in `teacher-NNN/`. Every
`config.json` holds timm's keys (`architecture`, `num_classes`, `num_features`, `model_args`, `pretrained_cfg`)
next to hf_distill's (classes, channels, resolution, preprocessing, training).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch.nn as nn
from timm.models._hub import save_config_for_hf

import datasets

from .cards import dataset_card, teacher_card
from .distilled import DISTILLED_FILE, DistilledSet, grid_image, save_grid
from .files import atomic_directory, atomic_file, save_tensors, write_json
from .hub import push_folder, require_token
from .preprocessing import Preprocessing
from .records import EvalResults
from .teachers import PREPROCESSING_FILE, TeacherConfig, TeacherPool, load_teacher, save_preprocessing, teacher_dir

CARD_FILE = "README.md"
PARQUET_DIR = "data"
MAX_SHARD_BYTES = 500 * 2**20  # parquet files of at most ~500 MB, so large sets (ImageNet-1K IPC 50) upload cleanly


def save_distilled(distilled: DistilledSet, path: str | os.PathLike, eval_results: EvalResults | None = None,
                   repo_id: str | None = None) -> Path:
    """Write `path` atomically in the layout of a Hub dataset repo; return the folder.

    The folder holds `README.md` (dataset card with `dataset_info`/`configs`), `data/train-0000i-of-0000n.parquet`
    (`image`, `label`, `soft_label`; one file per ~500 MB) and `distilled.safetensors` (exact float images, labels,
    soft labels and the preprocessing). `datasets.load_dataset(path)` and `load_distilled(path)` both read it.

    Args:
        distilled (`DistilledSet`): the set to write.
        path (`str` or `os.PathLike`): the folder; it is replaced as a whole.
        eval_results (`dict`, *optional*): `DistillationTrainer.evaluate()` output, for the card's results table.
        repo_id (`str`, *optional*): the Hub id used in the card's usage snippet.
    """
    tensors = {"images": distilled.images, "labels": distilled.labels, "soft_labels": distilled.soft_labels,
               **distilled.preprocessing.state_dict()}
    metadata = {"class_names": json.dumps(distilled.class_names), "metadata": json.dumps(distilled.metadata.to_dict()),
                "format": "hf_distill.distilled/1"}
    dataset = distilled.to_dataset()
    with atomic_directory(path) as tmp:
        save_tensors(tensors, tmp / DISTILLED_FILE, metadata)
        write_parquet_shards(dataset, tmp / PARQUET_DIR)
        card = dataset_card(distilled, dataset, parquet_bytes(tmp), eval_results, repo_id)
        card.save(tmp / CARD_FILE)
    return Path(path)


def write_parquet_shards(dataset: datasets.Dataset, folder: Path, max_bytes: int | None = None) -> list[Path]:
    """Write `dataset` as `train-0000i-of-0000n.parquet` files in `folder`, each holding at most ~`max_bytes`
    (default `MAX_SHARD_BYTES`) of Arrow data (images are PNG bytes already, so parquet files are about that size)."""
    shards = max(1, math.ceil(dataset.data.nbytes / (max_bytes or MAX_SHARD_BYTES)))
    folder.mkdir(parents=True, exist_ok=True)
    files = [folder / f"train-{i:05d}-of-{shards:05d}.parquet" for i in range(shards)]
    for i, file in enumerate(files):
        dataset.shard(shards, i, contiguous=True).to_parquet(file)
    return files


def parquet_bytes(path: str | os.PathLike) -> int:
    """Total size of the parquet files of a saved set."""
    return sum(file.stat().st_size for file in (Path(path) / PARQUET_DIR).glob("*.parquet"))


def write_card(path: str | os.PathLike, distilled: DistilledSet, eval_results: EvalResults | None = None,
               repo_id: str | None = None) -> Path:
    """Re-render `path/README.md` of a saved set (e.g. once evaluation results exist), replacing it atomically."""
    path = Path(path)
    card = dataset_card(distilled, distilled.to_dataset(), parquet_bytes(path), eval_results, repo_id)
    with atomic_file(path / CARD_FILE) as tmp:
        card.save(tmp)
    return path / CARD_FILE


def push_distilled(path: str | os.PathLike, distilled: DistilledSet, repo_id: str, eval_results: EvalResults | None = None,
                   private: bool = False, token: str | None = None) -> str:
    """Render the card of the saved set at `path` for `repo_id` and push the folder as a dataset repo; return its URL.

    Raises `hf_distill.hub.HubError` with one sentence when there is no token or no network; every file is kept."""
    token = require_token(token, path)
    write_card(path, distilled, eval_results, repo_id)
    return push_folder(path, repo_id, "dataset", private, token, commit_message="Upload distilled set with hf-distill",
                       delete_patterns=[f"{PARQUET_DIR}/*.parquet"])


def export_teachers(pool: str | os.PathLike, out: str | os.PathLike, repo_id: str | None = None) -> Path:
    """Write the teacher pool `pool` (a run's `teachers/` folder) to `out` as a timm model repo with a model card.

    Args:
        pool (`str` or `os.PathLike`): folder with `preprocessing.safetensors` and `teacher-NNN/`.
        out (`str` or `os.PathLike`): the export folder; it is replaced as a whole, atomically.
        repo_id (`str`, *optional*): the Hub id used in the card's snippets.

    Example:
        ```python
        hf_distill.export_teachers("outputs/digits-apm-ipc1/teachers", "outputs/digits-teachers-hub")
        timm.create_model("local-dir:outputs/digits-teachers-hub", pretrained=True)   # teacher 0
        ```
    """
    source = TeacherPool(pool)
    count, preprocessing = len(source), source.preprocessing
    if count == 0 or preprocessing is None:
        raise ValueError(f"No teacher pool in {pool} (it needs {PREPROCESSING_FILE} and teacher-000/); pass the "
                         f"teachers/ folder of a run, or train the teachers first.")
    configs = []
    with atomic_directory(out) as tmp:
        for index in range(count):
            model, config = load_teacher(source.teacher_dir(index))
            _save_timm_teacher(model, config, preprocessing, tmp if index == 0 else teacher_dir(tmp, index))
            configs.append(config)
        save_preprocessing(preprocessing, tmp)
        teacher_card(configs, preprocessing, repo_id).save(tmp / "README.md")
    return Path(out)


def _save_timm_teacher(model: nn.Module, config: TeacherConfig, preprocessing: Preprocessing, folder: Path) -> None:
    """`model.safetensors` plus a `config.json` that timm's `create_model("hf-hub:..." / "local-dir:...")` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), folder / "model.safetensors")
    save_config_for_hf(model, str(folder / "config.json"), model_config={"label_names": config.class_names})
    timm_config = json.loads((folder / "config.json").read_text())
    # timm fills mean/std and input_size from the architecture's 3-channel defaults; these are the real ones.
    timm_config["pretrained_cfg"].update(input_size=[config.in_chans, config.resolution, config.resolution],
                                         mean=preprocessing.mean.tolist(), std=preprocessing.std.tolist())
    (folder / "config.json").write_text(json.dumps({**timm_config, **config.to_dict()}, indent=2))


def push_teachers(pool: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
                  export_dir: str | os.PathLike | None = None) -> str:
    """Export the teacher pool `pool` (to `export_dir`, default `<pool>-hub`) and push it as a model repo.

    Returns the repo URL. Raises `hf_distill.hub.HubError` with one sentence when there is no token or no network;
    the pool and the export are kept.
    """
    token = require_token(token, pool)
    export_dir = export_dir or Path(pool).with_name(f"{Path(pool).name}-hub")
    folder = export_teachers(pool, export_dir, repo_id)
    return push_folder(folder, repo_id, "model", private, token, commit_message="Upload teacher pool with hf-distill")


class RunOutputsMixin:
    """What a `DistillationTrainer` writes and pushes (as `transformers.utils.PushToHubMixin` does for models): the
    distilled folder, `eval_results.json` and the Hub repos. Uses the trainer's `args`, `distilled`, `eval_results`,
    `pool`, `accelerator`, `trackers`, `state`, `is_main_process` and `_distilled_path` (where the set was saved)."""

    def save_distilled(self, path: str | os.PathLike | None = None) -> Path | None:
        """Write the distilled set as a Hub dataset-repo folder (card, parquet, safetensors; see `save_distilled`) and
        `distilled_grid.png`; main process only. The card includes the evaluation results if `evaluate()` ran, and
        `save_eval_results` refreshes it when they come later."""
        if self.distilled is None:
            raise ValueError("Nothing to save: call train() first.")
        path = Path(path or Path(self.args.output_dir) / "distilled")
        if self.is_main_process:
            save_distilled(self.distilled, path, self.eval_results, self.args.hub_dataset_id)
            save_grid(self.distilled, path.parent / "distilled_grid.png")
        self.trackers.image("distilled", grid_image(self.distilled), self.state.global_step)
        self.accelerator.wait_for_everyone()
        self._distilled_path = path
        return path

    def save_eval_results(self, results: EvalResults, path: str | os.PathLike | None = None) -> Path:
        """Write `eval_results.json` atomically (main process only); the card of a distilled set saved by this trainer
        is re-rendered with the results."""
        path = Path(path or Path(self.args.output_dir) / "eval_results.json")
        if self.is_main_process:
            write_json(path, results.to_dict())
            if self._distilled_path is not None:
                write_card(self._distilled_path, self.distilled, results, self.args.hub_dataset_id)
        self.eval_results = results
        return path

    def push_to_hub(self, repo_id: str | None = None, private: bool | None = None, token: str | None = None) -> str | None:
        """Push the distilled/ folder (saved first if need be) as a Hub dataset repo (default `--hub_dataset_id`) and
        return its URL (main process; others get `None`). `private` defaults to `--hub_private`, `token` to the
        logged-in one or `HF_TOKEN`; raises `HubError` in one sentence, keeping every file."""
        repo_id = self._repo_id(repo_id or self.args.hub_dataset_id, "push_to_hub", "dataset", "--hub_dataset_id")
        path = self._distilled_path or self.save_distilled()
        if not self.is_main_process:
            return None
        return push_distilled(path, self.distilled, repo_id, self.eval_results, self._private(private), token)

    def push_teachers_to_hub(self, repo_id: str | None = None, private: bool | None = None,
                             token: str | None = None) -> str | None:
        """Push the teacher pool as a timm model repo (default `--hub_teachers_id`); as `push_to_hub`."""
        repo_id = self._repo_id(repo_id or self.args.hub_teachers_id, "push_teachers_to_hub", "model", "--hub_teachers_id")
        if not self.is_main_process:
            return None
        return push_teachers(self.pool.root, repo_id, self._private(private), token)

    @staticmethod
    def _repo_id(repo_id: str | None, method: str, kind: str, flag: str) -> str:
        if not repo_id:
            raise ValueError(f"{method} needs a {kind} repo id: pass repo_id or set {flag}.")
        return repo_id

    def _private(self, private: bool | None) -> bool:
        return self.args.hub_private if private is None else private
