"""Bad input fails before any long work with one error that names the problem and the fix, and leaves no output."""

import json
import math
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from huggingface_hub.errors import HTTPError
from PIL import Image

import datasets
import hf_distill.hub
import hf_distill.trainer as trainer_module
from hf_distill import DistillationArguments, DistillationTrainer, HubError, load_distilled, load_image_dataset
from hf_distill.checkpoints import list_checkpoints
from hf_distill.teachers import load_preprocessing, load_teacher

TINY = dict(ipc=1, iterations=4, num_teachers=1, teacher_epochs=1, student_epochs=2, num_checkpoints=2, save_steps=2,
            do_eval=False, model_kwargs='{"net_width": 16}')


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


@pytest.fixture(scope="module")
def teachers(tmp_path_factory, digits) -> Path:
    root = tmp_path_factory.mktemp("shared")
    DistillationTrainer(_args(root / "run", root / "teachers"), data=digits).prepare_teachers()
    return root / "teachers"


def _args(output_dir, teachers=None, **overrides) -> DistillationArguments:
    pool = {"teachers": str(teachers)} if teachers else {}
    return DistillationArguments(output_dir=str(output_dir), **pool, **{**TINY, **overrides})


def _parquet(path: Path, columns: dict, features: dict) -> str:
    datasets.Dataset.from_dict(columns, features=datasets.Features(features)).to_parquet(str(path))
    return str(path)


def _images(n: int) -> list:
    return [Image.fromarray(np.full((4, 4), 20 * i, dtype=np.uint8)) for i in range(n)]


# ---------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("path", ["{tmp}/nowhere", "./nowhere", "~/nowhere/at/all", "no/such/folder"])
def test_a_missing_local_path_is_reported_as_such(tmp_path, path):
    path = path.format(tmp=tmp_path)
    with pytest.raises(ValueError, match=rf"--dataset '{re.escape(path)}': no such file or folder. Check the path"):
        load_image_dataset(path)


def test_unknown_hub_id_says_not_found(monkeypatch):
    def not_found(*args, **kwargs):
        raise datasets.exceptions.DatasetNotFoundError("Dataset 'nobody/nothing' doesn't exist on the Hub.")
    monkeypatch.setattr(datasets, "get_dataset_split_names", not_found)
    with pytest.raises(ValueError, match=r"'nobody/nothing' not found.*hf auth login.*local folder"):
        load_image_dataset("nobody/nothing")


def test_unreachable_hub_suggests_a_local_folder(monkeypatch):
    import huggingface_hub.constants
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConnectionError, match=r"Hub could not be reached.*pass its local folder as --dataset"):
        load_image_dataset("nobody/nothing")


def test_no_image_column_lists_the_columns_and_names_the_flag(tmp_path):
    path = _parquet(tmp_path / "d.parquet", {"caption": ["a", "b"], "label": [0, 1]},
                    {"caption": datasets.Value("string"), "label": datasets.Value("int64")})
    with pytest.raises(ValueError, match=r"No image column.*\['caption', 'label'\]; pass --image_column"):
        load_image_dataset(path, test_split="train")


def test_no_label_column_lists_the_columns_and_names_the_flag(tmp_path):
    path = _parquet(tmp_path / "d.parquet", {"image": _images(2), "score": [0.5, 0.7]},
                    {"image": datasets.Image(), "score": datasets.Value("float32")})
    with pytest.raises(ValueError, match=r"No label column.*\['image', 'score'\]; pass --label_column"):
        load_image_dataset(path, test_split="train")


@pytest.mark.parametrize("labels,feature", [(["cat", "dog"], datasets.Value("string")),
                                            ([0.0, 1.5], datasets.Value("float32"))])
def test_non_integer_labels_are_refused(tmp_path, labels, feature):
    path = _parquet(tmp_path / "d.parquet", {"image": _images(2), "label": labels},
                    {"image": datasets.Image(), "label": feature})
    with pytest.raises(ValueError, match=r"not integer class ids.*class_encode_column"):
        load_image_dataset(path, test_split="train")


def test_missing_split_lists_the_splits(tmp_path):
    path = _parquet(tmp_path / "d.parquet", {"image": _images(2), "label": [0, 1]},
                    {"image": datasets.Image(), "label": datasets.ClassLabel(names=["a", "b"])})
    with pytest.raises(ValueError, match=r"Split 'test' not found.*\['train'\]. Pass --test_split"):
        load_image_dataset(path, test_split="test")
    with pytest.raises(ValueError, match=r"No --test_split given and no default split found.*\['train'\]"):
        load_image_dataset(path)
    with pytest.raises(ValueError, match=r"Split 'validation' not found in 'digits'.*\['train', 'test'\].*--test_split"):
        load_image_dataset("digits", test_split="validation")


