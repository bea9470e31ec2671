"""The token cache of `attnkit train`: the training file read as a stream, the tokenizer trained on it (unless one is
given), its label set fitted, and every example tokenized once into item files (attnkit.data.item_files), so that
memory does not grow with the file. The cache sits in data.cache (default OUT.corpus beside the output) with a
manifest of what it was made from: the files' paths, sizes and modification times, the tokenizer, the task's and
model's settings. A later run that would make the same reuses it; any change rebuilds it. The manifest is written
last, and a build goes into a folder of its own that replaces the old one only once complete, so that a killed
tokenization leaves no half cache (its partial folder is deleted by the next build)."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from attnkit.config import ModelConfig, to_dict
from attnkit.data.item_files import Items, write_items
from attnkit.data.tokenizer import TOKENIZER_FILE, Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import write_json
from attnkit.tasks import Task, make_task
from attnkit.training.records import HEARTBEAT_SECONDS

MANIFEST_FILE = "manifest.json"
TRAIN_DIR = "train"
PARTIAL = ".partial-"  # a build under way (or killed) writes into CACHE.partial-PID beside the cache
CHUNK = 4096  # examples tokenized at a time
# what changes neither the tokens nor the labels: reading a DatasetDict's other splits, where the cache goes
NOT_IN_KEY = ("dev", "test", "cache")


@dataclasses.dataclass
class Tokenized:
    """A training file as the cache holds it: in `folder`, every example's items (TRAIN_DIR) and the tokenizer;
    the task's state (its labels), and which examples train."""

    folder: Path
    state: dict
    made: bool  # by this run (else made before, from the same file and settings)
    held_out: dict[str, np.ndarray | None]  # the examples that train (None: all) and those held out as dev, test


def cache_folder(run) -> Path:
    return Path(run.data.cache or f"{run.out}.corpus")


def tokenized(
    run,
    shape: type[Task],
    train_file: str,
    split_seed: int,
    tokenizer: Tokenizer | None,
    specials: list[str],
    model_config: Callable[[Tokenizer], ModelConfig],
    state: dict | None,
    say: Callable[[str], None],
) -> Tokenized:
    """The cached tokenization of `train_file` for this run, made if the cache holds no such one. The examples
    data.dev_fraction and data.test_fraction hold out (drawn with `split_seed`) teach neither the tokenizer nor the
    label set. `tokenizer`: the one given (an init checkpoint's, the resumed run's, tokenizer.path's), else one is
    trained on the file with run.tokenizer's settings and `specials`; `model_config(tokenizer)`: the model's
    configuration; `state`: the resumed task's (else fitted on the training examples)."""
    cache, data = cache_folder(run), run.data
    fractions = data.dev_fraction, data.test_fraction
    key = {  # what the tokens and labels follow from, besides the tokenizer, the model and the label set
        "train": stamp(Path(train_file)),
        "split_seed": split_seed if any(fractions) else None,
        "task": to_dict(run.task),
        "data": {k: v for k, v in to_dict(data).items() if k not in NOT_IN_KEY},
    }
    key = json.loads(json.dumps(key))  # as the manifest reads back
    trained_with = None if tokenizer is not None else {"settings": to_dict(run.tokenizer), "specials": specials}
    manifest = _read_manifest(cache)
    if manifest is not None and (
        manifest["key"] == key
        and (  # the same tokenizer: the one given (the resumed run's too), or one trained the same way
            manifest["tokenizer"] == _fingerprint(tokenizer)
            if tokenizer is not None
            else manifest["trained_with"] == json.loads(json.dumps(trained_with))
        )
        and (state is None or manifest["state"] == state)
        and manifest["model"] == json.loads(json.dumps(to_dict(model_config(Tokenizer.load(cache / TOKENIZER_FILE)))))
    ):
        held_out = held_out_indices(Items(cache / TRAIN_DIR).count, *fractions, split_seed)
        return Tokenized(cache, manifest["state"], False, held_out)
    if cache.exists() and not _holds_only_a_cache(cache):
        kind = "a folder that holds other files" if cache.is_dir() else "a file"
        raise AttnkitError(
            f"{cache}: data.cache names {kind}; attnkit writes its token cache only into a new folder or one it wrote "
            "(choose another data.cache)"
        )
    for partial in cache.parent.glob(f"{cache.name}{PARTIAL}*"):  # a killed build's
        shutil.rmtree(partial, ignore_errors=True)
    building = cache.parent / f"{cache.name}{PARTIAL}{os.getpid()}"
    count = sum(1 for _ in _told(shape.stream(data, train_file), "counting", say)) if any(fractions) else 0
    held_out = held_out_indices(count, *fractions, split_seed)
    keep = None
    if held_out["train"] is not None:
        keep = np.zeros(count, bool)
        keep[held_out["train"]] = True
    made = [folder for folder in (building, *building.parents) if not folder.exists()]  # removed if it fails
    try:
        building.mkdir(parents=True)

        def kept() -> Iterator:
            examples = shape.stream(data, train_file)
            return examples if keep is None else (e for i, e in enumerate(examples) if keep[i])

        if tokenizer is None:
            tokenizer = _trained_on(shape.tokenizer_texts(_told(kept(), "training the tokenizer", say)), run, specials)
        tokenizer.save(building / TOKENIZER_FILE)
        tokenizer = Tokenizer.load(building / TOKENIZER_FILE)  # as later runs read it
        model = model_config(tokenizer)
        task = make_task(run.task, data, tokenizer, model, state)
        if state is None:
            met: list[AttnkitError] = []
            try:
                task.fit(_passing(_told(kept(), "reading the labels", say), met))
            except AttnkitError as error:
                if met:  # a bad row, said as the reader said it
                    raise
                raise AttnkitError(f"{data.train}: {error}") from None  # what the file as a whole lacks: a label
        examples = chunks(_told(shape.stream(data, train_file), "tokenizing", say), CHUNK)
        write_items(building / TRAIN_DIR, (task.encode(chunk, training=True) for chunk in examples), task.size)
        built = {"tokenizer": _fingerprint(tokenizer), "trained_with": trained_with, "model": to_dict(model)}
        write_json(building / MANIFEST_FILE, {"key": key, **built, "state": task.state()})
        if cache.exists():
            shutil.rmtree(cache)
        os.replace(building, cache)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        for folder in made[1:]:  # the folders above it that this build made (runs/ of runs/model.corpus)
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return Tokenized(cache, task.state(), True, held_out)


