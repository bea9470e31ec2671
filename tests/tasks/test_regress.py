"""A text, or a pair of texts -> a number: standardized targets under a squared error, Pearson, Spearman and RMSE,
learned from scratch and from all-MiniLM-L6-v2, and taken through evaluate, predict, serve, export (transformers
predicts the same number), ONNX and average; a bad file gets one line."""

import contextlib
import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from attnkit.apps.average import average
from attnkit.apps.cli import main
from attnkit.apps.export import export
from attnkit.apps.onnx_export import export_onnx
from attnkit.apps.serve import create_app
from attnkit.config import DataConfig
from attnkit.data.readers import Labelled, TextPair
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.tasks.regress import RegressTask
from tests.conftest import fine_tuned_from_minilm, summary_of, trained_on, transformers_scores


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, score_files) -> Path:
    return trained_on(score_files, tmp_path_factory.mktemp("scratch"), "regress", 300, "train.patience=null")


@pytest.fixture(scope="module")
def bert_pairs(tmp_path_factory, similarity_files) -> Path:
    """A tiny BERT scoring pairs (token types), for the exports."""
    return trained_on(similarity_files, tmp_path_factory.mktemp("bert"), "regress", 10, "model.preset=bert")


def test_targets_are_standardized_in_training_and_scaled_back_in_predictions(scratch, score_files):
    pipeline = Pipeline.load(scratch, device="cpu")
    task: RegressTask = pipeline.task
    gold = [float(line.split("\t")[1]) for line in score_files["train"].read_text().splitlines()[1:]]
    assert task.mean == pytest.approx(np.mean(gold)) and task.std == pytest.approx(np.std(gold))
    (item,) = task.encode([Labelled("happy", str(task.mean + task.std), 1)], training=True)
    assert item["target"] == pytest.approx(1.0)
    assert pipeline.predict(["happy happy happy red"])[0] == pytest.approx(3.0, abs=0.5)


def test_from_scratch_it_learns_the_scores(scratch):
    result = summary_of(scratch)
    assert result["dev"]["pearson"] >= 0.95 and result["dev"]["rmse"] < 0.5, result


