"""Teacher pools as timm-compatible Hub model repos: export, push, and resolve `--teachers` to a local folder.

An exported pool keeps teacher 0 (the one whose logits are a distilled set's soft labels) at its root, so that
`timm.create_model("hf-hub:org/name", pretrained=True)` loads it, and the other teachers in `teacher-NNN/`. Every
`config.json` holds timm's keys (`architecture`, `num_classes`, `num_features`, `model_args`, `pretrained_cfg`)
next to hf_distill's (classes, channels, resolution, preprocessing, training).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch.nn as nn
from timm.models._hub import save_config_for_hf

from .cards import teacher_card
from .files import atomic_directory, save_tensors
from .hub import HUB_PREFIX, download_repo, push_folder
from .preprocessing import Preprocessing
from .teachers import PREPROCESSING_FILE, load_preprocessing, load_teacher, save_preprocessing, teacher_dir


def pool_size(root: str | os.PathLike) -> int:
    """How many teachers (0, 1, ... without gaps) the pool folder `root` holds."""
    count = 0
    while (teacher_dir(root, count) / "config.json").exists():
        count += 1
    return count


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
    count, preprocessing = pool_size(pool), load_preprocessing(pool)
    if count == 0 or preprocessing is None:
        raise ValueError(f"No teacher pool in {pool} (it needs {PREPROCESSING_FILE} and teacher-000/); pass the "
                         f"teachers/ folder of a run, or train the teachers first.")
    configs = []
    with atomic_directory(out) as tmp:
        for index in range(count):
            model, config = load_teacher(teacher_dir(pool, index))
            _save_timm_teacher(model, config, preprocessing, tmp if index == 0 else teacher_dir(tmp, index))
            configs.append(config)
        save_preprocessing(preprocessing, tmp)
        teacher_card(configs, preprocessing, repo_id).save(tmp / "README.md")
    return Path(out)


def _save_timm_teacher(model: nn.Module, config: dict, preprocessing: Preprocessing, folder: Path) -> None:
    """`model.safetensors` plus a `config.json` that timm's `create_model("hf-hub:..." / "local-dir:...")` reads."""
    folder.mkdir(parents=True, exist_ok=True)
    save_tensors(model.state_dict(), folder / "model.safetensors")
    save_config_for_hf(model, str(folder / "config.json"), model_config={"label_names": config["class_names"]})
    timm_config = json.loads((folder / "config.json").read_text())
    # timm fills mean/std and input_size from the architecture's 3-channel defaults; these are the real ones.
    timm_config["pretrained_cfg"].update(input_size=[config["in_chans"], config["resolution"], config["resolution"]],
                                         mean=preprocessing.mean.tolist(), std=preprocessing.std.tolist())
    (folder / "config.json").write_text(json.dumps({**timm_config, **config}, indent=2))


def push_teachers(pool: str | os.PathLike, repo_id: str, private: bool = False, token: str | None = None,
                  export_dir: str | os.PathLike | None = None) -> str:
    """Export the teacher pool `pool` (to `export_dir`, default `<pool>-hub`) and push it as a model repo.

    Returns the repo URL. Raises `hf_distill.hub.HubError` with one sentence when there is no token or no network;
    the pool and the export are kept.
    """
    export_dir = export_dir or Path(pool).with_name(f"{Path(pool).name}-hub")
    folder = export_teachers(pool, export_dir, repo_id)
    return push_folder(folder, repo_id, "model", private, token, commit_message="Upload teacher pool with hf-distill")


def resolve_teacher_pool(source: str, num_teachers: int) -> Path:
    """The local folder of the `--teachers` pool.

    A local folder is returned as is (missing teachers are trained into it). `hf-hub:org/name[@revision]` is
    downloaded to the Hugging Face cache (safetensors, JSON and cards only) and must already hold `num_teachers`
    teachers and their preprocessing, so nothing is ever written there.
    """
    if not source.startswith(HUB_PREFIX):
        return Path(source)
    repo_id, _, revision = source.removeprefix(HUB_PREFIX).partition("@")
    root = download_repo(repo_id, "model", revision or None)
    if not (root / PREPROCESSING_FILE).exists():
        raise ValueError(f"The teacher pool {source} has no {PREPROCESSING_FILE}; push pools with "
                         f"hf_distill.push_teachers, which writes it.")
    found = pool_size(root)
    if found < num_teachers:
        raise ValueError(f"The teacher pool {source} holds {found} teachers but --num_teachers is {num_teachers}; "
                         f"lower --num_teachers, or pass a local --teachers folder where the missing ones are trained.")
    return root
