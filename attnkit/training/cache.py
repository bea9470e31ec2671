"""The token cache of `attnkit train`: the training file read as a stream, the tokenizer trained on it (unless one is
given), its label set fitted, and every example tokenized once into item files (attnkit.data.item_files), so that
memory does not grow with the file. The cache sits in data.cache (default OUT.corpus beside the output) with a
manifest of what it was made from: the file (its path, size and modification time), the data and task settings, the
tokenizer and the label set. A later run reuses it when those are the same and its first examples encode as the
cached ones do (a model setting that changes the tokens, a family's start token, shows there; one that does not, a
dropout, costs no rebuild); anything else rebuilds it. A build goes into a folder of its own (CACHE.partial-PID)
that replaces the old cache only once complete, so that a killed tokenization leaves no half cache; a Ctrl-C removes
it, and the next build removes a killed one's."""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import hashlib
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from attnkit.config import ModelConfig, to_dict
from attnkit.data.item_files import Items, write_items
from attnkit.data.tokenizer import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import UNDONE_ON_CTRL_C, write_json
from attnkit.tasks import Task, make_task
from attnkit.training.records import HEARTBEAT_SECONDS

MANIFEST_FILE = "manifest.json"
TRAIN_DIR = "train"
PARTIAL = ".partial-"  # a build under way (or killed) writes into CACHE.partial-PID beside the cache
CHUNK = 4096  # examples tokenized at a time
SAMPLE = 64  # the first examples, encoded again, that show a cache's tokens are this run's
# what changes neither the tokens nor the labels: the training file as named (its stamp says which file it is), a
# DatasetDict's other splits, where the cache goes
NOT_IN_KEY = ("train", "dev", "test", "cache")


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
    check: Callable[[Task], None],
    say: Callable[[str], None],
) -> Tokenized:
    """The cached tokenization of `train_file` for this run, made if the cache holds no such one. The examples
    data.dev_fraction and data.test_fraction hold out (drawn with `split_seed`) teach neither the tokenizer nor the
    label set. `tokenizer`: the one given (an init checkpoint's, the resumed run's, tokenizer.path's), else one is
    trained on the file with run.tokenizer's settings and `specials`; `model_config(tokenizer)`: the model's
    configuration; `state`: the resumed task's (else fitted on the training examples); `check(task)` refuses dev
    and test data the fitted task cannot score, before the file is tokenized."""
    cache, data = cache_folder(run), run.data
    _refuse_a_cache_in_the_output(cache, Path(run.out))
    fractions = data.dev_fraction, data.test_fraction
    key = {  # what the tokens and labels follow from, besides the tokenizer and the label set
        "train": stamp(Path(train_file)),
        "split_seed": split_seed if any(fractions) else None,
        "task": run.task.name,
        "data": {k: v for k, v in to_dict(data).items() if k not in NOT_IN_KEY},
    }
    key = json.loads(json.dumps(key))  # as the manifest reads back
    trained_with = None if tokenizer is not None else {"settings": to_dict(run.tokenizer), "specials": specials}
    if _reusable(
        cache, key, tokenizer, json.loads(json.dumps(trained_with)), state, shape, run, train_file, model_config
    ):
        manifest = _read_manifest(cache)
        held_out = held_out_indices(Items(cache / TRAIN_DIR).count, *fractions, split_seed)
        return Tokenized(cache, manifest["state"], False, held_out)
    if cache.exists() and not _holds_only_a_cache(cache):
        kind = "a folder that holds other files" if cache.is_dir() else "a file"
        raise AttnkitError(
            f"{cache}: data.cache names {kind}; attnkit writes its token cache only into a new folder or one it wrote "
            "(choose another data.cache)"
        )
    _remove_killed_builds(cache)
    building = cache.parent / f"{cache.name}{PARTIAL}{os.getpid()}"
    count = sum(1 for _ in _told(shape.stream(data, train_file), "counting", say)) if any(fractions) else 0
    held_out = held_out_indices(count, *fractions, split_seed)
    keep = None
    if held_out["train"] is not None:
        keep = np.zeros(count, bool)
        keep[held_out["train"]] = True
    made = [folder for folder in (building, *building.parents) if not folder.exists()]

    def undo() -> None:  # the build's folder, and the folders above it that it made (runs/ of runs/model.corpus)
        shutil.rmtree(building, ignore_errors=True)
        for folder in made[1:]:
            with contextlib.suppress(OSError):
                folder.rmdir()

    UNDONE_ON_CTRL_C.append(undo)
    try:
        building.mkdir(parents=True)
        source = Source(run, shape, train_file, keep, say)
        state = _write_items(building, source, tokenizer, specials, model_config, state, check, key, trained_with)
        _put_in_place(building, cache)
    except BaseException:
        undo()
        raise
    finally:
        UNDONE_ON_CTRL_C.remove(undo)
    return Tokenized(cache, state, True, held_out)


@dataclasses.dataclass
class Source:
    """The training file of a run, read as a stream: whole, or only the examples `keep` marks (the rest are held
    out), each pass told of through `say`."""

    run: object
    shape: type[Task]
    train_file: str
    keep: np.ndarray | None
    say: Callable[[str], None]

    def examples(self, doing: str, kept: bool = True) -> Iterator:
        examples = _told(self.shape.stream(self.run.data, self.train_file), doing, self.say)
        if not kept or self.keep is None:
            return examples
        keep = self.keep
        return (e for i, e in enumerate(examples) if keep[i])


