"""`evaluate_set` / `hf-distill evaluate`: any set under a named protocol, with its baselines, and the leaderboard."""

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import datasets
import hf_distill.evaluation as evaluation
import hf_distill.leaderboard as leaderboard
import hf_distill.ranking as ranking
import hf_distill.scoring as scoring
import hf_distill.sets as sets
from hf_distill import DistillationArguments, DistillationTrainer, Preprocessing, evaluate_set, load_image_dataset
from hf_distill.leaderboard import append_leaderboard, render_leaderboard
from hf_distill.sets import read_set

ROOT = Path(__file__).resolve().parents[1]
FAST = dict(models=["convnet3"], epochs=2, num_runs=2)


@pytest.fixture(scope="module")
def digits():
    return load_image_dataset("digits")


@pytest.fixture(scope="module")
def run(tmp_path_factory, digits) -> Path:
    """A tiny distilled digits set (distilled/) and its one-teacher pool (teachers/)."""
    out = tmp_path_factory.mktemp("scoring") / "run"
    args = DistillationArguments(output_dir=str(out), ipc=2, iterations=2, num_teachers=1, teacher_epochs=10, batch_size=64,
                                 student_epochs=2, num_checkpoints=2, do_eval=False, model_kwargs={"net_width": 16})
    trainer = DistillationTrainer(args, data=digits)
    trainer.train()
    trainer.save_distilled()
    return out


@pytest.fixture
def recorded(monkeypatch):
    """Every (set name, label mode, run, images, targets) that `evaluate_set` trains a model on."""
    calls = []

    def record(job, labelled, protocol, *args, **kwargs):
        targets = labelled.soft_labels if protocol.soft else labelled.labels
        calls.append((job.set_name, job.protocol, job.run, labelled.images.clone(), targets))
        return 50.0 + job.run
    monkeypatch.setattr(evaluation, "train_and_test", record)
    return calls


def test_our_set_is_scored_under_apm_and_hard_next_to_fresh_random_subsets_and_the_teachers(run, digits, recorded):
    result = evaluate_set(str(run / "distilled"), digits, teachers=str(run / "teachers"), **FAST)
    rows = [(r.set, r.protocol, r.ipc, r.runs) for r in result.rows]
    assert rows[1:] == [("run", "apm", 2, [50.0, 51.0]), ("random subset, new draw per run", "apm", 2, [50.0, 51.0]),
                        ("run", "hard", 2, [50.0, 51.0]), ("random subset, new draw per run", "hard", 2, [50.0, 51.0])]
    assert rows[0][:2] == ("teachers (1)", "-") and result.rows[0].mean > 30  # the teacher learned something
    assert {(r.dataset, r.test_size) for r in result.rows} == {("digits", len(digits.test_labels))}
    by_set = {(name, mode, r): (images, targets) for name, mode, r, images, targets in recorded}
    assert torch.equal(by_set["set", "apm", 0][0], by_set["set", "apm", 1][0])
    assert not torch.equal(by_set["random_subset", "hard", 0][0], by_set["random_subset", "hard", 1][0])  # new draws
    assert by_set["set", "apm", 0][1].shape == (20, 10) and by_set["set", "hard", 0][1].shape == (20,)
    assert by_set["random_subset", "apm", 0][1].shape == (20, 10)  # labelled by the teacher
    teacher, set_apm, random_apm, set_hard, random_hard = (r.fingerprint for r in result.rows)
    assert set_apm == set_hard == read_set(str(run / "distilled"), digits).fingerprint
    assert teacher == random_apm != set_apm and random_hard is None  # rows labelled by the pool carry its fingerprint
    assert {r.epochs for r in result.rows[1:]} == {2} and {r.test_split for r in result.rows} == {"test"}
    assert [r.model_fingerprint for r in result.rows] == [None] + [scoring.model_fingerprint("convnet3")] * 4


