"""Malformed variants of every data format a user gives `attnkit train` and `attnkit evaluate`, for every task shape:
each is either read (a BOM, CRLF line ends) or refused with exit code 2 and one line naming the file; never a
traceback, never an output directory for a refused file."""

import json
import random
from collections.abc import Callable

import pytest

from attnkit.apps.cli import main
from tests.conftest import TINY, copy_pairs, pair_rows, score_rows, sentiment_rows, tagging_sentences

FAST = [*TINY, "train.max_steps=1", "train.patience=null"]


def valid_files() -> dict[str, tuple[str, bytes]]:
    """A small valid file per format: (task, bytes)."""
    rows = sentiment_rows(30, 1)
    tagged = tagging_sentences(12, 1)
    return {
        "tsv": ("classify", ("label\ttext\n" + "".join(f"{label}\t{text}\n" for label, text in rows)).encode()),
        "csv": ("classify", ("label,text\n" + "".join(f'{label},"{text}"\n' for label, text in rows)).encode()),
        "jsonl": ("classify", "".join(json.dumps({"label": lab, "text": t}) + "\n" for lab, t in rows).encode()),
        "conll": ("tag", "\n".join("".join(f"{w}\t{t}\n" for w, t in s) for s in tagged).encode()),
        "pairs.tsv": (
            "seq2seq",
            ("source\ttarget\n" + "".join(f"{s}\t{t}\n" for s, t in copy_pairs(30, 1))).encode(),
        ),
        "two-texts.tsv": (
            "pair",
            ("text_a\ttext_b\tlabel\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in pair_rows(30, 1))).encode(),
        ),
        "scores.csv": ("regress", ("text,label\n" + "".join(f"{t},{n}\n" for t, n in score_rows(30, 1))).encode()),
    }


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def _at_a_line(change: Callable[[bytes, random.Random], bytes]) -> Callable[[bytes, random.Random], bytes]:
    def mutate(data: bytes, draw: random.Random) -> bytes:
        lines = _lines(data)
        i = draw.randrange(1, max(len(lines) - 1, 2))
        lines[i] = change(lines[i], draw)
        return b"\n".join(lines)

    return mutate


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncated": lambda data, draw: data[: draw.randrange(1, len(data))],
    "one column too few": _at_a_line(lambda line, draw: line.replace(b"\t", b" ").replace(b",", b" ")),
    "one column too many": _at_a_line(lambda line, draw: line + (b"\textra" if b"\t" in line else b",extra")),
    "invalid UTF-8": _at_a_line(lambda line, draw: line[: len(line) // 2] + b"\xff\xfe\xc3" + line[len(line) // 2 :]),
    "BOM": lambda data, draw: b"\xef\xbb\xbf" + data,
    "CRLF": lambda data, draw: data.replace(b"\n", b"\r\n"),
    "NUL byte": _at_a_line(lambda line, draw: line[:3] + b"\x00" + line[3:]),
    "empty": lambda data, draw: b"",
    "only blank lines": lambda data, draw: b"\n\n\n",
    "binary junk": lambda data, draw: bytes(draw.randrange(256) for _ in range(draw.randrange(1, 3000))),
    "junk appended": lambda data, draw: data + bytes(draw.randrange(256) for _ in range(200)),
    "empty field": _at_a_line(lambda line, draw: b"\t" + line.split(b"\t")[-1] if b"\t" in line else b'""'),
    "a lone quote": _at_a_line(lambda line, draw: b'"' + line),
    "a gigantic line": _at_a_line(lambda line, draw: line + bytes(draw.choice(b"abcdefgh") for _ in range(400_000))),
    "lines shuffled with the header": lambda data, draw: b"\n".join(draw.sample(_lines(data), len(_lines(data)))),
}
SEEDS = range(3)
CASES = [(form, name, seed) for form in valid_files() for name in MUTATIONS for seed in SEEDS]


def test_there_are_at_least_200_cases():
    assert len(CASES) >= 200


@pytest.mark.parametrize(("form", "mutation", "seed"), CASES, ids=lambda v: str(v).replace(" ", "-"))
def test_a_malformed_training_file_is_read_or_refused_in_one_line(tmp_path, capsys, form, mutation, seed):
    task, data = valid_files()[form]
    suffix = form.split(".")[-1] if form != "conll" else "conll"
    bad = tmp_path / f"train.{suffix}"
    bad.write_bytes(MUTATIONS[mutation](data, random.Random(f"{form}{mutation}{seed}")))
    out = tmp_path / "out"
    args = ["train", "--task", task, "--train", str(bad), "--out", str(out), "--device", "cpu"]
    code = main(args + [word for setting in FAST for word in ("--set", setting)])
    err = capsys.readouterr().err
    assert code in (0, 2), err[-3000:]
    if code == 2:
        last = err.splitlines()[-1]
        assert last.startswith("attnkit: error: ") and str(bad) in last, last
        assert "Traceback" not in err
        assert not out.exists()
    else:
        assert (out / "model.safetensors").is_file()


GGUF_MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "truncated": lambda data, draw: data[: draw.randrange(1, len(data))],
    "a byte changed in the header and metadata": lambda data, draw: _changed(data, draw, 0, 24_000),
    "a byte changed anywhere": lambda data, draw: _changed(data, draw, 0, len(data)),
    "junk appended": lambda data, draw: data + bytes(draw.randrange(256) for _ in range(300)),
    "binary junk": lambda data, draw: bytes(draw.randrange(256) for _ in range(draw.randrange(1, 3000))),
    "empty": lambda data, draw: b"",
}


def _changed(data: bytes, draw: random.Random, start: int, end: int) -> bytes:
    at = draw.randrange(start, min(end, len(data)))
    return data[:at] + bytes([draw.randrange(256)]) + data[at + 1 :]


@pytest.fixture(scope="module")
def gguf_file(tmp_path_factory) -> bytes:
    from tests.ggufs import tiny_llama, write_gguf

    return write_gguf(tmp_path_factory.mktemp("gguf") / "model.gguf", tiny_llama(vocab=320), "gpt2").read_bytes()


@pytest.mark.parametrize(("mutation", "seed"), [(m, s) for m in GGUF_MUTATIONS for s in range(8)])
def test_a_malformed_gguf_file_is_read_or_refused_in_one_line(tmp_path, capsys, gguf_file, mutation, seed):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(GGUF_MUTATIONS[mutation](gguf_file, random.Random(f"{mutation}{seed}")))
    code = main(["export", str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code in (0, 2), err[-3000:]
    if code == 2:
        assert err.count("\n") == 1 and err.startswith(f"attnkit: error: {bad}") and "Traceback" not in err, err
        assert not (tmp_path / "out").exists()