# ------------------------------------------------------------------------------- arguments and models
@pytest.mark.parametrize("overrides,message", [  # message, or (message of the class, message of the command line)
    (dict(ipc=0), r"--ipc must be positive, got 0\."),
    (dict(batch_syn=4, segment_size=8), r"--segment_size \(8\) cannot exceed --batch_syn \(4\)"),
    (dict(student_epochs=3, num_checkpoints=5), r"--num_checkpoints \(5\) cannot exceed --student_epochs \(3\)"),
    (dict(lr_img=0.0), r"--lr_img must be positive, got 0\.0"),
    (dict(lr_net=math.nan), "--lr_net must be positive, got nan"),
    (dict(iterations=-1), "--iterations must be positive, got -1"),
    (dict(save_steps=0), "--save_steps must be positive, got 0"),
    (dict(save_total_limit=0), "--save_total_limit must be positive, got 0"),
    (dict(ce_weight=-0.1), r"--ce_weight must be zero or positive, got -0\.1"),
    (dict(mixed_precision="fp32"), (r"--mixed_precision 'fp32' is not valid; choose from \['no', 'bf16', 'fp16'\]",
                                    r"argument --mixed_precision.*invalid choice: 'fp32'")),
    (dict(mixed_precision="fp16"), "fp16 is not supported.*loss scaling.*--mixed_precision bf16"),
    (dict(eval_protocols=["soft"]), (r"--eval_protocols \['soft'\] is not valid; choose from",
                                     r"argument --eval_protocols.*invalid choice: 'soft'")),
    (dict(eval_lr=0.0), r"--eval_lr must be positive, got 0\.0"),
    (dict(eval_dsa_strategy="crop_blur"), r"Invalid DSA strategy 'crop_blur': unknown ops \['blur'\]"),
    (dict(overwrite_output_dir=True, resume_from_checkpoint="last"), "--overwrite_output_dir deletes.*pass only one of them"),
    (dict(push_to_hub=True), "--push_to_hub needs --hub_dataset_id"),
    (dict(hub_teachers_id="org/teachers"), "--hub_teachers_id is only used with --push_to_hub"),
    (dict(push_to_hub=True, hub_dataset_id="org/set", hub_teachers_id="org/teachers", teachers="hf-hub:org/pool"),
     r"the teachers already come from the Hub \(hf-hub:org/pool\); drop --hub_teachers_id"),
])
def test_bad_arguments_are_refused_by_the_class_and_by_the_command_line(tmp_path, capsys, overrides, message):
    """Every argument check, once: `DistillationArguments` raises ValueError, `parse_args` (what `hf-distill distill`
    and examples/distill.py run) exits with status 2 and one `error:` line; neither creates the output folder."""
    from hf_distill.cli import parse_args
    class_message, cli_message = message if isinstance(message, tuple) else (message, message)
    with pytest.raises(ValueError, match=class_message):
        _args(tmp_path / "run", **overrides)
    flags = [f"--{key}={value}" for key, value in {**TINY, **overrides}.items() if not isinstance(value, list)]
    flags += [word for key, value in overrides.items() if isinstance(value, list) for word in (f"--{key}", *value)]
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--output_dir", str(tmp_path / "run"), *flags])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert exit_info.value.code == 2 and len(errors) == 1 and re.search(cli_message, errors[0]), errors
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("overrides,message", [
    (dict(batch_syn=11), r"--batch_syn \(11\) exceeds the 10 synthetic images"),
    (dict(segment_size=11), r"--segment_size \(11\) exceeds the 10 images"),
    (dict(ipc=1000), r"Class \d has \d+ training images, fewer than ipc=1000.*Lower --ipc"),
    (dict(model="convnet33"), r"Unknown model 'convnet33'.*Did you mean: convnet3"),
    (dict(eval_models=["resnet18_smal"]), r"Unknown model 'resnet18_smal'.*resnet18_small"),
    (dict(student_models=["convnet3", "vgg11_smal"]), r"Unknown model 'vgg11_smal'.*vgg11_small"),
])
def test_inconsistent_settings_fail_before_any_output(tmp_path, digits, overrides, message):
    with pytest.raises(ValueError, match=message):
        DistillationTrainer(_args(tmp_path / "run", **overrides), data=digits)
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------------------ teachers
@pytest.mark.parametrize("change", [{"resolution": 16}, {"in_chans": 3}, {"class_names": list("abcdefghij")}])
def test_teachers_that_do_not_fit_the_data_fail_before_training(tmp_path, digits, teachers, change):
    pool = tmp_path / "teachers"
    shutil.copytree(teachers, pool)
    config = pool / "teacher-000" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), **change}))
    with pytest.raises(ValueError, match=r"teacher-000 was trained for classes/channels/resolution.*another --teachers"):
        DistillationTrainer(_args(tmp_path / "run", pool, num_teachers=2), data=digits)
    assert not (tmp_path / "run").exists() and not (pool / "teacher-001").exists()


