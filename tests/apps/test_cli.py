"""The command line: train, evaluate and predict work together; every user mistake exits with code 2 and
one line on stderr that names the file (and line), and leaves no output directory behind."""

import json
import os
from pathlib import Path

import pytest

from attnkit.apps.cli import main
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from tests.conftest import SETS, TAG_OF, sentiment_rows, tagging_sentences, write_conll, write_tsv

ROOT = Path(__file__).parents[2]


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
    assert code == 0 and stdout.splitlines() == ["good", "", "bad"]
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
    header = tmp_path / "bad.csv"
    header.write_text("sentiment,review\ngood,happy day\n")
    return {
        "missing file": (["--train", tmp_path / "nope.tsv", "--dev", dev], r"nope.tsv: no such file"),
        "empty file": (["--train", empty, "--dev", dev], r"empty.tsv: empty file"),
        "column count": (["--train", columns, "--dev", dev], r"columns.tsv:3: expected 2 tab-separated fields"),
        "bad utf-8": (["--train", utf8, "--dev", dev], r"utf8.tsv:2: not valid UTF-8 \(byte 0xc3\)"),
        "unseen dev label": (["--train", train, "--dev", unseen], r"unseen.tsv:3: label 'ugly' never seen in training"),
        "conll without tag": (["--task", "tag", "--train", conll], r"bad.conll:2: expected a token and a tag"),
        "unknown config key": ([yaml_file, "--train", train], r"typo.yaml:2: unknown setting: train.learning_rate"),
        "unknown --set key": (
            ["--train", train, "--set", "model.layers=2"],
            r"command line: unknown setting: model.layers \(did you mean model.num_layers\?\)",
        ),
        "header without the columns": (
            ["--train", header],
            r"bad.csv:1: no column 'text' or 'label' in the header \(found: sentiment, review\); "
            r"name them with data.text_column and data.label_column$",
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
        "header without the columns",
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


def test_predict_on_a_missing_file(classifier, tmp_path, capsys):
    assert "none.txt: no such file" in one_line_error(capsys, "predict", classifier, "--data", tmp_path / "none.txt")


@pytest.mark.parametrize("command", ["predict", "evaluate", "info"])
def test_a_folder_that_is_not_a_model_is_named_as_such(tmp_path, capsys, command):
    data = ["--data", tmp_path / "x.tsv"] if command != "info" else []
    stderr = one_line_error(capsys, command, tmp_path, *data)
    assert stderr == (
        f"attnkit: error: {tmp_path}: not a model directory (no config.json); "
        "train one with attnkit train, or pass a Hugging Face directory\n"
    )
    assert "(no such directory)" in one_line_error(capsys, command, tmp_path / "none", *data)


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    """A classifier that gets the tests' sentiment right ("happy": good, "sad": bad), trained once per module."""
    folder = tmp_path_factory.mktemp("classifier")
    train = write_tsv(folder / "train.tsv", ("label", "text"), sentiment_rows(200, 1))
    args = ["train", "--train", train, "--out", folder / "model", "--epochs", "12", *SETS]
    assert main([str(a) for a in args]) == 0
    return folder / "model"


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tagger")
    train = write_conll(folder / "train.conll", tagging_sentences(200, 1))
    args = ["train", "--task", "tag", "--train", train, "--out", folder / "model", "--epochs", "4", *SETS]
    assert main([str(a) for a in args]) == 0
    return folder / "model"


def test_blank_lines_of_a_txt_file_give_empty_output_lines(classifier, tmp_path, capsys):
    inputs = tmp_path / "inputs.txt"
    inputs.write_text("\nred happy quick\n\n  \nsad dark cold\n\n")
    code, stdout, _ = run(capsys, "predict", classifier, "--data", inputs)
    assert code == 0 and stdout.split("\n") == ["", "good", "", "", "bad", "", ""]


def test_blank_lines_of_stdin_give_json_records_with_a_null_prediction(classifier, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("red happy quick\n\nsad dark cold\n"))
    code, stdout, _ = run(capsys, "predict", classifier, "--json")
    records = [json.loads(line) for line in stdout.splitlines()]
    assert code == 0 and [(r["text"], r["label"]) for r in records] == [
        ("red happy quick", "good"),
        ("", None),
        ("sad dark cold", "bad"),
    ]
    assert records[1]["probability"] is None


def test_a_bad_byte_on_standard_input_is_one_line_naming_its_line(classifier, capsys, monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"red happy\ngood \xff film\n")))
    code, _, err = run(capsys, "predict", classifier)
    assert code == 2 and err == "attnkit: error: standard input:2: not valid UTF-8 (byte 0xff)\n"


