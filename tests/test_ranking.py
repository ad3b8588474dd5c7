"""DD-Ranking's scores (IOR, HLR, LRS, ARS) on hand-made leaderboard rows, and where they are written and shown."""

import dataclasses
import json
import math

import pytest

from hf_distill.cli import main
from hf_distill.leaderboard import ScoreRow, append_leaderboard, read_rows, render_leaderboard
from hf_distill.ranking import RANDOM_SUBSET_ROW, RankingScores, ars, hlr, ior, lrs, normalised, score_rows


def row(name, protocol, runs, model="convnet3", ipc=10, lr=0.02, augmentation=None, method="M", fingerprint="abc"):
    return ScoreRow(name, method, ipc, protocol, model, sum(runs) / len(runs), 0.0, runs, "test", "cpu", 300, lr,
                    fingerprint=fingerprint, dataset="../data/cifar10_5k", test_size=1017, augmentation=augmentation,
                    model_fingerprint="m1", space="zca 1")


def random_row(protocol, runs, **kwargs):
    return row(RANDOM_SUBSET_ROW, protocol, runs, method="real images", fingerprint=None, **kwargs)


def full_row(accuracy, model="convnet3"):
    return ScoreRow("full train split (5,000 images)", "full train split", 0, "hard", model, accuracy, 0.0, [accuracy],
                    "test", "cpu", 50, 0.05, dataset="/abs/cifar10_5k", test_size=1017, model_fingerprint="m1",
                    space="zca 1")


# set: apm 60/62 against random 50/54; hard 40/44 against a full-data model at 70; no augmentation 55/57 against 50/50
ROWS = [row("ours", "apm", [60.0, 62.0]), random_row("apm", [50.0, 54.0]),
        row("ours", "hard", [40.0, 44.0], lr=0.01), full_row(70.0),
        row("ours", "apm", [55.0, 57.0], augmentation="none"), random_row("apm", [50.0, 50.0], augmentation="none")]


def test_the_formulas_on_fractions():
    assert normalised(-1) == pytest.approx(0.0) and normalised(1) == pytest.approx(1.0)
    assert ior([60.0, 62.0], [50.0, 54.0]) == pytest.approx([0.10, 0.08])
    assert hlr(70.0, [40.0, 44.0]) == pytest.approx([0.30, 0.26])
    # LRS: (exp(0.5 * 0.10 - 0.5 * 0.30) - exp(-1)) / (e - exp(-1)), by hand 0.228454
    assert lrs([0.10], [0.30]) == pytest.approx([0.228454], abs=1e-6)
    # ARS: (exp(0.5 * 0.10 + 0.5 * 0.05) - exp(-1)) / (e - exp(-1)), by hand 0.302078
    assert ars([0.10], [0.05]) == pytest.approx([0.302078], abs=1e-6)
    assert lrs([0.0], [0.0]) == pytest.approx([(1 - math.exp(-1)) / (math.e - math.exp(-1))])


def test_a_set_row_gets_the_scores_its_rows_allow():
    scores = score_rows(ROWS)
    assert set(scores) == {0, 2}  # the apm row and the hard row; baselines and no-augmentation rows get none
    apm = scores[0]
    assert apm.ior.runs == pytest.approx([0.10, 0.08]) and apm.hlr.runs == pytest.approx([0.30, 0.26])
    assert apm.lrs.runs == pytest.approx(lrs([0.10, 0.08], [0.30, 0.26]))
    assert apm.ars.runs == pytest.approx(ars([0.10, 0.08], [0.05, 0.07]))
    assert apm.lrs.mean == pytest.approx(sum(apm.lrs.runs) / 2)
    hard = scores[2]  # no hard random row: HLR only
    assert hard.ior is None and hard.lrs is None and hard.hlr.runs == pytest.approx([0.30, 0.26])


@pytest.mark.parametrize("change", [dict(ipc=1), dict(model="vgg11_small"), dict(space="mean/std 0"),
                                    dict(dataset="../data/mnist"), dict(test_size=500), dict(epochs=1000),
                                    dict(model_fingerprint="old"), dict(runs=[50.0, 54.0, 52.0])])
def test_rows_of_another_setting_do_not_pair(change):
    others = [dataclasses.replace(r, **change) if r.set == RANDOM_SUBSET_ROW or r.method == "full train split" else r
              for r in ROWS]
    found = score_rows(others).get(0, RankingScores())
    assert found.ior is None and found.ars is None and found.lrs is None  # no random row pairs with the set's
    assert (found.hlr is not None) == bool({"ipc", "runs", "epochs"} & set(change))  # these leave the full-data row


def test_the_leaderboard_file_keeps_each_set_rows_scores_and_shows_them(tmp_path, capsys):
    board = tmp_path / "board.json"
    append_leaderboard(board, ROWS[:3])
    assert read_rows(board)[0].scores.hlr is None  # no full-data row yet
    append_leaderboard(board, ROWS[3:])  # the scores of rows already in the file are refreshed
    written = json.loads(board.read_text())["rows"]
    assert written[0]["scores"]["lrs"]["runs"] == pytest.approx(lrs([0.10, 0.08], [0.30, 0.26]))
    assert written[1]["scores"] is None and written[4]["augmentation"] == "none"
    text = render_leaderboard(board, scores=True)
    assert "| apm (no aug.) |" in text and f"| {sum(lrs([0.10, 0.08], [0.30, 0.26])) / 2:.3f} ± " in text
    main(["leaderboard", str(board), "--scores"])
    assert "| IOR | HLR | LRS | ARS |" in capsys.readouterr().out


def test_leaderboard_files_written_before_the_scores_still_load(tmp_path):
    old = {k: v for k, v in ROWS[0].to_dict().items() if k not in ("augmentation", "scores")}
    board = tmp_path / "old.json"
    board.write_text(json.dumps({"rows": [old]}))
    (loaded,) = read_rows(board)
    assert loaded.augmentation is None and loaded.scores is None and loaded.runs == [60.0, 62.0]


def test_rows_that_recorded_no_input_space_get_and_give_no_scores():
    assert score_rows([dataclasses.replace(r, space=None) for r in ROWS]) == {}
    unknown_random = [dataclasses.replace(r, space=None) if r.set == RANDOM_SUBSET_ROW else r for r in ROWS]
    assert score_rows(unknown_random)[0].ior is None and score_rows(unknown_random)[0].hlr is not None