def _write_items(
    building: Path,
    source: Source,
    tokenizer: Tokenizer | None,
    specials: list[str],
    model_config: Callable[[Tokenizer], ModelConfig],
    state: dict | None,
    check: Callable[[Task], None],
    key: dict,
    trained_with: dict | None,
) -> dict:
    """The cache's files in `building`: its tokenizer (trained here if none is given), the training items and the
    manifest; returns the task's state (its labels, fitted here if not given)."""
    run = source.run
    if tokenizer is None:
        texts = source.shape.tokenizer_texts(source.examples("training the tokenizer"))
        tokenizer = Tokenizer.train(texts, run.tokenizer, specials)
    tokenizer.save(building / TOKENIZER_FILE)
    tokenizer = Tokenizer.load(building / TOKENIZER_FILE)  # as later runs read it
    task = make_task(run.task, run.data, tokenizer, model_config(tokenizer), state)
    if state is None:
        met: list[AttnkitError] = []
        try:
            task.fit(_passing(source.examples("reading the labels"), met))
        except AttnkitError as error:
            if met:  # a bad row, said as the reader said it
                raise
            raise AttnkitError(f"{run.data.train}: {error}") from None  # what the file as a whole lacks: a label
    check(task)
    examples = chunks(source.examples("tokenizing", kept=False), CHUNK)
    write_items(building / TRAIN_DIR, (task.encode(chunk, training=True) for chunk in examples), task.size)
    built = {"tokenizer": _fingerprint(tokenizer), "trained_with": trained_with}
    write_json(building / MANIFEST_FILE, {"key": key, **built, "state": task.state()})
    return task.state()


def _reusable(cache, key, tokenizer, trained_with, state, shape, run, train_file, model_config) -> bool:
    """Whether the cache holds this run's tokens: made from the same file and settings, with the same tokenizer
    (the one given, the resumed run's too, or one trained the same way) and label set, whole, and its first examples
    are what this run's task encodes of them."""
    manifest = _read_manifest(cache)
    if manifest is None or manifest["key"] != key:
        return False
    if (manifest["tokenizer"] if tokenizer is not None else manifest["trained_with"]) != (
        _fingerprint(tokenizer) if tokenizer is not None else trained_with
    ):
        return False
    if state is not None and manifest["state"] != state:
        return False
    try:  # a damaged cache (a file deleted or cut short) is rebuilt
        cached = Tokenizer.load(cache / TOKENIZER_FILE)
        items = Items(cache / TRAIN_DIR)
        task = make_task(run.task, run.data, cached, model_config(cached), manifest["state"])
        sample = [e for _, e in zip(range(SAMPLE), shape.stream(run.data, train_file))]
        return task.encode(sample, training=True) == [items[i] for i in range(len(sample))]
    except AttnkitError:
        return False


def _put_in_place(building: Path, cache: Path) -> None:
    """The complete build as the cache: an old cache is renamed aside first and removed after, so that a kill
    leaves one whole cache or the other."""
    old = cache.parent / f"{cache.name}{PARTIAL}{os.getpid()}-old"
    if cache.exists():
        os.replace(cache, old)
    os.replace(building, cache)
    shutil.rmtree(old, ignore_errors=True)


def _remove_killed_builds(cache: Path) -> None:
    """The partial folders of builds whose process is gone (another run may be building into the same cache)."""
    for partial in cache.parent.glob(glob.escape(cache.name) + PARTIAL + "*"):
        pid = partial.name[len(cache.name) + len(PARTIAL) :].removesuffix("-old")
        if not pid.isdigit() or not _alive(int(pid)):
            shutil.rmtree(partial, ignore_errors=True)


def _alive(pid: int) -> bool:
    if sys.platform == "win32":  # os.kill would end it there: a partial folder is left to its owner
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _refuse_a_cache_in_the_output(cache: Path, out: Path) -> None:
    cache, out = cache.resolve(), out.resolve()
    if cache == out or out in cache.parents or cache in out.parents:
        raise AttnkitError(
            f"{cache}: data.cache must lie outside the output directory {out} (and hold it not): the default is "
            "OUT.corpus beside it"
        )


def _told(examples: Iterable, what: str, say: Callable[[str], None]) -> Iterator:
    """`examples`, with a line every HEARTBEAT_SECONDS of how many have gone by: a file of millions takes minutes
    to read, and each pass says what it is for."""
    last = time.monotonic()
    for done, example in enumerate(examples, start=1):
        yield example
        if time.monotonic() - last >= HEARTBEAT_SECONDS:
            say(f"{what}: {done:,} examples read")
            last = time.monotonic()


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


def _holds_only_a_cache(cache: Path) -> bool:  # a cache made by attnkit (a partial one too)
    ours = {MANIFEST_FILE, TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, TRAIN_DIR}
    return cache.is_dir() and all(entry.name in ours for entry in cache.iterdir())


def _read_manifest(cache: Path) -> dict | None:
    try:
        manifest = json.loads((cache / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    wanted = {"key", "trained_with", "tokenizer", "state"}
    return manifest if isinstance(manifest, dict) and wanted <= set(manifest) else None