def test_a_model_fingerprint_changes_with_the_models_init_or_modules_and_leaves_the_global_seed_alone(monkeypatch):
    state = torch.get_rng_state()
    prints = [scoring.model_fingerprint(name) for name in ("convnet3", "convnet3", "convnet4")]
    assert prints[0] == prints[1] != prints[2] and torch.equal(state, torch.get_rng_state())
    real = scoring.create_model

    def zeroed_last_norm(*args, **kwargs):  # the same layers, one of them initialised otherwise
        model = real(*args, **kwargs)
        torch.nn.init.zeros_([m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)][-1].weight)
        return model
    monkeypatch.setattr(scoring, "create_model", zeroed_last_norm)
    assert scoring.model_fingerprint("convnet3") != prints[0]
    monkeypatch.setattr(scoring, "create_model", lambda *args, **kwargs: real(*args, net_norm="layernorm", **kwargs))
    assert scoring.model_fingerprint("convnet3") != prints[0]  # GroupNorm(1, C) has instance norm's weight shapes


def test_a_fingerprint_changes_with_any_value_dtype_or_shape():
    images = torch.rand(4, 3, 2, 2)
    same, changed = images.clone(), images.clone()
    changed[3, 2, 1, 1] += 1e-6
    prints = {sets.fingerprint([x]) for x in (images, changed, images.double(), images.reshape(4, 12))}
    assert sets.fingerprint([same]) == sets.fingerprint([images]) and len(prints) == 4


def test_a_set_without_soft_labels_is_scored_with_hard_only(tmp_path, digits, recorded):
    pixels = digits.train_images[:20]
    path = tmp_path / "set"
    (path / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(
        {"image": [img[0].numpy() for img in pixels], "label": digits.train_labels[:20].tolist()},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(num_classes=10)}),
    ).to_parquet(str(path / "data" / "train.parquet"))
    result = evaluate_set(str(path), digits, protocols=["apm", "hard"], **FAST)
    assert [r.protocol for r in result.rows] == ["hard", "hard"]
    assert result.notes == ["set has no soft labels: scored with `hard` only."]
    images = next(images for name, _, _, images, _ in recorded if name == "set")
    assert torch.allclose(images, Preprocessing.fit(digits.train_images)(pixels))  # decoded and preprocessed as real data


def test_a_release_is_read_in_its_own_space(tmp_path, digits):
    mean, std = torch.tensor([0.3]), torch.tensor([0.2])
    pixels = digits.train_images[:20]
    images = (pixels.float() / 255 - mean) / std
    save_file({"images": images, "labels": digits.train_labels[:20], "mean": mean, "std": std},
              str(tmp_path / "M_ipc2.safetensors"), metadata={"method": "M (someone et al.)"})
    release = read_set(str(tmp_path / "M_ipc2.safetensors"), digits)
    assert release.method == "M" and release.soft_labels is None and release.ipc == 2
    assert torch.allclose(release.preprocessing(pixels), images)  # test images go to the release's space
    save_file({"images": images, "labels": torch.eye(10)[digits.train_labels[:20]]}, str(tmp_path / "W.safetensors"),
              metadata={"zca": "yes"})
    whitened = read_set(str(tmp_path / "W.safetensors"), digits)
    assert whitened.preprocessing.zca and torch.equal(whitened.labels, digits.train_labels[:20])
    assert whitened.soft_labels.shape == (20, 10)
    save_file({"images": images, "labels": digits.train_labels[:20]}, str(tmp_path / "N.safetensors"))
    with pytest.raises(ValueError, match="neither its mean/std nor that it is ZCA-whitened; pass --zca"):
        read_set(str(tmp_path / "N.safetensors"), digits)