def test_python_predict_gives_none_for_a_blank_text(classifier):
    from attnkit import load

    predictions = load(classifier).predict(["", "red happy quick", "  "])
    assert predictions[0] is None and predictions[1]["label"] == "good" and predictions[2] is None


def test_python_predict_file_keeps_blank_lines_of_a_txt_file(classifier, tmp_path):
    from attnkit import load

    inputs = tmp_path / "inputs.txt"
    inputs.write_text("red happy quick\n\nsad dark cold\n")
    examples, predictions = load(classifier).predict_file(inputs)
    assert [e.text for e in examples] == ["red happy quick", "", "sad dark cold"]
    assert [p and p["label"] for p in predictions] == ["good", None, "bad"]


def test_python_predict_file_never_reads_the_gold_column_of_a_data_file(classifier, tmp_path):
    from attnkit import load

    data = tmp_path / "labelled.tsv"
    data.write_text("label\ttext\nugly\tred happy quick\nbad\tsad dark cold\n")  # 'ugly': a label never seen
    examples, predictions = load(classifier).predict_file(data)
    assert [(e.text, e.label) for e in examples] == [("red happy quick", ""), ("sad dark cold", "")]
    assert [p["label"] for p in predictions] == ["good", "bad"]


def test_python_evaluate_warns_about_unseen_labels(classifier, tmp_path):
    from attnkit import load

    data = tmp_path / "other.tsv"
    data.write_text("label\ttext\ngood\tred happy quick\nugly\tdark cold sad\n")
    with pytest.warns(UserWarning, match="1 example carries 1 label the model never saw \\('ugly'\\)"):
        metrics, _, _ = load(classifier).evaluate(data)
    assert metrics["accuracy"] == 0.5


def test_predict_reads_a_table_without_a_label_column(classifier, tmp_path, capsys):
    data = tmp_path / "new.tsv"
    data.write_text("text\nred happy quick\nsad dark cold\n")
    code, stdout, _ = run(capsys, "predict", classifier, "--data", data)
    assert code == 0 and stdout.splitlines() == ["good", "bad"]


def test_predict_takes_its_file_as_an_argument_too(classifier, tmp_path, capsys):
    data = tmp_path / "new.txt"
    data.write_text("red happy quick\nsad dark cold\n")
    code, stdout, _ = run(capsys, "predict", classifier, data)
    assert code == 0 and stdout.splitlines() == ["good", "bad"]
    code, _, err = run(capsys, "predict", classifier, data, "--data", tmp_path / "other.txt")
    assert (
        code == 2
        and err == f"attnkit: error: two files to predict, {data} and --data {tmp_path / 'other.txt'}: give one\n"
    )


def test_evaluate_counts_unseen_labels_as_errors_with_one_warning(classifier, tmp_path, capsys):
    data = tmp_path / "other.tsv"
    data.write_text("label\ttext\ngood\tred happy quick\nugly\tdark cold sad\nbad\tsad dark cold\nugly\tsad\nmeh\tx\n")
    code, stdout, stderr = run(capsys, "evaluate", classifier, "--data", data, "--json")
    assert stderr == (
        f"attnkit: warning: {data}: 3 examples carry 2 labels the model never saw ('ugly', 'meh'); "
        "they count as errors\n"
    )
    metrics = json.loads(stdout)
    f1 = {label: row["f1"] for label, row in metrics["per_class"].items()}
    assert code == 0 and metrics["accuracy"] == pytest.approx(2 / 5)
    assert metrics["macro_f1"] == pytest.approx((f1["good"] + f1["bad"]) / 4)  # the unseen labels score 0
    assert set(metrics["confusion"]["unseen"]) == {"ugly", "meh"} and metrics["per_class"]["good"]["recall"] == 1.0


def test_evaluate_report_shows_the_unseen_rows(classifier, tmp_path, capsys):
    data = tmp_path / "other.tsv"
    data.write_text("label\ttext\ngood\tred happy quick\nugly\tdark cold sad\n")
    code, stdout, stderr = run(capsys, "evaluate", classifier, "--data", data)
    assert code == 0 and "accuracy 0.5000" in stdout and "(never seen in training)" in stdout
    assert stderr.count("\n") == 1 and "1 example carries 1 label" in stderr


