"""`attnkit pretrain`: raw text files or folders -> a tokenizer trained on them -> the text tokenized once into
memory-mapped token files -> a model pretrained on blocks of them (see attnkit.tasks.pretrain for the objectives).

The token files sit in a cache directory (data.cache, default OUT.corpus) with a manifest; a second run on the
same files and tokenizer settings reuses them. Reading is streamed, so memory does not grow with the corpus.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from attnkit import runtime
from attnkit.config import to_dict
from attnkit.data.token_files import DTYPES, token_dtype, token_suffix
from attnkit.data.tokenizer import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import write_json
from attnkit.training.cache import stamp
from attnkit.training.loop import train
from attnkit.training.prepare import special_tokens
from attnkit.training.run import RunConfig

HELD_OUT_SHARE, HELD_OUT_MAX = 0.01, 200_000  # without dev files: the corpus's last 1%, at most 200k tokens
SPLITS = ("train", "dev", "test")


def pretrain(run: RunConfig, *, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Pretrain as `run` says (data.train: a text file or a folder of .txt files; model.arch chooses the
    objective) and return the training summary, held-out perplexity included."""
    if not run.data.train:
        raise AttnkitError("data.train: no text given (a .txt file or a folder of them)")
    cache = Path(run.data.cache or f"{run.out}.corpus")
    files = {
        split: text_files(path) for split, path in zip(SPLITS, (run.data.train, run.data.dev, run.data.test)) if path
    }
    processes = runtime.start(run.train.device, run.train.strategy)[1]  # under torchrun, the first one writes
    token_files = processes.first_does(lambda: prepare_corpus(files, run, cache))
    data = dataclasses.replace(run.data, **token_files)
    tokenizer = dataclasses.replace(run.tokenizer, path=str(cache / TOKENIZER_FILE))
    run = dataclasses.replace(run, data=data, tokenizer=tokenizer)
    return train(run, resume=resume, overwrite=overwrite, quiet=quiet)


def text_files(path: str) -> list[Path]:
    """A .txt file, or every .txt file under a folder (sorted)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.exists():
        raise AttnkitError(f"{root}: no such file or folder")
    found = sorted(p for p in root.rglob("*.txt") if p.is_file())
    if not found:
        raise AttnkitError(f"{root}: no .txt files in this folder")
    return found


def lines(files: list[Path]) -> Iterator[str]:
    """The non-blank lines of `files`, read as a stream; a bad byte is reported with its file and line."""
    for file in files:
        with open(file, "rb") as f:
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8").strip()
                except UnicodeDecodeError as error:
                    raise AttnkitError(f"{file}:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x})") from None
                if line:
                    yield line


def prepare_corpus(files: dict[str, list[Path]], run: RunConfig, cache: Path) -> dict[str, str]:
    """Train the tokenizer and write the token files, unless the cache already holds them for these inputs."""
    manifest = {
        "files": {split: [entry for f in paths for entry in stamp(f)] for split, paths in files.items()},
        "tokenizer": to_dict(run.tokenizer),
        "special_tokens": special_tokens(run.model),  # their ids: a family's order (--preset mpnet) or attnkit's
    }
    if cache.exists() and not _holds_only_a_corpus(cache):
        kind = "a folder that holds other files" if cache.is_dir() else "a file"
        raise AttnkitError(
            f"{cache}: data.cache names {kind}; attnkit writes a corpus only into a new folder or one it wrote "
            "(choose another data.cache)"
        )
    if _read_manifest(cache) == manifest:
        return _outputs(cache, json.loads((cache / "manifest.json").read_text())["outputs"])
    if not next(lines(files["train"]), None):
        raise AttnkitError(f"{files['train'][0]}: empty corpus (no text in the training files)")
    created = not cache.exists()
    try:
        return _write_corpus(files, run, cache, manifest)
    except BaseException:  # a corpus that fails half-way (a bad byte in line 10,000) leaves no new folder behind
        if created:
            shutil.rmtree(cache, ignore_errors=True)
        raise


def _write_corpus(files: dict[str, list[Path]], run: RunConfig, cache: Path, manifest: dict) -> dict[str, str]:
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "manifest.json").unlink(missing_ok=True)  # the old token files are no longer what it describes
    if run.tokenizer.path:
        tokenizer = Tokenizer.load(run.tokenizer.path)
    else:
        tokenizer = Tokenizer.train(lines(files["train"]), run.tokenizer, special_tokens(run.model))
    tokenizer.save(cache / TOKENIZER_FILE)
    suffix = token_suffix(tokenizer.vocab_size)
    outputs = {}
    for split, paths in files.items():
        outputs[split] = f"{split}{suffix}"
        write_tokens(paths, tokenizer, cache / outputs[split])
    if "dev" not in files:
        outputs["dev"] = f"dev{suffix}"
        split_off_tail(cache / outputs["train"], cache / outputs["dev"])
    write_json(cache / "manifest.json", {**manifest, "outputs": outputs})
    return _outputs(cache, outputs)


def write_tokens(files: list[Path], tokenizer: Tokenizer, out: Path) -> int:
    """Append each line's ids and </s> to `out`, a flat array of uint16 (or uint32) ids; returns the count."""
    dtype = token_dtype(out)
    count = 0
    with open(out, "wb") as f:
        batch: list[str] = []
        for line in (*lines(files), None):
            if line is not None:
                batch.append(line)
            if batch and (line is None or len(batch) == 2048):
                for ids in tokenizer.encode_batch(batch):
                    np.asarray([*ids, tokenizer.eos_id], dtype=dtype).tofile(f)
                    count += len(ids) + 1
                batch = []
    return count


def split_off_tail(train: Path, dev: Path) -> None:
    """Move the last HELD_OUT_SHARE of the training tokens (at most HELD_OUT_MAX) into a dev file."""
    ids = np.memmap(train, dtype=token_dtype(train), mode="r")
    keep = len(ids) - min(max(int(len(ids) * HELD_OUT_SHARE), 2), HELD_OUT_MAX)
    np.asarray(ids[keep:]).tofile(dev)
    size = keep * ids.itemsize
    del ids
    os.truncate(train, size)


def _holds_only_a_corpus(cache: Path) -> bool:
    """Whether `cache` is a folder of nothing but what `_write_corpus` writes (a half-written corpus too)."""
    ours = {
        "manifest.json",
        TOKENIZER_FILE,
        TOKENIZER_CONFIG_FILE,
        *(f"{split}{suffix}" for split in SPLITS for suffix in DTYPES),
    }
    return cache.is_dir() and all(entry.name in ours for entry in cache.iterdir())


def _read_manifest(cache: Path) -> dict | None:
    try:
        manifest = json.loads((cache / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    manifest.pop("outputs", None)
    return manifest


def _outputs(cache: Path, outputs: dict[str, str]) -> dict[str, str]:
    return {split: str(cache / name) for split, name in outputs.items()}