@pytest.mark.slow
def test_evaluate_command_adds_to_a_leaderboard_that_renders(tmp_path, run):
    board = tmp_path / "board.json"
    cli = [sys.executable, "-m", "hf_distill"]
    proc = subprocess.run([*cli, "evaluate", str(run / "distilled"), "--dataset", "digits", "--protocol", "hard",
                           "--epochs", "2", "--num_runs", "2", "--leaderboard", str(board)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| run | APM | 2 | hard | convnet3 |" in proc.stdout and "random subset, new draw per run" in proc.stdout
    rows = json.loads(board.read_text())["rows"]
    assert all(row["seconds"] > 0 for row in rows) and " min |" in proc.stdout  # what each row cost is recorded
    append_leaderboard(board, [leaderboard.ScoreRow(**{**rows[0], "seconds": 1.0})])  # the same row scored again, in
    assert len(json.loads(board.read_text())["rows"]) == 2  # another time, is not added twice
    append_leaderboard(board, [leaderboard.ScoreRow(**{**rows[0], "epochs": 3})])
    assert len(json.loads(board.read_text())["rows"]) == 3
    rendered = subprocess.run([*cli, "leaderboard", str(board)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rendered.stdout.count("| run | APM | 2 | hard | convnet3 |") == 2  # the 2- and the 3-epoch row
    missing = subprocess.run([*cli, "leaderboard", str(tmp_path / "none.json")], cwd=ROOT, capture_output=True, text=True)
    assert missing.returncode == 2 and missing.stderr.strip().startswith("error: No leaderboard at")


@pytest.mark.slow
def test_leaderboard_command_prints_every_row_of_a_hand_made_file_grouped_and_best_first(tmp_path):
    def row(name, ipc, protocol, mean, std, runs, seconds, fingerprint, **other):
        return {"set": name, "method": "M", "ipc": ipc, "protocol": protocol, "model": "convnet3", "mean": mean,
                "std": std, "runs": runs, "test_split": "test", "hardware": "cpu X", "epochs": 300, "lr": 0.01,
                "seconds": seconds, "fingerprint": fingerprint, "model_fingerprint": None, "dataset": "data/small",
                "test_size": 1017, **other}
    rows = [row("A", 10, "hard", 40.04, 0.5, [39.54, 40.54], 150.0, "fa"),
            row("B", 10, "hard", 61.26, 1.26, [60.0, 61.26, 62.52], 30.0, "fb", hardware="cpu Y"),
            row("A", 1, "hard", 20.0, 2.0, [18.0, 22.0], None, "fa1"),
            row("A", 10, "apm", 55.56, 0.04, [55.52, 55.6], 600.0, "fa", epochs=1000, lr=0.02),
            row("teachers (2)", 0, "-", 70.0, 0.0, [70.0], 12.0, "ft", method="teacher", model="-", epochs=0, lr=0.0)]
    board = tmp_path / "board.json"
    board.write_text(json.dumps({"rows": rows}))
    proc = subprocess.run([sys.executable, "-m", "hf_distill", "leaderboard", str(board)], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines() == [  # teachers first, then by protocol, model and IPC, best first within
        "| set | method | IPC | protocol | model | top-1 % | runs | data (test images) | epochs | lr | time | fingerprint |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        "| teachers (2) | teacher | - | - | - | 70.0 ± 0.0 | 1 | small test (1,017) | - | - | 0.2 min | ft |",
        "| A | M | 10 | apm | convnet3 | 55.6 ± 0.0 | 2 | small test (1,017) | 1000 | 0.02 | 10.0 min | fa |",
        "| A | M | 1 | hard | convnet3 | 20.0 ± 2.0 | 2 | small test (1,017) | 300 | 0.01 | - | fa1 |",
        "| B | M | 10 | hard | convnet3 | 61.3 ± 1.3 | 3 | small test (1,017) | 300 | 0.01 | 0.5 min | fb |",
        "| A | M | 10 | hard | convnet3 | 40.0 ± 0.5 | 2 | small test (1,017) | 300 | 0.01 | 2.5 min | fa |",
        "",
        "Hardware: cpu X; cpu Y.",
    ]


@pytest.mark.slow
def test_torch_compile_compiles_every_fresh_model_and_scores_as_eager(run, digits, monkeypatch):
    import hf_distill.training as training
    compiled = []
    real_compile = training.compile_model
    monkeypatch.setattr(training, "compile_model", lambda model: compiled.append(model) or real_compile(model))
    options = dict(protocols=["hard"], random_subset=False, **FAST)
    eager = evaluate_set(str(run / "distilled"), digits, **options).rows[0]
    assert compiled == []
    result = evaluate_set(str(run / "distilled"), digits, torch_compile=True, **options).rows[0]
    assert len(compiled) == 2 and compiled[0] is not compiled[1]  # one per run
    assert all(m._compiled_call_impl is not None for m in compiled)
    for a, b in zip(result.runs, eager.runs):  # compilation changes the last digits of the weights, not the scores
        assert abs(a - b) <= 1.0


@pytest.mark.slow
def test_leaderboard_by_architecture_puts_each_set_on_one_line_per_source_dataset(tmp_path):
    def row(name, model, mean, dataset="data/small", test_size=1017):
        return leaderboard.ScoreRow(name, "M", 10, "hard", model, mean, 1.0, [mean] * 3, "test", "cpu", 300, 0.01,
                                dataset=dataset, test_size=test_size)
    board = append_leaderboard(tmp_path / "board.json", [
        row("A", "convnet3", 40.0), row("B", "convnet3", 60.0), row("A", "vgg11_small", 30.0),
        row("A", "convnet3", 45.0, "org/full", 10000),
        leaderboard.ScoreRow("teachers (1)", "teacher", 0, "-", "-", 70.0, 0.0, [70.0], "test", "cpu", 0, 0.0,
                         dataset="data/small", test_size=1017)])
    table = subprocess.run([sys.executable, "-m", "hf_distill", "leaderboard", str(board), "--by_architecture"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600).stdout.splitlines()
    assert table[0] == "| data (test images) | set | method | IPC | protocol | epochs | runs | convnet3 | vgg11_small |"
    assert table[2:5] == ["| small test (1,017) | B | M | 10 | hard | 300 | 3 | 60.0 ± 1.0 | - |",  # best first
                          "| small test (1,017) | A | M | 10 | hard | 300 | 3 | 40.0 ± 1.0 | 30.0 ± 1.0 |",
                          "| full test (10,000) | A | M | 10 | hard | 300 | 3 | 45.0 ± 1.0 | - |"]  # a line per source
    assert "teachers (1) (small test (1,017)): 70.0 ± 0.0." in table
    remade = {"fingerprint": "remade"}  # another set under a known name keeps a line of its own, named by fingerprint
    append_leaderboard(board, [leaderboard.ScoreRow(**{**json.loads(board.read_text())["rows"][0], **remade})])
    table = render_leaderboard(board, by_architecture=True).splitlines()
    assert "| small test (1,017) | A [no fingerprint] | M | 10 | hard | 300 | 3 | 40.0 ± 1.0 | 30.0 ± 1.0 |" in table
    assert "| small test (1,017) | A [remade] | M | 10 | hard | 300 | 3 | 40.0 ± 1.0 | - |" in table


def test_rows_trained_on_an_earlier_model_definition_are_left_out_of_the_leaderboard(tmp_path):
    def row(name, model_print, mean, model="convnet3"):
        return leaderboard.ScoreRow(name, "M", 10, "hard", model, mean, 1.0, [mean] * 3, "test", "cpu", 300, 0.01,
                                model_fingerprint=model_print)
    teacher = leaderboard.ScoreRow("teachers (1)", "teacher", 0, "-", "-", 70.0, 0.0, [70.0], "test", "cpu", 0, 0.0)
    board = append_leaderboard(tmp_path / "board.json", [row("A", "v1", 40.0), row("A", "w1", 30.0, "vgg11_small"),
                                                         row("B", None, 50.0), row("A", "v2", 45.0), teacher])
    table = render_leaderboard(board, by_architecture=True)
    assert "| runs | vgg11_small | convnet3 |" in table  # columns in the order of the rows shown
    assert "| A | M | 10 | hard | 300 | 3 | 30.0 ± 1.0 | 45.0 ± 1.0 |" in table and "40.0" not in table
    assert "| B | M | 10 | hard | 300 | 3 | - | 50.0 ± 1.0 |" in table  # rows that recorded no definition are kept
    assert "teachers (1) (? test): 70.0 ± 0.0." in table
    assert table.endswith("Left out: 1 row(s) trained on another definition of convnet3 than the latest "
                          "(`model_fingerprint`).")
    assert "40.0" not in render_leaderboard(board)


def test_the_duration_estimate_names_what_it_was_measured_on():
    jobs = [evaluation.EvalJob("set", "hard", model, 0) for model in ("alexnet_small", "resnet18_small")]
    plan = evaluation.EvalPlan(jobs, evaluation.PROTOCOLS, steps_per_epoch=1)
    assert plan.estimate(60.0, whole_model=True) == (
        "First evaluation model took 60.0 s with its test scoring: the evaluation should take about 2.0 min (2 models "
        "on 1 process(es)) (measured on alexnet_small: the 1 other architecture(s) may cost far more or less).")
    alone = evaluation.EvalPlan(jobs[:1], evaluation.PROTOCOLS, steps_per_epoch=1)
    assert alone.estimate(60.0, whole_model=True, compiled=True).endswith("(it includes compiling alexnet_small).")
    assert alone.estimate(0.5, compiled=True) == (  # from the second epoch: the first one compiles
        "Second evaluation epoch took 0.50 s: training the 1 models should take about 8.3 min on 1 process(es); "
        "compiling and test scoring come on top.")
    assert alone.estimate(0.5).endswith("should take about 8.3 min on 1 process(es); test scoring comes on top.")


def test_a_compiled_evaluation_is_estimated_from_its_second_epoch(monkeypatch, caplog):
    plan = evaluation.EvalPlan([evaluation.EvalJob("set", "hard", "convnet3", 0)], evaluation.PROTOCOLS, 1)
    clock = iter([0.0, 50.0, 50.5, 51.0])  # the first epoch compiles (50 s), the next ones take 0.5 s
    monkeypatch.setattr(evaluation.time, "perf_counter", lambda: next(clock))
    hook = evaluation._estimate_after_first_epoch(plan, 1, compiled=True)
    with caplog.at_level(logging.INFO, logger="hf_distill.evaluation"):
        for epoch in (1, 2, 3):
            hook(epoch)
    assert [r.getMessage() for r in caplog.records] == [plan.estimate(0.5, compiled=True)]


# ------------------------------------------------------------------------------- sets in other layouts
def _image_set(path: Path, pixels: torch.Tensor, columns: dict) -> Path:
    """A parquet image set at `path` in Hub layout: `image` and the given integer columns (plain int64 values)."""
    (path / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": [img[0].numpy() for img in pixels], **columns},
                               features=datasets.Features({"image": datasets.Image(),
                                                           **{c: datasets.Value("int64") for c in columns}}),
                               ).to_parquet(str(path / "data" / "train.parquet"))
    return path


def test_an_image_set_with_its_labels_in_another_integer_column_is_read(tmp_path, digits, caplog):
    pixels, labels = digits.train_images[:20], digits.train_labels[:20].tolist()
    with caplog.at_level("WARNING"):
        by_type = read_set(str(_image_set(tmp_path / "class_id", pixels, {"class_id": labels})), digits)
    assert by_type.labels.tolist() == labels and "using the integer column 'class_id'" in caplog.text
    by_name = read_set(str(_image_set(tmp_path / "labels", pixels, {"labels": labels, "index": list(range(20))})), digits)
    assert by_name.labels.tolist() == labels  # `labels` is a label column by name, `index` is not used
    two = str(_image_set(tmp_path / "two", pixels, {"class_id": labels, "index": list(range(20))}))
    with pytest.raises(ValueError, match=r"several integer columns \['class_id', 'index'\]; pass --label_column"):
        read_set(two, digits)
    assert read_set(two, digits, label_column="class_id").labels.tolist() == labels
    assert torch.allclose(by_type.images, Preprocessing.fit(digits.train_images)(pixels))  # the real preprocessing


def test_a_set_in_another_space_than_declared_gets_a_one_line_warning(tmp_path, digits):
    pixels, labels = digits.train_images[:40], digits.train_labels[:40].tolist()
    real = read_set(str(_image_set(tmp_path / "real", pixels, {"class_id": labels})), digits)
    assert sets.space_warning(real, digits) is None
    flat = (pixels.float() - pixels.float().mean()) * 0.1 + 128  # whitened-looking images stored as pixels
    whitened = read_set(str(_image_set(tmp_path / "flat", flat.round().to(torch.uint8), {"class_id": labels})), digits)
    warning = sets.space_warning(whitened, digits)
    assert "\n" not in warning and "look whitened or normalised before they were stored" in warning and "--zca" in warning
    mean, std = torch.tensor([0.3]), torch.tensor([0.2])
    save_file({"images": pixels.float(), "labels": digits.train_labels[:40], "mean": mean, "std": std},
              str(tmp_path / "raw.safetensors"))  # 0-255 pixels declared as normalised
    warning = sets.space_warning(read_set(str(tmp_path / "raw.safetensors"), digits), digits)
    assert "look like raw pixels (0-1 or 0-255) declared as normalised" in warning
    loud = real.preprocessing(pixels) * 10  # an optimised set ten times louder than real images, in its declared space
    save_file({"images": loud, "labels": digits.train_labels[:40], "mean": real.preprocessing.mean,
               "std": real.preprocessing.std}, str(tmp_path / "loud.safetensors"))
    assert sets.space_warning(read_set(str(tmp_path / "loud.safetensors"), digits), digits) is None


# ------------------------------------------------------------------------------- the scores' rows, kept as they finish
def test_scores_train_the_rows_they_need_once_and_a_stopped_evaluation_keeps_its_finished_rows(tmp_path, run, digits,
                                                                                              monkeypatch):
    monkeypatch.setattr(scoring, "FULL_DATA_EPOCHS", 1)
    board, trained, full_models = tmp_path / "board.json", [], []
    kwargs = dict(teachers=str(run / "teachers"), scores=True, leaderboard=board, **FAST)

    def stub(job, labelled, protocol, *args, **kwargs):  # the set 10 points above its random subsets, run by run
        if len(trained) == 4 and stop:
            raise KeyboardInterrupt
        trained.append((job.set_name, protocol.name, protocol.augmentation))
        return (60.0 if job.set_name == "set" else 50.0) + job.run
    monkeypatch.setattr(evaluation, "train_and_test", stub)
    real_teacher = scoring.train_teacher
    monkeypatch.setattr(scoring, "train_teacher", lambda *a, **k: full_models.append(a[0].model) or real_teacher(*a, **k))
    stop = True
    with pytest.raises(KeyboardInterrupt):
        evaluate_set(str(run / "distilled"), digits, **kwargs)
    kept = [(r.set, r.protocol, r.augmentation) for r in leaderboard.read_rows(board)]
    assert kept == [("run", "apm", None), ("random subset, new draw per run", "apm", None)]  # 4 models: 2 rows of 2 runs
    stop = False
    result = evaluate_set(str(run / "distilled"), digits, **kwargs)
    assert trained[4:] == [("set", "hard", scoring.DEFAULT_STRATEGY)] * 2 + [("random_subset", "hard",
                                                                               scoring.DEFAULT_STRATEGY)] * 2 + [
        ("set", "apm", "none")] * 2 + [("random_subset", "apm", "none")] * 2  # only the 4 rows the file lacked
    assert full_models == ["convnet3"]  # the pool's teacher is a narrower convnet3: a full-data model is trained
    assert [(r.set[:6], r.protocol, r.augmentation) for r in result.rows] == [
        ("teache", "-", None), ("full t", "hard", None), ("run", "apm", None), ("random", "apm", None),
        ("run", "hard", None), ("random", "hard", None), ("run", "apm", "none"), ("random", "apm", "none")]
    full, ours = result.rows[1], result.rows[2]
    assert ours.scores.ior.runs == pytest.approx([0.10, 0.10]) and ours.scores.ars.runs == pytest.approx(
        ranking.ars([0.10, 0.10], [0.10, 0.10]))
    assert ours.scores.hlr.runs == pytest.approx([(full.mean - 60) / 100, (full.mean - 61) / 100])
    assert "2 row(s) already in" in " ".join(result.notes)
    stored = leaderboard.read_rows(board)  # the Python call alone stores every row, the teachers' one too
    assert sorted((r.set[:6], r.protocol, r.augmentation or "") for r in stored) == sorted(
        (r.set[:6], r.protocol, r.augmentation or "") for r in result.rows)
    assert next(r for r in stored if r.set == "run" and r.protocol == "apm" and not r.augmentation).scores.hlr
    again = evaluate_set(str(run / "distilled"), digits, **kwargs)
    assert len(trained) == 12 and full_models == ["convnet3"]  # nothing is trained twice
    assert "7 row(s) already in" in " ".join(again.notes) and "| IOR | HLR | LRS | ARS |" in again.to_markdown()


def test_a_space_name_ignores_the_last_float_digits_of_a_fit_and_tells_spaces_apart(digits):
    zca = Preprocessing.fit(digits.train_images, zca=True)
    noisy = Preprocessing(zca.mean, zca.std, zca.zca_mean, zca.zca_matrix + 1e-10 * torch.randn_like(zca.zca_matrix),
                          zca.zca_inverse)
    plain = Preprocessing.fit(digits.train_images)
    other = Preprocessing(plain.mean + 0.01, plain.std)
    names = [sets.space_name(p) for p in (zca, noisy, plain, other)]
    assert names[0] == names[1] and len(set(names)) == 3 and names[0].startswith("zca ") and names[2].startswith("mean/std")