def conll_with_unseen_tags(path: Path) -> Path:
    """Two sentences of known words; three of their tokens carry tags the tagger never saw."""
    rows = [("red", TAG_OF["red"]), ("-", "HYPH"), ("blue", TAG_OF["blue"]), ("", "")]
    rows += [("sad", TAG_OF["sad"]), ("-", "HYPH"), ("green", "''"), ("", "")]
    path.write_text("".join(f"{w}\t{t}\n" if w else "\n" for w, t in rows))
    return path


def test_predict_on_conll_ignores_its_tags_even_unseen_ones(tagger, tmp_path, capsys):
    code, stdout, _ = run(capsys, "predict", tagger, "--data", conll_with_unseen_tags(tmp_path / "other.conll"))
    assert code == 0 and [len(line.split()) for line in stdout.splitlines()] == [3, 3]


def test_evaluate_counts_unseen_tags_as_errors_with_one_warning(tagger, tmp_path, capsys):
    data = conll_with_unseen_tags(tmp_path / "other.conll")
    code, stdout, stderr = run(capsys, "evaluate", tagger, "--data", data, "--json")
    assert stderr == (
        f"attnkit: warning: {data}: 3 tokens carry 2 tags the model never saw ('HYPH', \"''\"); they count as errors\n"
    )
    assert code == 0 and 0 < json.loads(stdout)["accuracy"] <= 3 / 6


def test_python_predict_refuses_one_string(classifier):
    pipeline = Pipeline.load(classifier)
    for predict in (pipeline.predict, pipeline.predict_lines):
        with pytest.raises(AttnkitError, match="got one string; wrap it"):
            predict("happy red")


def test_a_trained_model_is_readable_by_others_as_the_umask_allows(classifier):
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "trainer_state/model.safetensors"):
        assert (classifier / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--help"], "usage: attnkit"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        (["train", "examples/sentiment.yaml", "--set", "model.dimm=3"], "unknown setting: model.dimm"),
        (["train", "examples/sentiment.yaml", "--task", "tagg"], "task.name: expected one of"),
        (["pretrain", "--text", "corpus.txt", "--set", "model.dim=abc"], "model.dim: expected int"),
    ],
)
def test_help_and_a_users_mistakes_answer_before_pytorch_is_imported(args, said):
    """PyTorch takes a second or more to import (ten on a busy machine): none of these need it."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom attnkit.apps.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
    )
    script += "print('torch imported:', 'torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, cwd=ROOT, check=False)
    assert said in done.stdout + done.stderr
    assert "torch imported: False" in done.stdout


def test_the_package_imports_its_public_names_on_first_use():
    import attnkit
    from attnkit.inference.pipeline import load

    assert attnkit.load is load and attnkit.Pipeline is Pipeline
    assert set(attnkit.__all__) == set(attnkit._HOMES)  # noqa: SLF001
    assert all(getattr(attnkit, name) is not None for name in attnkit.__all__)
    assert set(attnkit.__all__) <= set(dir(attnkit))
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        attnkit.nothing  # noqa: B018


@pytest.mark.parametrize("after", [0.3, 3.0])  # importing PyTorch, or waiting for standard input
def test_ctrl_c_at_any_moment_is_one_line(classifier, after):
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "attnkit", "predict", str(classifier)]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert (process.returncode, err) == (130, b"attnkit: interrupted\n")


def test_a_reader_that_stops_early_ends_predict_quietly(classifier, tmp_path):
    import subprocess
    import sys

    inputs = tmp_path / "many.txt"
    inputs.write_text("red happy quick\n" * 40_000)  # more output than a pipe holds
    command = [sys.executable, "-m", "attnkit", "predict", str(classifier), str(inputs)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.readline() == b"good\n"
    process.stdout.close()  # as `| head -1` does
    _, err = process.communicate(timeout=120)
    assert (process.returncode, err) == (141, b"")


def test_ctrl_c_during_training_saves_the_state_then_says_one_line(sentiment_files, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    command = [sys.executable, "-m", "attnkit", "train", "--task", "classify", "--train", str(sentiment_files["train"])]
    command += ["--out", str(out), "--max-steps", "100000", *SETS]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    for _ in range(600):  # the run has started when its first state is on disk
        if process.poll() is not None:
            break
        if (out / "trainer_state").is_dir():
            break
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130 and err.decode().endswith("; continue with --resume\nattnkit: interrupted\n")
    steps = json.loads((out / "trainer_state" / "state.json").read_text())["progress"]["step"]
    assert steps > 0
