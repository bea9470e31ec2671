"""The command line: train, evaluate and predict work together; every user mistake exits with code 2 and
one line on stderr that names the file (and line), and leaves no output directory behind."""

import json
from pathlib import Path

import pytest

from attnkit.cli import main
from tests.conftest import TINY

SETS = [arg for setting in TINY for arg in ("--set", setting)]


def run(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_evaluate_predict(sentiment_files, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    code, stdout, _ = run(
        capsys,
        "train",
        "--task",
        "classify",
        "--train",
        sentiment_files["train"],
        "--dev",
        sentiment_files["dev"],
        "--out",
        out,
        "--epochs",
        "12",
        *SETS,
    )
    assert code == 0 and f"-> {out}" in stdout and "dev: accuracy 1.0000" in stdout

    code, stdout, _ = run(capsys, "evaluate", out, "--data", sentiment_files["dev"])
    assert code == 0 and "accuracy 1.0000" in stdout and "confusion" in stdout
    code, stdout, _ = run(capsys, "evaluate", out, "--data", sentiment_files["dev"], "--json")
    assert json.loads(stdout)["confusion"]["matrix"] == [[20, 0], [0, 20]]

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("red happy quick\n\nsad dark cold\n")
    code, stdout, _ = run(capsys, "predict", out, "--data", inputs)
    assert code == 0 and stdout.splitlines() == ["good", "bad"]
    monkeypatch.setattr("sys.stdin", open(inputs))
    code, stdout, _ = run(capsys, "predict", out, "--json")
    first = json.loads(stdout.splitlines()[0])
    assert first["text"] == "red happy quick" and first["label"] == "good" and 0.5 < first["probability"] <= 1


def test_yaml_config_with_overrides(sentiment_files, tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text(
        f"task: {{name: classify}}\nout: {tmp_path / 'model'}\n"
        f"data: {{train: {sentiment_files['train']}, dev: {sentiment_files['dev']}}}\n"
        "train: {epochs: 1, lr: 1e-3}\n"
    )
    code, stdout, _ = run(capsys, "train", config, "--set", "train.max_steps=2", *SETS, "--json")
    assert code == 0 and json.loads(stdout)["steps"] == 2
    saved = json.loads((tmp_path / "model" / "config.json").read_text())
    assert saved["train"]["lr"] == 3e-3  # TINY's --set train.lr came after the YAML value


def one_line_error(capsys, *args: str) -> str:
    code, stdout, stderr = run(capsys, *args)
    assert code == 2, stderr
    assert stderr.count("\n") == 1 and stderr.startswith("attnkit: error: ") and "Traceback" not in stderr
    return stderr


def bad_input_cases(files: dict, tmp_path: Path) -> dict[str, tuple[list, str]]:
    train, dev = files["train"], files["dev"]
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    columns = tmp_path / "columns.tsv"
    columns.write_text("label\ttext\ngood\thappy day\nbad\n")
    utf8 = tmp_path / "utf8.tsv"
    utf8.write_bytes(b"label\ttext\ngood\thappy \xc3\x28 day\n")
    unseen = tmp_path / "unseen.tsv"
    unseen.write_text("label\ttext\ngood\thappy\nugly\tdark\n")
    conll = tmp_path / "bad.conll"
    conll.write_text("The\tDT\ncat\n")
    yaml_file = tmp_path / "typo.yaml"
    yaml_file.write_text("train:\n  learning_rate: 0.1\n")
    return {
        "missing file": (["--train", tmp_path / "nope.tsv", "--dev", dev], r"nope.tsv: no such file"),
        "empty file": (["--train", empty, "--dev", dev], r"empty.tsv: empty file"),
        "column count": (["--train", columns, "--dev", dev], r"columns.tsv:3: expected 2 tab-separated fields"),
        "bad utf-8": (["--train", utf8, "--dev", dev], r"utf8.tsv:2: not valid UTF-8 \(byte 0xc3\)"),
        "unseen dev label": (["--train", train, "--dev", unseen], r"unseen.tsv:3: label 'ugly' never seen in training"),
        "conll without tag": (["--task", "tag", "--train", conll], r"bad.conll:2: expected a token and a tag"),
        "unknown config key": ([yaml_file, "--train", train], r"typo.yaml: train.learning_rate: unknown field"),
        "unknown --set key": (
            ["--train", train, "--set", "model.layers=2"],
            r"command line: model.layers: unknown field",
        ),
        "wrong type": (["--train", train, "--set", "train.epochs=many"], r"train.epochs: expected int, got 'many'"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "missing file",
        "empty file",
        "column count",
        "bad utf-8",
        "unseen dev label",
        "conll without tag",
        "unknown config key",
        "unknown --set key",
        "wrong type",
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(sentiment_files, tmp_path, capsys, case):
    args, message = bad_input_cases(sentiment_files, tmp_path)[case]
    out = tmp_path / "model"
    stderr = one_line_error(capsys, "train", *args, "--out", out)
    assert __import__("re").search(message, stderr), stderr
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".model")]  # no temporary directory either


def test_evaluate_and_predict_errors(sentiment_files, tmp_path, capsys):
    assert "no such checkpoint directory" in one_line_error(capsys, "evaluate", tmp_path / "none", "--data", "x.tsv")
    out = tmp_path / "model"
    assert run(capsys, "train", "--train", sentiment_files["train"], "--out", out, "--max-steps", "1", *SETS)[0] == 0
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext\nterrible\tdark\n")
    assert "bad.tsv:2: label 'terrible' never seen" in one_line_error(capsys, "evaluate", out, "--data", bad)
    assert "no such file" in one_line_error(capsys, "predict", out, "--data", tmp_path / "none.txt")
