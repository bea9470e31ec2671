"""File names of a checkpoint directory and the helpers that write them: JSON in and out, and directories that
appear whole (written beside their place and renamed into it), so that a crash never leaves half a checkpoint.

A leaf module: checkpoints, training, pretraining and the Hugging Face interop all write through it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from attnkit.data.readers import read_text
from attnkit.errors import AttnkitError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_DIR = "trainer_state"  # beside the weights of a training run: what --resume reads
STATE_FILE = "state.json"  # in STATE_DIR
ONNX_FILE = "onnx.json"  # what `attnkit export --onnx` wrote
FORMAT = "attnkit"  # the "format" of config.json and state.json; a Hugging Face config.json has none


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary directory beside `path`; when the block succeeds it replaces `path`."""
    path = Path(path)
    if path.exists() and not replaceable(path):
        raise AttnkitError(f"{path}: exists and is not an attnkit checkpoint; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        _default_permissions(tmp)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _default_permissions(directory: Path) -> None:
    """mkdtemp makes a private directory; a checkpoint gets the permissions of any other new directory."""
    umask = current_umask()
    directory.chmod(0o777 & ~umask)
    for file in directory.rglob("*"):
        file.chmod((0o777 if file.is_dir() else 0o666) & ~umask)


def current_umask() -> int:
    """The process's umask (reading it means setting it: set it back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def replaceable(path: Path) -> bool:
    """An existing directory may be replaced only if it is empty or an attnkit checkpoint."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    for marker in (CONFIG_FILE, STATE_FILE, ONNX_FILE):
        try:
            if json.loads((path / marker).read_text()).get("format") == FORMAT:
                return True
        except (OSError, ValueError, AttributeError):
            pass
    return False


def read_json(file: Path) -> object:
    text = read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AttnkitError(f"{file}:{error.lineno}: invalid JSON ({error.msg})") from None


def write_json(file: Path, data: object) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
