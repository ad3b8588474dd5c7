"""Sharing on the Hub: push (recorded), failures without token or network, teacher pools, and a real HTTP round trip.

The Hub is not reachable from tests. Uploads go to a recording stand-in for `HfApi` that also commits each uploaded
folder to a git repo; `olah` (a self-hosted Hub mirror from PyPI) then serves those repos read-only on 127.0.0.1,
so `load_dataset`, `load_distilled`, timm and `--teachers hf-hub:` download them through the real HTTP client.
"""

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file

import datasets
import hf_distill.hub
from hf_distill import DistillationArguments, DistillationTrainer, HubError, export_teachers, load_distilled
from hf_distill import TeacherPool
from hf_distill import teachers as teachers_module

pytestmark = pytest.mark.slow  # the fast tier (pytest -m "not slow") leaves this file out

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(ipc=1, iterations=3, num_teachers=2, teacher_epochs=2, student_epochs=3, num_checkpoints=1, eval_epochs=5,
            num_eval_runs=1, eval_protocols=["apm", "hard"], model_kwargs='{"net_width": 16}')
DATASET_ID, TEACHERS_ID = "org/digits-apm-ipc1", "org/digits-convnet3-teachers"
SNIPPET_EPOCHS, SNIPPET_MAX_LOSS_RATIO = 30, 0.5  # measured: L1 0.080 at epoch 1, 0.015 at 30 (x0.19, seed 0)
SECRET = "hf_testTokenThatMustNeverBeWritten0123"
OLAH_VENV = Path(os.environ.get("HF_DISTILL_OLAH_VENV", Path.home() / ".cache" / "hf-distill-tests" / "olah-venv"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RecordingHfApi:
    """Stands in for `huggingface_hub.HfApi`: records every call and commits uploads to git repos under `mirrors`."""

    calls: list = []
    mirrors: Path

    def __init__(self, token=None, **kwargs):
        self.token, self.endpoint = token, "https://huggingface.co"

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return f"https://huggingface.co/{kwargs['repo_type']}s/{repo_id}"

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        repo = self.mirrors / f"{kwargs['repo_type']}s" / kwargs["repo_id"]
        shutil.copytree(kwargs["folder_path"], repo, dirs_exist_ok=True)
        git = ["git", "-c", "user.name=hf-distill tests", "-c", "user.email=tests@localhost", "-c", "init.defaultBranch=main"]
        for command in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", kwargs["commit_message"]]):
            subprocess.run(git + command, cwd=repo, check=True, capture_output=True)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny digits run: 2 teachers, distilled, saved, evaluated; then pushed to the recording Hub."""
    out = tmp_path_factory.mktemp("run")
    trainer = DistillationTrainer(DistillationArguments(output_dir=str(out / "out"), **TINY))
    trainer.train()
    trainer.save_distilled()
    results = trainer.evaluate()
    trainer.save_eval_results(results)
    RecordingHfApi.calls, RecordingHfApi.mirrors = [], out / "mirrors"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hf_distill.hub, "HfApi", RecordingHfApi)
        patch.setenv("HF_TOKEN", SECRET)
        urls = [trainer.push_to_hub(DATASET_ID, private=True), trainer.push_teachers_to_hub(TEACHERS_ID)]
    return {"trainer": trainer, "out": out / "out", "results": results, "calls": list(RecordingHfApi.calls),
            "urls": urls, "mirrors": out / "mirrors"}


def test_reloaded_set_scores_like_the_in_memory_one_and_the_card_shows_both_scores(run):
    trainer, results = run["trainer"], run["results"].to_dict()["results"]
    assert set(results["distilled_8bit"]["convnet3"]) == {"mean", "std", "runs"}
    assert "distilled_8bit" in results["label_modes"]["apm"] and "distilled_8bit" not in results["label_modes"]["hard"]
    assert set(results) >= {"distilled", "random_subset", "teacher", "label_modes"}

    again = trainer.evaluate(load_distilled(run["out"] / "distilled")).to_dict()["results"]
    for set_name in ("distilled", "distilled_8bit", "random_subset"):
        assert again[set_name] == results[set_name]

    card = (run["out"] / "distilled" / "README.md").read_text()
    for set_name, label in (("distilled", "distilled, exact floats"), ("distilled_8bit", "distilled, 8-bit `image` column")):
        entry = results[set_name]["convnet3"]
        assert f"| {label}" in card and f"| `convnet3` | {entry['mean']:.2f} ± {entry['std']:.2f} | 1 |" in card
    assert "Not evaluated yet" not in card and f'repo = "{DATASET_ID}"' in card  # re-rendered for the pushed id
    assert "| license | `cc-by-4.0`, inherited from the source dataset |" in card


def test_push_asks_hfapi_to_create_then_upload_each_repo(run):
    out = run["out"]
    assert run["calls"] == [
        ("create_repo", DATASET_ID, {"repo_type": "dataset", "private": True, "exist_ok": True}),
        ("upload_folder", {"repo_id": DATASET_ID, "folder_path": str(out / "distilled"), "repo_type": "dataset",
                           "commit_message": "Upload distilled set with hf-distill",
                           "delete_patterns": ["data/*.parquet"]}),  # an earlier push's other shards go
        ("create_repo", TEACHERS_ID, {"repo_type": "model", "private": False, "exist_ok": True}),
        ("upload_folder", {"repo_id": TEACHERS_ID, "folder_path": str(out / "teachers-hub"), "repo_type": "model",
                           "commit_message": "Upload teacher pool with hf-distill"}),
    ]
    assert run["urls"] == [f"https://huggingface.co/datasets/{DATASET_ID}", f"https://huggingface.co/models/{TEACHERS_ID}"]
    written = [p for p in out.rglob("*") if p.is_file()] + [p for p in run["mirrors"].rglob("*") if p.is_file()]
    assert not any(SECRET.encode() in p.read_bytes() for p in written)


def test_teacher_pool_exports_as_a_timm_repo_and_is_reused_by_teachers(run, tmp_path, monkeypatch):
    trainer, export = run["trainer"], run["out"] / "teachers-hub"
    files = sorted(p.relative_to(export).as_posix() for p in export.rglob("*") if p.is_file())
    assert files == ["README.md", "config.json", "model.safetensors", "preprocessing.safetensors",
                     "teacher-001/config.json", "teacher-001/model.safetensors"]
    config = json.loads((export / "config.json").read_text())
    assert config["architecture"] == "convnet3" and config["num_classes"] == 10 and config["num_features"] == 16
    assert config["model_args"] == {"num_classes": 10, "in_chans": 1, "net_width": 16, "img_size": [8, 8]}
    assert config["pretrained_cfg"]["input_size"] == [1, 8, 8]
    assert config["pretrained_cfg"]["mean"] == trainer.preprocessing.mean.tolist()
    card = (export / "README.md").read_text()
    assert "library_name: timm" in card and "license: cc-by-4.0" in card and f"hf-hub:{TEACHERS_ID}" in card

    x = trainer.preprocessing(trainer.data.test_images[:16])
    for index, folder in ((0, export), (1, export / "teacher-001")):
        model = timm.create_model(f"local-dir:{folder}", pretrained=True).eval()
        assert torch.equal(model(x), trainer.teachers[index](x))

    reuse = DistillationTrainer(DistillationArguments(output_dir=str(tmp_path / "b"), teachers=str(export), **TINY),
                                data=trainer.data)
    teachers = reuse.prepare_teachers()
    assert all(torch.equal(a(x), b(x)) for a, b in zip(teachers, trainer.teachers))
    assert not (tmp_path / "b" / "teachers").exists() and not (export / "teacher-000").exists()  # nothing trained

    monkeypatch.setattr(teachers_module, "download_repo", lambda *args, **kwargs: export)
    with pytest.raises(ValueError, match=rf"hf-hub:{TEACHERS_ID} holds 2 teachers but --num_teachers is 3; lower"):
        TeacherPool.open(f"hf-hub:{TEACHERS_ID}", 3)
    with pytest.raises(ValueError, match="No teacher pool in"):
        export_teachers(tmp_path, tmp_path / "export")


def test_push_without_a_token_fails_in_one_sentence_and_keeps_the_files(run, monkeypatch, tmp_path):
    folder = run["out"] / "distilled"
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(hf_distill.hub.constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    with pytest.raises(HubError) as error:
        run["trainer"].push_to_hub(DATASET_ID)
    assert str(error.value) == (f"Could not push to the Hub: no token found; run `hf auth login` or set HF_TOKEN. "
                                f"Your files are kept in {folder}.")
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before


def test_example_push_to_an_unreachable_hub_exits_with_one_sentence(run, tmp_path):
    port = free_port()  # nothing listens there
    out = tmp_path / "run"
    env = {**os.environ, "HF_ENDPOINT": f"http://127.0.0.1:{port}", "HF_TOKEN": SECRET, "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_OFFLINE", None)
    flags = [f"--{k}={v}" for k, v in TINY.items() if k != "eval_protocols"]
    proc = subprocess.run([sys.executable, "examples/distill.py", *flags, "--output_dir", str(out), "--do_eval", "false",
                           "--teachers", str(run["out"] / "teachers"), "--push_to_hub", "--hub_dataset_id", DATASET_ID],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 1, proc.stderr[-3000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: Could not push dataset repo {DATASET_ID} to the Hub at http://127\.0\.0\.1:{port} \(\w+: .+\); "
                        rf"check the network, HF_ENDPOINT and your token\. Your files are kept in {re.escape(str(out))}/distilled\.",
                        last), last
    assert "Traceback" not in proc.stderr and SECRET not in proc.stdout + proc.stderr
    assert {"README.md", "distilled.safetensors", "data"} <= {p.name for p in (out / "distilled").iterdir()}
    assert not any(SECRET.encode() in p.read_bytes() for p in out.rglob("*") if p.is_file())


@pytest.fixture(scope="session")
def olah_cli() -> Path:
    """`olah-cli` from a cached venv of its own (olah pins web-server packages the project does not need)."""
    cli = OLAH_VENV / "bin" / "olah-cli"
    if shutil.which("git") is None:
        pytest.skip("git is not installed; olah serves repos from local git repositories")
    if not cli.exists():
        shutil.rmtree(OLAH_VENV, ignore_errors=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(OLAH_VENV)], check=True, capture_output=True, timeout=300)
            subprocess.run([str(OLAH_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "olah"], check=True,
                           capture_output=True, timeout=900)
        except (OSError, subprocess.SubprocessError) as error:
            shutil.rmtree(OLAH_VENV, ignore_errors=True)
            detail = getattr(error, "stderr", b"") or b""
            pytest.skip(f"olah (the local Hub mirror this test needs) could not be installed: {error} "
                        f"{detail.decode(errors='replace')[-300:]}")
    return cli


@pytest.fixture
def olah(olah_cli, run, tmp_path):
    """olah serving the recorded uploads on a free 127.0.0.1 port, offline; yields its URL."""
    port = free_port()
    config = tmp_path / "olah.toml"
    config.write_text(f'[basic]\nhost = "127.0.0.1"\nport = {port}\nrepos-path = "{tmp_path / "cache"}"\n'
                      f'mirror-netloc = "127.0.0.1:{port}"\nmirror-lfs-netloc = "127.0.0.1:{port}"\n'
                      f'mirrors-path = ["{run["mirrors"]}"]\n\n[accessibility]\noffline = true\n')
    log = open(tmp_path / "olah.log", "w")
    server = subprocess.Popen([str(olah_cli), "-c", str(config), "--log-path", str(tmp_path / "logs")], cwd=tmp_path,
                              stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/api/datasets/{DATASET_ID}/revision/main", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"olah did not start: {(tmp_path / 'olah.log').read_text()[-2000:]}")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


CONSUMER = """
import hashlib, json, re, sys
import numpy as np, timm, torch
from datasets import load_dataset
from huggingface_hub import hf_hub_download
import hf_distill

dataset_id, teachers_id, out, snippet_epochs = sys.argv[1:4] + [int(sys.argv[4])]
ds = load_dataset(dataset_id, split="train")
features, rows = ds.features, ds[:]
distilled = hf_distill.load_distilled(dataset_id)
teacher = timm.create_model("hf-hub:" + teachers_id, pretrained=True).eval()
x = distilled.images[:4]
args = hf_distill.DistillationArguments(output_dir=out, teachers="hf-hub:" + teachers_id, ipc=1, num_teachers=2,
                                        model_kwargs='{"net_width": 16}')
pool = hf_distill.DistillationTrainer(args).prepare_teachers()
card = open(hf_hub_download(dataset_id, "README.md", repo_type="dataset"), encoding="utf-8").read()
snippet = re.search(r"## Usage.*?```python\\n(.*?)```", card, re.S).group(1)
snippet_losses = []
for epochs in (1, snippet_epochs):  # one batch an epoch: the 1-epoch loss is that of the initial weights (seed 0)
    exec(re.sub(r"EPOCHS = \\d+", f"EPOCHS = {epochs}", snippet))
    snippet_losses.append(float(loss))
torch.set_grad_enabled(False)
print(json.dumps({
    "features": repr(features), "labels": rows["label"], "soft_labels": rows["soft_label"],
    "images": [np.asarray(im).tolist() for im in rows["image"]],
    "exact": hashlib.sha256(distilled.images.numpy().tobytes() + distilled.soft_labels.numpy().tobytes()).hexdigest(),
    "preprocessing": distilled.preprocessing.mean.tolist(),
    "teacher0": teacher(x).tolist(), "pool": [m(x).tolist() for m in pool], "snippet_losses": snippet_losses,
}))
"""


def test_load_dataset_over_real_http_from_olah(olah, run, tmp_path):
    env = {**os.environ, "HF_ENDPOINT": olah, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_CACHE": str(tmp_path / "ds")}
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-c", CONSUMER, DATASET_ID, TEACHERS_ID, str(tmp_path / "consumer"), str(SNIPPET_EPOCHS)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    remote = json.loads(proc.stdout.strip().splitlines()[-1])

    local = datasets.load_dataset(str(run["out"] / "distilled"), split="train", cache_dir=str(tmp_path / "local"))
    rows = local[:]
    assert remote["features"] == repr(local.features)
    assert remote["labels"] == rows["label"] and remote["soft_labels"] == rows["soft_label"]
    assert remote["images"] == [np.asarray(im).tolist() for im in rows["image"]]
    distilled = load_distilled(run["out"] / "distilled")
    exact = hashlib.sha256(distilled.images.numpy().tobytes() + distilled.soft_labels.numpy().tobytes()).hexdigest()
    assert remote["exact"] == exact and remote["preprocessing"] == distilled.preprocessing.mean.tolist()
    x = distilled.images[:4]
    teachers = run["trainer"].teachers
    assert torch.allclose(torch.tensor(remote["teacher0"]), teachers[0](x), atol=1e-6)
    assert all(torch.allclose(torch.tensor(r), t(x), atol=1e-6) for r, t in zip(remote["pool"], teachers))
    initial, final = remote["snippet_losses"]  # the card's snippet, run as printed, learns from the served set
    assert final < SNIPPET_MAX_LOSS_RATIO * initial, remote["snippet_losses"]
    served = load_file(run["mirrors"] / "models" / TEACHERS_ID / "model.safetensors")
    assert served.keys() == teachers[0].state_dict().keys()