def test_evaluate_reports_correlations_and_predict_prints_the_number(scratch, score_files, capsys, monkeypatch):
    assert main(["evaluate", str(scratch), "--data", str(score_files["test"])]) == 0
    assert re.fullmatch(r"pearson 0\.9\d+   spearman 0\.\d+   rmse 0\.\d+   mae 0\.\d+\n", capsys.readouterr().out)
    monkeypatch.setattr("sys.stdin", io.StringIO("happy warm\n\nsad sad\n"))
    assert main(["predict", str(scratch)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == "" and float(lines[0]) > 1 > -1 > float(lines[2])
    monkeypatch.setattr("sys.stdin", io.StringIO("happy\n"))
    assert main(["predict", str(scratch), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "happy" and isinstance(record["score"], float)


def test_the_server_answers_a_number(scratch):
    with TestClient(create_app(Pipeline.load(scratch, device="cpu"))) as client:
        response = client.post("/predict", json={"texts": ["happy happy", "sad"]})
        info = client.get("/info").json()
    scores = response.json()["predictions"]
    assert response.status_code == 200 and scores[0] > scores[1]
    assert info["task"] == "regress" and info["labels"] is None


def test_a_file_of_pairs_is_read_as_pairs(similarity_files, bert_pairs):
    examples = RegressTask.read(DataConfig(), similarity_files["train"])
    assert isinstance(examples[0], TextPair)
    assert Pipeline.load(bert_pairs).task.input_fields == ("text_a", "text_b")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text\tlabel\nhappy\tvery\n", r"data.tsv:2: column 'label' holds 'very', not a number"),
        ("text\tlabel\nhappy\tnan\n", r"data.tsv:2: column 'label' holds 'nan', not a number"),
        ("text\tlabel\nhappy\t1\nsad\t1\n", r"every one of the 2 targets is 1: nothing to learn"),
        ("words\tlabel\nhappy\t1\n", r"data.tsv:1: no column 'text' in the header \(found: words, label\)"),
    ],
)
def test_a_bad_file_is_refused_in_one_line(tmp_path, capsys, content, message):
    (tmp_path / "data.tsv").write_text(content)
    assert (
        main(["train", "--task", "regress", "--train", str(tmp_path / "data.tsv"), "--out", str(tmp_path / "m")]) == 2
    )
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and not (tmp_path / "m").exists() and re.search(message, error), error


def test_a_damaged_scale_in_config_json_is_one_line(scratch, tmp_path, capsys):
    copy = tmp_path / "model"
    copy.mkdir()
    for file in ("config.json", "model.safetensors", "tokenizer.json"):
        (copy / file).write_bytes((scratch / file).read_bytes())
    config = json.loads((copy / "config.json").read_text())
    config["task_state"]["std"] = 0
    (copy / "config.json").write_text(json.dumps(config))
    assert main(["info", str(copy)]) == 2
    assert re.fullmatch(
        r"attnkit: error: .*config.json: task_state: expected a mean, a deviation above 0.*\n", capsys.readouterr().err
    )


def test_transformers_reads_the_exported_regressor_as_the_same_number(bert_pairs, similarity_files, tmp_path):
    transformers = pytest.importorskip("transformers")
    export(bert_pairs, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["problem_type"] == "regression" and config["id2label"] == {"0": "score"}
    rows = [line.split("\t") for line in similarity_files["dev"].read_text().splitlines()[1:21]]
    ours = Pipeline.load(bert_pairs, device="cpu").predict([(a, b) for a, b, _ in rows])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.num_labels == 1
    with torch.no_grad():
        logits = theirs(
            **tokenizer([a for a, _, _ in rows], [b for _, b, _ in rows], padding=True, return_tensors="pt")
        )
    assert torch.allclose(logits.logits[:, 0], torch.tensor(ours), atol=1e-4)
    card = (tmp_path / "hf" / "README.md").read_text()
    assert "**Columns** (input -> target): text_a, text_b -> label" in card
    code = card.split("```python\n")[1].split("```")[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})  # the card's Use code, as a reader would run it: a pair in, the number out
    (expected,) = Pipeline.load(bert_pairs, device="cpu").predict([("A first text.", "A second text.")])
    assert float(printed.getvalue()) == pytest.approx(expected, abs=1e-4)


def test_onnx_gives_the_scores_in_their_units(scratch, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    manifest = export_onnx(scratch, tmp_path / "onnx")
    assert manifest["graphs"]["model"]["output"].startswith("scores (batch,)")
    pipeline = Pipeline.load(scratch, device="cpu")
    batch = pipeline.task.collate(pipeline.task.encode(pipeline.task.inputs(["happy happy", "sad warm"]), False))
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    inputs = {"input_ids": batch["ids"].numpy(), "attention_mask": batch["mask"].long().numpy()}
    (scores,) = session.run(None, inputs)
    assert np.allclose(scores, pipeline.predict(["happy happy", "sad warm"]), atol=1e-4)


def test_two_runs_average_into_one_regressor(scratch, score_files, tmp_path):
    other = trained_on(score_files, tmp_path, "regress", 30, "train.seed=2")
    soup = average([scratch, other], tmp_path / "soup")
    assert soup.task.name == "regress" and math.isfinite(soup.predict(["happy"])[0])


def test_from_minilm_it_scores_pairs_and_exports_the_same_numbers(similarity_files, tmp_path):
    tuned = fine_tuned_from_minilm(similarity_files, tmp_path, "regress")
    assert summary_of(tuned)["dev"]["pearson"] >= 0.9, summary_of(tuned)
    pairs = [("red green blue cold", "blue red green cold"), ("red green blue cold", "happy sad warm soft")]
    logits, _ = transformers_scores(tuned, tmp_path / "hf", pairs)
    assert torch.allclose(logits[:, 0], torch.tensor(Pipeline.load(tuned).predict(pairs)), atol=1e-4)


def test_a_prediction_input_is_refused_when_it_is_not_what_the_model_reads(bert_pairs):
    with pytest.raises(AttnkitError, match=r"input:1: a pair model reads two texts"):
        Pipeline.load(bert_pairs).predict(["one text alone"])


def test_a_file_of_the_other_shape_is_refused_in_one_line(scratch, similarity_files, capsys):
    assert main(["evaluate", str(scratch), "--data", str(similarity_files["dev"])]) == 2
    error = capsys.readouterr().err
    assert (
        error
        == f"attnkit: error: {similarity_files['dev']}: the training data holds single texts, and this file does not\n"
    )