@pytest.mark.parametrize("file", ["model.safetensors", "config.json"])
def test_truncated_teacher_names_the_folder_to_delete(tmp_path, digits, teachers, file):
    pool = tmp_path / "teachers"
    shutil.copytree(teachers, pool)
    path = pool / "teacher-000" / file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    fix = r"is missing, truncated or corrupt.*Delete the folder .*teacher-000 and rerun"
    with pytest.raises(ValueError, match=fix):
        DistillationTrainer(_args(tmp_path / "run", pool), data=digits)
    with pytest.raises(ValueError, match=fix):
        load_teacher(pool / "teacher-000")
    assert not (tmp_path / "run").exists()


# ------------------------------------------------------------------------------ output_dir, checkpoints
def test_output_dir_of_another_configuration_is_refused(tmp_path, digits, teachers):
    out = tmp_path / "run"
    DistillationTrainer(_args(out, teachers), data=digits).train()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2", "checkpoint-4"]
    with pytest.raises(ValueError, match=r"holds a run with other arguments \(--lr_img 0.33 -> 1.0\).*--overwrite_output_dir"
                                         r".*--resume_from_checkpoint"):
        DistillationTrainer(_args(out, teachers, lr_img=1.0), data=digits)
    # logging, checkpointing and evaluation settings may change, e.g. to resume with --do_eval
    DistillationTrainer(_args(out, teachers, logging_steps=1, save_steps=3, do_eval=True, eval_epochs=1), data=digits)
    DistillationTrainer(_args(out, teachers, lr_img=1.0, overwrite_output_dir=True), data=digits)
    assert list_checkpoints(out) == [] and json.loads((out / "run_args.json").read_text())["lr_img"] == 1.0
    assert (teachers / "teacher-000").exists()  # a separate --teachers pool is never deleted


def test_corrupt_checkpoint_names_the_file_and_the_fix(tmp_path, digits, teachers):
    out = tmp_path / "run"
    reference = DistillationTrainer(_args(out, teachers), data=digits).train()
    state = out / "checkpoint-4" / "state.safetensors"
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"checkpoint-4/state.safetensors is missing, truncated or corrupt.*"
                                         r"Delete .*checkpoint-4 to resume from the checkpoint before it"):
        DistillationTrainer(_args(out, teachers), data=digits).train(resume_from_checkpoint=True)
    shutil.rmtree(out / "checkpoint-4")  # the fix the error gives
    resumed = DistillationTrainer(_args(out, teachers), data=digits).train(resume_from_checkpoint=True)
    assert torch.equal(resumed.images, reference.images)
    (out / "checkpoint-4" / "state.json").write_text("{")
    with pytest.raises(ValueError, match=r"checkpoint-4/state.json is missing, truncated or corrupt"):
        DistillationTrainer(_args(out, teachers), data=digits).train(resume_from_checkpoint=str(out / "checkpoint-4"))
    with pytest.raises(ValueError, match=r"No checkpoint folder at .*checkpoint-7; pass a checkpoint-<step> folder"):
        DistillationTrainer(_args(out, teachers), data=digits).train(resume_from_checkpoint=str(out / "checkpoint-7"))
    with pytest.raises(ValueError, match=r"checkpoint-2 was written by a run with other arguments \(--seed 0 -> 1\)"):
        DistillationTrainer(_args(tmp_path / "other", teachers, seed=1), data=digits).train(
            resume_from_checkpoint=str(out / "checkpoint-2"))


@pytest.mark.parametrize("spoil,problem", [("loss", "The APM loss is nan"),
                                           ("gradient", "The synthetic images became infinite or NaN")])
