"""Files as attnkit reads and writes them: text read as UTF-8 with errors that name the line, JSON in and out, the
file names of a checkpoint directory, the one rule for where a command may write (`check_output`), and directories
that appear whole (written beside their place and renamed into it), so that a crash never leaves half a checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import safetensors

from attnkit.errors import AttnkitError

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
GENERATION_FILE = "generation_config.json"  # a checkpoint's generation defaults, as transformers writes them
STATE_DIR = "trainer_state"  # beside the weights of a training run: what --resume reads
STATE_FILE = "state.json"  # in STATE_DIR
ONNX_FILE = "onnx.json"  # what `attnkit export --onnx` wrote
REPORT_FILE = "report.json"  # an evaluation report (attnkit evaluate --report): its metrics
LOG_FILE = "log.jsonl"  # a run's reports, evaluations, data and summary, a JSON object a line
FORMAT = "attnkit"  # the "format" of config.json and state.json; a Hugging Face config.json has none
# what removes a folder being written (a token cache's build): the `attnkit` command, which ends at once on Ctrl-C,
# calls these first (attnkit.__main__); everywhere else the writer's own `except` does
UNDONE_ON_CTRL_C: list = []


def read_text(path: str | os.PathLike) -> str:
    """A whole UTF-8 file; errors say which line holds a bad byte, and an empty file is an error."""
    path = Path(path)
    if not path.exists():
        raise AttnkitError(f"{path}: no such file")
    if not path.is_file():
        raise AttnkitError(f"{path}: not a file")
    text = decode(path.read_bytes(), str(path))
    if not text.strip():
        raise AttnkitError(f"{path}: empty file")
    return text.removeprefix("\ufeff")


def decode(data: bytes, where: str) -> str:
    """UTF-8 `data` read from `where` (a file, standard input) as text; a bad byte is an error naming its line."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise AttnkitError(f"{where}:{line}: not valid UTF-8 (byte 0x{data[error.start]:02x})") from None


def check_output(path: str | os.PathLike, overwrite: bool, hint: str = "pass --overwrite to replace it") -> None:
    """Whether a command may write `path`: a new path or an empty directory, always; an attnkit directory (a
    checkpoint, an export), with `overwrite`; anything else, never: a user's own files are not attnkit's to
    replace. `hint` says what to do when `path` exists and `overwrite` is not given."""
    path = Path(path)
    if not path.exists() or (path.is_dir() and not any(path.iterdir())):
        return
    if not replaceable(path):
        raise AttnkitError(f"{path}: exists and is not an attnkit checkpoint; refusing to overwrite it")
    if not overwrite:
        raise AttnkitError(f"{path}: already exists; {hint}")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yields an empty temporary directory beside `path`; when the block succeeds it replaces `path`."""
    path = Path(path)
    check_output(path, overwrite=True)
    with write_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        recover(path)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        try:
            yield tmp
            _default_permissions(tmp)
            sync(*sorted(tmp.rglob("*")), tmp)  # on the disk before the rename: a power cut leaves old or new
            if path.exists():
                old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
                os.replace(path, old / path.name)
                os.replace(tmp, path)
                shutil.rmtree(old)
            else:
                os.replace(tmp, path)
            sync(path.parent)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def recover(path: Path) -> None:
    """Tidy what a process killed inside `atomic_directory` left beside `path`: a version put aside while the new
    one was renamed into place goes back if the new one never arrived; unfinished temporary copies go."""
    ours = re.compile(rf"\.{re.escape(path.name)}\.[a-z0-9_]{{8}}\.(old|tmp)")  # as mkdtemp names them below
    for left in sorted(path.parent.iterdir(), key=lambda p: not p.name.endswith(".old")):  # .old ones first
        if not ours.fullmatch(left.name):
            continue
        if left.name.endswith(".old") and not path.exists() and (left / path.name).exists():
            os.replace(left / path.name, path)
        shutil.rmtree(left, ignore_errors=True)


@contextlib.contextmanager
def write_errors(path: Path) -> Iterator[None]:
    """A write that fails (a full disk, a lost mount) becomes one line naming `path` and what is left of it."""
    try:
        yield
    except (OSError, safetensors.SafetensorError) as error:
        kept = "the previous one is unchanged" if path.exists() else "nothing was written"
        raise AttnkitError(
            f"{path}: could not be written ({getattr(error, 'strerror', None) or error}); {kept}"
        ) from None


def sync(*paths: Path) -> None:
    """fsync files and directories (a directory's entries: that a rename in it happened)."""
    for path in paths:
        if path.is_dir() and not hasattr(os, "O_DIRECTORY"):
            continue  # Windows cannot open a directory
        descriptor = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if path.is_dir() else 0))
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)


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
    """An existing directory may be replaced only if it is empty or attnkit's (a checkpoint, an export, a report)."""
    if not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    for marker in (CONFIG_FILE, STATE_FILE, ONNX_FILE, REPORT_FILE):
        try:
            written = read_json(path / marker)
        except AttnkitError:
            continue
        if isinstance(written, dict) and written.get("format") == FORMAT:
            return True
    return False


def read_json(file: Path) -> object:
    text = read_text(file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise AttnkitError(f"{file}:{error.lineno}: invalid JSON ({error.msg}, column {error.colno})") from None


def write_json(file: Path, data: object) -> None:
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
