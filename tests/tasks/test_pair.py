"""Two texts -> a label: read as one sequence with a separator and segments, learned from scratch and from
all-MiniLM-L6-v2, and taken through evaluate, predict, serve, export (transformers predicts the same), ONNX and
average; a bad file gets one line."""

import io
import json
import re
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from attnkit.apps.average import average
from attnkit.apps.cli import main
from attnkit.apps.export import export
from attnkit.apps.onnx_export import export_onnx
from attnkit.apps.serve import create_app
from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig
from attnkit.data.readers import TextPair
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.tasks.pair import PairTask, _cut
from tests.conftest import fine_tuned_from_minilm, summary_of, trained_on, transformers_scores


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, pair_files) -> Path:
    """attnkit's default architecture (no segments: the separator tells the texts apart), from scratch."""
    return trained_on(pair_files, tmp_path_factory.mktemp("scratch"), "pair", 300, "train.patience=null")


@pytest.fixture(scope="module")
def bert_shaped(tmp_path_factory, pair_files) -> Path:
    """A tiny BERT (token types: the second text is segment 1), for the exports."""
    return trained_on(pair_files, tmp_path_factory.mktemp("bert"), "pair", 10, "model.preset=bert")


def pair_task(max_length: int = 256) -> PairTask:
    tokenizer = Tokenizer.train(["a b c d e f"], TokenizerConfig(kind="word", vocab_size=20, min_frequency=1))
    config = ModelConfig(vocab_size=tokenizer.vocab_size)
    return PairTask(
        TaskConfig(name="pair"), DataConfig(max_length=max_length), tokenizer, config, {"labels": ["n", "y"]}
    )


def test_a_pair_is_one_sequence_whose_second_text_is_segment_one():
    task = pair_task()
    (item,) = task.encode([TextPair("a b", "c", "y", 1)], training=True)
    tokens = [task.tokenizer.backend.id_to_token(i) for i in item["ids"]]
    assert tokens == ["<s>", "a", "b", "</s>", "c", "</s>"]
    assert item["segments"] == [0, 0, 0, 0, 1, 1] and item["label"] == 1


def test_a_long_pair_is_cut_from_its_longer_text_first():
    assert _cut([1] * 3, [2] * 10, 8) == ([1] * 3, [2] * 5)  # the short one stays whole
    assert _cut([1] * 10, [2] * 3, 8) == ([1] * 5, [2] * 3)
    assert _cut([1] * 10, [2] * 10, 7) == ([1] * 4, [2] * 3)  # both long: half each, the first the odd one
    (item,) = pair_task(max_length=8).encode([TextPair("a b c d e f", "a", "", 1)], training=False)
    assert len(item["ids"]) == 8


