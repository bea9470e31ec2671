"""Small learnable data sets written to temporary directories, tiny model settings, and the run configurations
built from them, shared by the tests."""

import random
from pathlib import Path

import pytest

from attnkit import RunConfig

TINY = [
    "model.dim=32",
    "model.num_heads=2",
    "model.ff_dim=64",
    "model.num_layers=1",
    "model.dropout=0.0",
    "tokenizer.vocab_size=200",
    "tokenizer.min_frequency=1",
    "train.warmup_steps=5",
    "train.lr=3e-3",
    "train.batch_tokens=512",
    "train.log_every=5",
]
PRETRAIN_SETTINGS = [
    "model.dim=32",
    "model.num_heads=2",
    "model.ff_dim=64",
    "model.num_layers=1",
    "model.dropout=0.0",
    "tokenizer.kind=word",
    "tokenizer.vocab_size=100",
    "tokenizer.min_frequency=1",
    "data.max_length=16",
    "train.lr=3e-3",
    "train.warmup_steps=5",
    "train.batch_tokens=512",
    "train.patience=null",
]
WORDS = "red green blue small large quick slow happy sad bright dark soft loud warm cold".split()


def sentiment_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """The label is "good" if the sentence holds "happy", "bad" if it holds "sad": learnable in seconds."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        label = "good" if i % 2 else "bad"
        words = rng.sample([w for w in WORDS if w not in ("happy", "sad")], rng.randint(3, 8))
        words.insert(rng.randrange(len(words) + 1), "happy" if label == "good" else "sad")
        rows.append((label, " ".join(words)))
    return rows


TAG_OF = {w: ("ADJ" if i % 3 == 0 else "NOUN" if i % 3 == 1 else "VERB") for i, w in enumerate(WORDS)}


def tagging_sentences(count: int, seed: int) -> list[list[tuple[str, str]]]:
    """Each word's tag is fixed by the word itself (its "part of speech")."""
    rng = random.Random(seed)
    return [[(w, TAG_OF[w]) for w in rng.choices(WORDS, k=rng.randint(2, 9))] for _ in range(count)]


def copy_pairs(count: int, seed: int) -> list[tuple[str, str]]:
    """The target repeats the source: short sequences, learnable by a one-layer model."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        words = " ".join(rng.choices(WORDS[:6], k=rng.randint(1, 4)))
        pairs.append((words, words))
    return pairs


def write_tsv(path: Path, header: tuple[str, str], rows: list[tuple[str, str]]) -> Path:
    path.write_text("\t".join(header) + "\n" + "".join(f"{a}\t{b}\n" for a, b in rows), encoding="utf-8")
    return path


def write_conll(path: Path, sentences: list[list[tuple[str, str]]]) -> Path:
    path.write_text("".join("".join(f"{w}\t{t}\n" for w, t in s) + "\n" for s in sentences), encoding="utf-8")
    return path


@pytest.fixture
def sentiment_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_tsv(tmp_path / "train.tsv", ("label", "text"), sentiment_rows(200, 1)),
        "dev": write_tsv(tmp_path / "dev.tsv", ("label", "text"), sentiment_rows(40, 2)),
    }


@pytest.fixture
def tagging_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_conll(tmp_path / "train.conll", tagging_sentences(200, 1)),
        "dev": write_conll(tmp_path / "dev.conll", tagging_sentences(40, 2)),
    }


@pytest.fixture
def copy_files(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_tsv(tmp_path / "train.tsv", ("source", "target"), copy_pairs(300, 1)),
        "dev": write_tsv(tmp_path / "dev.tsv", ("source", "target"), copy_pairs(30, 2)),
    }


def run_config(files: dict, out: Path, task: str = "classify", *extra: str) -> RunConfig:
    """A tiny run of `task` on `files` (train and dev), writing to `out`."""
    overrides = [f"task.name={task}", f"data.train={files['train']}", f"data.dev={files['dev']}", f"out={out}"]
    return RunConfig.from_values({}, "test", overrides + TINY + list(extra))


def corpus(directory: Path) -> str:
    """A folder of two text files of a tiny repetitive language."""
    directory.mkdir()
    words = "the cat sat on the mat and the dog sat on the log".split()
    for part in range(2):
        lines = [" ".join(words[(i + j) % len(words)] for j in range(8)) for i in range(300)]
        (directory / f"part{part}.txt").write_text("\n".join(lines) + "\n")
    return str(directory)


def pretrain_config(text: str, out: Path, arch: str, *extra: str) -> RunConfig:
    """A tiny pretraining run of `arch` on the text folder `text`, writing to `out`."""
    return RunConfig.from_values(
        {},
        "test",
        ["task.name=pretrain", f"model.arch={arch}", f"data.train={text}", f"out={out}", *PRETRAIN_SETTINGS, *extra],
    )