def _told(examples: Iterable, what: str, say: Callable[[str], None]) -> Iterator:
    """`examples`, with a line every HEARTBEAT_SECONDS of how many have gone by: a file of millions takes minutes
    to read, and each pass says what it is for."""
    last = time.monotonic()
    for done, example in enumerate(examples, start=1):
        yield example
        if time.monotonic() - last >= HEARTBEAT_SECONDS:
            say(f"{what}: {done:,} examples read")
            last = time.monotonic()


def _trained_on(texts: Iterator[str], run, specials: list[str]) -> Tokenizer:
    """A tokenizer trained on `texts`; a mistake met reading them (a bad row) is said as the reader said it, not as
    the tokenizer library's failure to train."""
    met: list[AttnkitError] = []
    try:
        return Tokenizer.train(_passing(texts, met), run.tokenizer, specials)
    except AttnkitError:
        if met:
            raise met[0] from None
        raise


def _passing(items: Iterable, met: list[AttnkitError]) -> Iterator:
    """`items`, with the AttnkitError that reading them raises kept in `met`, for who consumes them to tell apart."""
    try:
        yield from items
    except AttnkitError as error:
        met.append(error)
        raise


def chunks(examples: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for example in examples:
        chunk.append(example)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def held_out_indices(count: int, dev_fraction: float | None, test_fraction: float | None, seed: int) -> dict:
    """Which of `count` examples train and which are held out as dev and test (None where a fraction is unset), at
    random (the same for the same seed, the order random.shuffle gives a list of them)."""
    if not dev_fraction and not test_fraction:
        return {"dev": None, "test": None, "train": None}  # every one, in the file's order
    order = np.arange(count, dtype=np.int64)
    rng = random.Random(seed)
    for i in reversed(range(1, count)):  # random.shuffle's draws, on an array: a list of millions would not fit
        j = rng.randrange(i + 1)
        order[i], order[j] = order[j], order[i]
    dev_count, test_count = (round(count * (f or 0)) for f in (dev_fraction, test_fraction))
    if count - dev_count - test_count < 1 or (dev_fraction and not dev_count) or (test_fraction and not test_count):
        raise AttnkitError(f"data: {count} examples are too few to hold out dev/test fractions")
    return {
        "dev": order[:dev_count] if dev_count else None,
        "test": order[dev_count : dev_count + test_count] if test_count else None,
        "train": order[dev_count + test_count :],
    }


def _fingerprint(tokenizer: Tokenizer) -> str:
    return hashlib.sha256(tokenizer.backend.to_str().encode()).hexdigest()


def stamp(path: Path) -> list:
    """What says a file (or each file of a datasets folder) is unchanged: its path, size and modification time."""
    if not path.exists():
        raise AttnkitError(f"{path}: no such file")
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    return [[str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns] for f in files]


def _holds_only_a_cache(cache: Path) -> bool:
    ours = {MANIFEST_FILE, TOKENIZER_FILE, TRAIN_DIR}
    return cache.is_dir() and all(entry.name in ours for entry in cache.iterdir())


def _read_manifest(cache: Path) -> dict | None:
    try:
        manifest = json.loads((cache / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    wanted = {"key", "trained_with", "tokenizer", "model", "state"}
    return manifest if isinstance(manifest, dict) and wanted <= set(manifest) else None