def test_inputs_to_predict_are_pairs_or_lines_of_two_texts_split_by_a_tab():
    task = pair_task()
    pairs = task.inputs([("a b", "c"), "d\te f", ""], "standard input")
    assert [(p.text_a, p.text_b) for p in pairs] == [("a b", "c"), ("d", "e f"), ("", "")]
    assert [task.blank(raw) for raw in [("a", "b"), "", ("", " ")]] == [False, True, True]
    with pytest.raises(AttnkitError, match=r"^standard input:2: a pair model reads two texts: .* \(found 1 field\)"):
        task.inputs(["a\tb", "one text"], "standard input")
    with pytest.raises(AttnkitError, match=r"^input:1: one text of the pair is blank"):
        task.inputs([("a", " ")])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "text_a\tlabel\nx\ty\n",
            r"data.tsv:1: no column 'text_b' in the header \(found: text_a, label\); name it with "
            r"data.text_b_column",
        ),
        ("text_a\ttext_b\tlabel\nx\t\ty\n", r"data.tsv:2: column 'text_b' is empty"),
        ("text_a\ttext_b\tlabel\nx\ty\n", r"data.tsv:2: expected 3 tab-separated fields"),
    ],
)
def test_a_bad_pair_file_is_refused_in_one_line(tmp_path, capsys, content, message):
    (tmp_path / "data.tsv").write_text(content)
    assert main(["train", "--task", "pair", "--train", str(tmp_path / "data.tsv"), "--out", str(tmp_path / "m")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and not (tmp_path / "m").exists()
    assert re.search(message, error), error


def test_from_scratch_it_learns_to_compare_the_two_texts(scratch):
    summary = json.loads((scratch / "log.jsonl").read_text().splitlines()[-1])["summary"]
    assert summary["dev"]["accuracy"] >= 0.8, summary


def test_evaluate_and_predict_read_pairs(scratch, pair_files, capsys, monkeypatch):
    assert main(["evaluate", str(scratch), "--data", str(pair_files["test"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.75
    monkeypatch.setattr("sys.stdin", io.StringIO("red green\tgreen red\n\nhappy sad\tcold warm\n"))
    assert main(["predict", str(scratch), "--json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["label"] for r in records] == ["same", None, "different"]
    assert records[0]["text_a"] == "red green" and records[0]["text_b"] == "green red"


def test_the_server_takes_text_a_and_text_b(scratch):
    with TestClient(create_app(Pipeline.load(scratch, device="cpu"))) as client:
        one = client.post("/predict", json={"text_a": "red green", "text_b": "green red"})
        many = client.post(
            "/predict", json={"pairs": [{"text_a": "red", "text_b": "red"}, {"text_a": "a", "text_b": "b"}]}
        )
        wrong = client.post("/predict", json={"text": "red green"})
        half = client.post("/predict", json={"text_a": "red green"})
    assert one.status_code == 200 and one.json()["prediction"]["label"] == "same"
    assert many.status_code == 200 and len(many.json()["predictions"]) == 2
    assert wrong.status_code == 422 and wrong.json()["detail"] == (
        'text: Extra inputs are not permitted (this model takes "text_a" and "text_b" (strings) or "pairs" (a list of '
        'objects with "text_a" and "text_b"))'
    )
    assert half.status_code == 422 and 'give either "text_a" and "text_b"' in half.json()["detail"]


def test_transformers_reads_the_exported_pair_model_with_token_types(bert_shaped, pair_files, tmp_path):
    transformers = pytest.importorskip("transformers")
    assert export(bert_shaped, tmp_path / "hf") == "bert"
    rows = [line.split("\t") for line in pair_files["dev"].read_text().splitlines()[1:21]]
    pipeline = Pipeline.load(bert_shaped, device="cpu")
    ours = pipeline.predict([(a, b) for a, b, _ in rows])
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "hf").eval()
    inputs = tokenizer([a for a, _, _ in rows], [b for _, b, _ in rows], padding=True, return_tensors="pt")
    batch = pipeline.task.collate(pipeline.task.encode(pipeline.task.inputs([(a, b) for a, b, _ in rows]), False))
    assert torch.equal(inputs["token_type_ids"][inputs["attention_mask"].bool()], batch["segments"][batch["mask"]])
    with torch.no_grad():
        probabilities = theirs(**inputs).logits.softmax(-1)
    assert [theirs.config.id2label[int(i)] for i in probabilities.argmax(-1)] == [p["label"] for p in ours]
    assert torch.allclose(probabilities.max(-1).values, torch.tensor([p["probability"] for p in ours]), atol=1e-5)


def test_a_roberta_pair_model_exports_without_token_types(pair_files, tmp_path):
    """RoBERTa has one token type: the exported tokenizer gives none, and transformers predicts attnkit's labels."""
    model = trained_on(pair_files, tmp_path, "pair", 10, "model.preset=roberta")
    rows = [line.split("\t") for line in pair_files["dev"].read_text().splitlines()[1:21]]
    ours = Pipeline.load(model, device="cpu").predict([(a, b) for a, b, _ in rows])
    logits, config = transformers_scores(model, tmp_path / "hf", [(a, b) for a, b, _ in rows])
    assert config.model_type == "roberta" and config.type_vocab_size == 1
    assert [config.id2label[int(i)] for i in logits.argmax(-1)] == [p["label"] for p in ours]
    assert torch.allclose(logits.softmax(-1).max(-1).values, torch.tensor([p["probability"] for p in ours]), atol=1e-5)


def test_onnx_graph_reads_token_types(bert_shaped, tmp_path):
    pytest.importorskip("onnxruntime")
    manifest = export_onnx(bert_shaped, tmp_path / "onnx")
    assert manifest["graphs"]["model"]["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert manifest["labels"] == ["different", "same"] and manifest["max_difference"]["model"] < 1e-4


def test_two_runs_average_into_one_pair_model(scratch, pair_files, tmp_path):
    other = trained_on(pair_files, tmp_path, "pair", 30, "train.seed=2")
    soup = average([scratch, other], tmp_path / "soup")
    prediction = soup.predict([("red green", "green red")])[0]
    assert prediction["label"] in ("same", "different") and soup.task.name == "pair"


def test_from_minilm_it_learns_the_pairs_and_exports_with_its_token_types(pair_files, tmp_path):
    tuned = fine_tuned_from_minilm(pair_files, tmp_path, "pair")
    assert summary_of(tuned)["dev"]["accuracy"] >= 0.9, summary_of(tuned)
    pairs = [("red green blue", "blue red green"), ("red green", "cold warm")]
    logits, config = transformers_scores(tuned, tmp_path / "hf", pairs)
    assert [config.id2label[int(i)] for i in logits.argmax(-1)] == [
        p["label"] for p in Pipeline.load(tuned).predict(pairs)
    ]