def test_non_finite_values_stop_the_run_and_keep_the_last_good_checkpoint(tmp_path, digits, teachers, monkeypatch,
                                                                          spoil, problem):
    real, calls = trainer_module.accumulate_image_gradient, []

    def spoiled_at_iteration_3(images, *args, **kwargs):
        loss = real(images, *args, **kwargs)
        calls.append(loss)
        if len(calls) == 3 and spoil == "gradient":
            images.grad.fill_(math.inf)
        return math.nan if len(calls) == 3 and spoil == "loss" else loss
    monkeypatch.setattr(trainer_module, "accumulate_image_gradient", spoiled_at_iteration_3)
    out = tmp_path / "run"
    trainer = DistillationTrainer(_args(out, teachers), data=digits)
    with pytest.raises(FloatingPointError, match=rf"{problem} at iteration 3 of 4.*checkpoint-2 holds the last good "
                                                 rf"images.*Lower --lr_img"):
        trainer.train()
    assert [p.name for p in list_checkpoints(out)] == ["checkpoint-2"] and trainer.distilled is None


# ---------------------------------------------------------------------------------------------- safety
class Exploit:
    """Unpickling this creates the folder `marker`: what a pickle-based weights file can do to whoever loads it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.mkdir, (str(self.marker),)


def _pickle(path: Path, marker: Path) -> Path:
    torch.save({"weight": torch.zeros(2), "payload": Exploit(marker)}, path)
    return path


def test_pickled_weights_are_refused_without_being_unpickled(tmp_path, digits, teachers):
    marker = tmp_path / "exploit-ran"
    torch.load(_pickle(tmp_path / "probe.pt", marker), weights_only=False)
    assert marker.exists()  # the payload is real: unpickling the file runs it
    marker.rmdir()
    pool = tmp_path / "teachers"
    shutil.copytree(teachers, pool)
    _pickle(pool / "teacher-000" / "model.safetensors", marker)
    corrupt = "is missing, truncated or corrupt.*Delete"
    with pytest.raises(ValueError, match=f"teacher-000/model.safetensors {corrupt}"):
        load_teacher(pool / "teacher-000")
    with pytest.raises(ValueError, match=f"teacher-000/model.safetensors {corrupt}"):
        DistillationTrainer(_args(tmp_path / "a", pool), data=digits)
    _pickle(pool / "preprocessing.safetensors", marker)
    with pytest.raises(ValueError, match=f"teachers/preprocessing.safetensors {corrupt}"):
        load_preprocessing(pool)
    checkpoint = tmp_path / "run" / "checkpoint-2"
    checkpoint.mkdir(parents=True)
    _pickle(checkpoint / "state.safetensors", marker)
    with pytest.raises(ValueError, match=f"checkpoint-2/state.safetensors {corrupt}"):
        DistillationTrainer(_args(tmp_path / "b", teachers), data=digits).train(resume_from_checkpoint=str(checkpoint))
    distilled = tmp_path / "distilled"
    distilled.mkdir()
    _pickle(distilled / "distilled.safetensors", marker)
    with pytest.raises(ValueError, match="distilled/distilled.safetensors is missing, truncated or corrupt.*again"):
        load_distilled(distilled)
    assert not marker.exists()


class EchoingHfApi:
    """A Hub that refuses every push and echoes the token it was given, as a misbehaving server might."""

    def __init__(self, token=None, **kwargs):
        self.token, self.endpoint = token, "https://huggingface.co"

    def create_repo(self, repo_id, **kwargs):
        raise HTTPError(f"401 Unauthorized: invalid token {self.token}")


def test_the_hub_token_is_never_written_or_shown(tmp_path, digits, teachers, monkeypatch):
    env_token, given_token = "hf_fromTheEnvironmentNeverWritten01", "hf_givenToPushNeverWritten02"
    monkeypatch.setenv("HF_TOKEN", env_token)
    monkeypatch.setattr(hf_distill.hub, "HfApi", EchoingHfApi)
    pool, out = tmp_path / "teachers", tmp_path / "run"
    shutil.copytree(teachers, pool)
    trainer = DistillationTrainer(_args(out, pool, push_to_hub=True, hub_dataset_id="org/digits-apm-ipc1",
                                        hub_teachers_id="org/digits-teachers"), data=digits)
    trainer.train()
    shown = []
    for push in (trainer.push_to_hub, trainer.push_teachers_to_hub):
        for token in (None, given_token):
            with pytest.raises(HubError, match=r"401 Unauthorized: invalid token \*\*\*") as error:
                push(token=token)
            shown.append(str(error.value))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"run_args.json", "args.json", "distilled.safetensors", "README.md"} <= {p.name for p in files}
    for token in (env_token, given_token):
        assert not any(token.encode() in p.read_bytes() for p in files) and token not in "".join(shown)
