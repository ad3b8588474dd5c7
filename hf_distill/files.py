"""Atomic writes and checked reads: a folder or file appears complete under its final name, or not at all,
and a file that cannot be read raises one error that names it and the fix."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder to fill; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for file in tmp.rglob("*"):
        if file.is_file():
            _fsync(file)  # on disk before the rename, so a power cut cannot leave a complete-looking empty file
    if path.exists():
        shutil.rmtree(path)
    os.replace(tmp, path)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync(tmp)
    os.replace(tmp, path)


def write_json(path: str | os.PathLike, content: Any) -> None:
    """Write `content` as JSON to `path` atomically (temporary file, then rename)."""
    with atomic_file(path) as tmp:
        tmp.write_text(json.dumps(content, indent=2))


def save_tensors(tensors: dict[str, torch.Tensor], path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    """Write `tensors` (detached, on CPU, contiguous) to the safetensors file `path`."""
    save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, path, metadata=metadata)


def read_json(path: str | os.PathLike, fix: str) -> Any:
    """The JSON content of `path`; a missing or corrupt file raises a ValueError naming it and `fix`."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _unreadable(path, err, fix) from err


def read_tensors(path: str | os.PathLike, fix: str) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file; a missing, truncated or corrupt file raises a ValueError naming it and `fix`."""
    try:
        return load_file(path)
    except (OSError, SafetensorError) as err:
        raise _unreadable(path, err, fix) from err


def check_tensors_file(path: str | os.PathLike, fix: str) -> None:
    """Raise like `read_tensors` if a safetensors file is missing or truncated, reading only its header."""
    try:
        with safe_open(path, framework="pt"):
            pass
    except (OSError, SafetensorError) as err:
        raise _unreadable(path, err, fix) from err


def _unreadable(path: str | os.PathLike, err: Exception, fix: str) -> ValueError:
    return ValueError(f"{path} is missing, truncated or corrupt ({err}). {fix}")


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())
