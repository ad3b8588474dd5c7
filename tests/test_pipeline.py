"""The example script and the trainer's outputs, on tiny `digits` runs."""

import ast
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from hf_distill import DistillationArguments, DistillationTrainer, load_distilled, load_image_dataset
from hf_distill.cli import parse_args
from hf_distill.teachers import load_preprocessing, load_teacher

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(ipc=2, iterations=3, num_teachers=1, teacher_epochs=10, batch_size=64, student_epochs=2, num_checkpoints=2,
            eval_epochs=2, num_eval_runs=2, model_kwargs='{"net_width": 16}')  # teachers learn: about 80% on digits


@pytest.mark.slow
def test_example_script_with_yaml_config_writes_every_output(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("\n".join(f"{k}: {v!r}" if isinstance(v, str) else f"{k}: {v}" for k, v in TINY.items()) + "\n")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "examples/distill.py", "--config", str(config), "--output_dir", str(out),
                           "--iterations", "4"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "random, paired (start images) (apm)" in proc.stdout and "teacher" in proc.stdout
    assert "random, new draw per run (apm)" in proc.stdout and "random, new draw per run (hard)" not in proc.stdout

    results = json.loads((out / "eval_results.json").read_text())
    for set_name in ("distilled", "random_subset", "random_draws"):
        entry = results["results"][set_name]["convnet3"]
        assert len(entry["runs"]) == 2 and all(round(run * 5.4, 6).is_integer() for run in entry["runs"])  # of 540
        assert entry["std"] == pytest.approx(abs(entry["runs"][0] - entry["runs"][1]) / 2 ** 0.5)  # sample std of 2
        assert f"{entry['mean']:.2f} +- {entry['std']:.2f}" in proc.stdout  # the printed table shows the saved numbers
    modes = results["results"]["label_modes"]
    assert set(results["results"]["paired_difference"]) == set(modes)
    for mode, difference in results["results"]["paired_difference"].items():  # run by run: the same start images
        distilled, paired = (modes[mode][s]["convnet3"]["runs"] for s in ("distilled", "random_subset"))
        assert difference["convnet3"]["runs"] == pytest.approx([d - r for d, r in zip(distilled, paired)])
        assert difference["convnet3"]["mean"] == pytest.approx((distilled[0] - paired[0] + distilled[1] - paired[1]) / 2)
    assert set(results["results"]["label_modes"]) == {"apm", "hard"}
    data, (model, _) = load_image_dataset("digits"), load_teacher(out / "teachers" / "teacher-000")
    preprocessing = load_preprocessing(out / "teachers")
    test_accuracy = _top1(model, preprocessing(data.test_images), data.test_labels)
    assert results["results"]["teacher"]["mean"] == pytest.approx(test_accuracy) and test_accuracy > 40  # chance: 10
    assert results["args"]["iterations"] == 4 and results["args"]["ipc"] == 2  # flag beats YAML, YAML beats default
    assert results["protocol"]["test_split"] == "test" and results["protocol"]["test_size"] == 540

    distilled = load_distilled(out / "distilled")
    assert distilled.images.shape == (20, 1, 8, 8) and distilled.images.dtype == torch.float32
    assert distilled.labels.tolist() == [c for c in range(10) for _ in range(2)]
    assert distilled.soft_labels.shape == (20, 10)
    assert distilled.metadata.args["iterations"] == 4
    card = (out / "distilled" / "README.md").read_text()  # saved before evaluation, re-rendered with the results after
    assert "| random real subset, same IPC (paired) | soft: teacher logits, L1 | `convnet3` |" in card
    assert "| random real subset, same IPC (new draw per run) | soft: teacher logits, L1 | `convnet3` |" in card
    assert (out / "distilled" / "data" / "train-00000-of-00001.parquet").exists()
    assert Image.open(out / "distilled_grid.png").size[0] > 32

    teacher = json.loads((out / "teachers" / "teacher-000" / "config.json").read_text())
    assert teacher["architecture"] == "convnet3" and teacher["epochs"] == 10 and teacher["in_chans"] == 1
    assert teacher["resolution"] == 8 and teacher["class_names"] == [str(i) for i in range(10)]
    assert teacher["preprocessing"]["type"] == "normalize"
    train_accuracy = _top1(model, preprocessing(data.train_images), data.train_labels)
    assert teacher["train_accuracy"] == pytest.approx(train_accuracy)
    assert (out / "teachers" / "teacher-000" / "model.safetensors").exists()


def _top1(model, inputs, labels) -> float:
    with torch.no_grad():
        return (model(inputs).argmax(1) == labels).double().mean().item() * 100


def test_training_leaves_every_teacher_unchanged(tmp_path):
    kwargs = '{"net_width": 16, "net_norm": "batchnorm"}'  # a teacher run in train mode would move its running stats
    args = DistillationArguments(output_dir=str(tmp_path), do_eval=False, refresh_every=1,
                                 **{**TINY, "num_teachers": 2, "model_kwargs": kwargs})
    trainer = DistillationTrainer(args)
    before = [copy.deepcopy(t.state_dict()) for t in trainer.prepare_teachers()]
    trainer.train()
    on_disk = [load_teacher(tmp_path / "teachers" / f"teacher-{i:03d}")[0] for i in range(2)]
    for state, *teachers in zip(before, trainer.teachers, on_disk):
        for teacher in teachers:
            after = teacher.state_dict()
            assert after.keys() == state.keys() and all(torch.equal(after[k], v) for k, v in state.items())


def test_teachers_pool_is_reused_and_completed(tmp_path):
    first = DistillationTrainer(DistillationArguments(output_dir=str(tmp_path / "a"), **TINY))
    first.prepare_teachers()
    saved = tmp_path / "a" / "teachers" / "teacher-000" / "model.safetensors"
    stamp = saved.stat().st_mtime_ns
    args = DistillationArguments(output_dir=str(tmp_path / "b"), teachers=str(tmp_path / "a" / "teachers"),
                                 **{**TINY, "num_teachers": 2})
    second = DistillationTrainer(args, data=first.data)
    teachers = second.prepare_teachers()
    assert len(teachers) == 2 and saved.stat().st_mtime_ns == stamp  # the first was loaded, not retrained
    assert all(torch.equal(a, b) for a, b in zip(first.teachers[0].state_dict().values(), teachers[0].state_dict().values()))
    assert (tmp_path / "a" / "teachers" / "teacher-001" / "config.json").exists()
    with pytest.raises(ValueError, match="Teachers in .* use zca=False, but --zca is True"):
        other = {**vars(args), "zca": True, "model_kwargs": TINY["model_kwargs"], "overwrite_output_dir": True}
        DistillationTrainer(DistillationArguments(**other), data=first.data).prepare_teachers()


def test_callbacks_see_every_step_and_can_stop_training(tmp_path):
    from transformers import TrainerCallback

    class StopAtTwo(TrainerCallback):
        steps, logs = [], []

        def on_step_end(self, args, state, control, **kwargs):
            self.steps.append(state.global_step)
            control.should_training_stop = state.global_step == 2

        def on_log(self, args, state, control, logs=None, **kwargs):
            self.logs.append(logs)

    args = DistillationArguments(output_dir=str(tmp_path), logging_steps=1, **{**TINY, "iterations": 5})
    trainer = DistillationTrainer(args, callbacks=[StopAtTwo()])
    distilled = trainer.train()
    assert StopAtTwo.steps == [1, 2] and [log["step"] for log in StopAtTwo.logs] == [1, 2]
    assert distilled.metadata.iterations_done == 2


def test_stock_callbacks_work_or_are_refused_clearly(tmp_path, capsys):
    from transformers import EarlyStoppingCallback, PrinterCallback
    from transformers.integrations import TensorBoardCallback

    args = DistillationArguments(output_dir=str(tmp_path / "run"), logging_steps=1, do_eval=False, **TINY)
    DistillationTrainer(args, callbacks=[PrinterCallback]).train()
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert [ast.literal_eval(line)["step"] for line in printed] == [1, 2, 3]  # PrinterCallback prints each log dict
    for callback in (TensorBoardCallback, EarlyStoppingCallback()):
        with pytest.raises(ValueError, match=r"works with transformers' Trainer only.*--report_to"):
            DistillationTrainer(args, callbacks=[callback])


def test_arguments_validate_and_fill_dataset_defaults(tmp_path, capsys):
    args = parse_args(["--ipc", "3", "--model_kwargs", '{"net_width": 32}'])
    assert args.iterations == 150 and args.output_dir == "outputs/digits-apm-ipc3"  # digits defaults
    assert args.model_kwargs == {"net_width": 32} and DistillationArguments().model_kwargs == {}
    generic = DistillationArguments(dataset="uoft-cs/cifar10")
    assert (generic.iterations, generic.student_epochs, generic.eval_epochs) == (2500, 250, 1000)
    assert generic.output_dir == "outputs/cifar10-apm-ipc10"  # each argument check: test_errors.py, test_bad_arguments_*
    bad = tmp_path / "bad.yaml"
    bad.write_text("ipcs: 3\n")
    for argv, message in ((["--config", str(bad)], "Unknown keys ['ipcs']"),
                          (["--config", str(tmp_path / "none.yaml")], "[Errno 2] No such file or directory")):
        with pytest.raises(SystemExit) as exit_info:
            parse_args(argv)
        assert exit_info.value.code == 2 and f"error: {message}" in capsys.readouterr().err


def test_ipc_larger_than_a_class_fails_before_any_training(tmp_path):
    data = DistillationTrainer(DistillationArguments(output_dir=str(tmp_path / "a"), **TINY)).data
    smallest = int(data.train_labels.bincount().min())
    for init in ("real", "noise"):  # noise init still needs real images for the random-subset baseline
        args = DistillationArguments(output_dir=str(tmp_path / init), **{**TINY, "ipc": smallest + 1, "init": init})
        with pytest.raises(ValueError, match="Lower --ipc"):
            DistillationTrainer(args, data=data)
    assert not (tmp_path / "real").exists() and not (tmp_path / "noise").exists()


def test_evaluation_models_train_at_eval_lr_and_eval_dsa_strategy(tmp_path, monkeypatch):
    import hf_distill.evaluation as evaluation
    protocols = []
    monkeypatch.setattr(evaluation, "train_and_test", lambda job, labelled, protocol, *args, **kwargs: protocols.append(protocol) or 50.0)
    default = DistillationArguments(output_dir=str(tmp_path / "a"), **TINY)
    assert (default.eval_lr, default.eval_dsa_strategy) == (default.lr_net, default.dsa_strategy)
    args = DistillationArguments(output_dir=str(tmp_path / "b"), eval_lr=0.03, eval_dsa_strategy="none", **TINY)
    trainer = DistillationTrainer(args)
    trainer.train()
    results = trainer.evaluate()
    assert protocols and {(p.lr, p.fit_config(64).augment) for p in protocols} == {(0.03, False)}
    assert (results.settings.lr, results.settings.augmentation) == (0.03, "none")
