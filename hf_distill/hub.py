"""Talking to the Hugging Face Hub: push a folder as a repo, download a repo (safetensors and text only), provenance."""

from __future__ import annotations

import os
import re
from pathlib import Path

from huggingface_hub import DatasetCard, HfApi, constants, get_token, snapshot_download
from huggingface_hub.errors import HTTPError

HUB_PREFIX = "hf-hub:"
UNKNOWN_LICENSE = "unknown"
# Only weights in safetensors, JSON configs and cards are ever downloaded: never pickles, never code.
SAFE_PATTERNS = ["*.safetensors", "*.json", "*.md"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class HubError(RuntimeError):
    """A push to or download from the Hub failed; the message says why and what to do."""


def is_repo_id(text: str) -> bool:
    """Whether `text` has the shape of a Hub repo id, "org/name"."""
    return bool(_REPO_ID.match(text)) and ".." not in text


def _reason(error: Exception, token: str | None) -> str:
    """The error's type and first line, with the token masked in case a server echoed it."""
    text = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else 'no details'}"
    return text.replace(token, "***") if token else text


def require_token(token: str | None, folder: str | os.PathLike) -> str:
    """`token`, else the logged-in one (`hf auth login`) or `HF_TOKEN`; raise `HubError` if there is none."""
    token = token or get_token()
    if not token:
        raise HubError(f"Could not push to the Hub: no token found; run `hf auth login` or set HF_TOKEN. "
                       f"Your files are kept in {folder}.")
    return token


def push_folder(folder: str | os.PathLike, repo_id: str, repo_type: str, private: bool = False,
                token: str | None = None, commit_message: str = "Upload with hf-distill",
                delete_patterns: list[str] | None = None) -> str:
    """Create the Hub repo `repo_id` if needed and upload `folder` to it; return the repo URL.

    Args:
        folder (`str` or `os.PathLike`): the folder to upload; it is never modified.
        repo_id (`str`): "org/name".
        repo_type (`str`): "dataset" or "model".
        private (`bool`, *optional*, defaults to `False`): create the repo as private.
        token (`str`, *optional*): defaults to the logged-in token (`hf auth login`) or `HF_TOKEN`.
        delete_patterns (`list[str]`, *optional*): files of the repo matching these that the folder no longer has are
            deleted in the same commit (e.g. parquet shards of an earlier push with another shard count).

    Raises:
        `HubError`: one sentence naming the problem (no token, network, HTTP error) and where the files are kept.
    """
    token = require_token(token, folder)
    extra = {"delete_patterns": delete_patterns} if delete_patterns else {}
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
        api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type=repo_type, commit_message=commit_message,
                          **extra)
    except (HTTPError, OSError) as error:
        raise HubError(f"Could not push {repo_type} repo {repo_id} to the Hub at {api.endpoint} "
                       f"({_reason(error, token)}); check the network, HF_ENDPOINT and your token. "
                       f"Your files are kept in {folder}.") from None
    return str(url)


def download_repo(repo_id: str, repo_type: str, revision: str | None = None,
                  allow_patterns: list[str] | None = None) -> Path:
    """Download (or reuse from the cache) the files of a Hub repo matching `allow_patterns`; return the folder."""
    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, revision=revision,
                                      allow_patterns=allow_patterns or SAFE_PATTERNS))
    except (HTTPError, OSError) as error:
        raise HubError(f"Could not download {repo_type} repo {repo_id} from {constants.ENDPOINT} "
                       f"({_reason(error, get_token())}); check the id, the network and HF_ENDPOINT, "
                       f"or pass a local folder.") from None


def dataset_provenance(dataset: str) -> dict:
    """`revision` (Hub commit), `license` and `url` of a dataset given as a Hub id or a local folder.

    A local folder's license comes from its README.md card; a Hub dataset's from its card on the Hub. Anything
    that cannot be found (offline, no card) is `None`, and the license is then "unknown".
    """
    facts = {"revision": None, "license": UNKNOWN_LICENSE, "url": None}
    if os.path.isdir(dataset):
        readme = Path(dataset) / "README.md"
        license = DatasetCard.load(readme).data.license if readme.exists() else None
        return {**facts, "license": license or UNKNOWN_LICENSE}
    if not is_repo_id(dataset):
        return facts
    try:
        info = HfApi().dataset_info(dataset)
    except (HTTPError, OSError):
        return facts
    license = info.card_data.license if info.card_data is not None else None
    return {"revision": info.sha, "license": license or UNKNOWN_LICENSE,
            "url": f"{constants.ENDPOINT}/datasets/{dataset}"}
