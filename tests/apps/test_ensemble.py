"""`attnkit ensemble`: trained models of one task and label set, of different architectures and tokenizers,
predict as one model with the mean of their outputs, through predict, evaluate, serve, info and ONNX; what cannot
be ensembled (other tasks, other labels, a pretrained model, an ensemble) or exported as one Hugging Face model
is refused in one line."""

import json
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from attnkit.apps.average import average
from attnkit.apps.cli import main
from attnkit.apps.ensemble import ensemble
from attnkit.apps.export import export
from attnkit.apps.limits import Limits
from attnkit.apps.serve import create_app
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Ensemble, Pipeline
from tests.conftest import trained_on

TEXTS = ["a good movie", "bad bad film", "good and bad", "what a great show"]


@pytest.fixture
def classifiers(sentiment_files, tmp_path) -> list[Path]:
    """Two classifiers that share nothing but the task and labels: attnkit's default architecture, and a BERT with
    a tokenizer of another size."""
    return [
        trained_on(sentiment_files, tmp_path / "a", "classify", 20, "train.eval_every=20"),
        trained_on(
            sentiment_files,
            tmp_path / "b",
            "classify",
            20,
            "train.eval_every=20",
            "model.preset=bert",
            "tokenizer.vocab_size=60",
            "train.seed=7",
        ),
    ]


def good(prediction: dict) -> float:
    return prediction["probability"] if prediction["label"] == "good" else 1 - prediction["probability"]


def test_an_ensemble_predicts_the_mean_of_its_members_probabilities(classifiers, tmp_path):
    made = ensemble(classifiers, tmp_path / "ensemble")
    members = [Pipeline.load(path, device="cpu").predict(TEXTS) for path in classifiers]
    assert len({Pipeline.load(path).tokenizer.vocab_size for path in classifiers}) == 2  # two tokenizers
    for i, prediction in enumerate(made.predict(TEXTS)):
        mean = sum(good(member[i]) for member in members) / len(members)
        assert good(prediction) == pytest.approx(mean, abs=1e-6)
        assert prediction["label"] == ("good" if mean > 0.5 else "bad")
    assert sorted(p.name for p in (tmp_path / "ensemble" / "members" / "0").iterdir()) == [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
    ]  # a copy of what each member predicts with: the ensemble stands alone


def test_an_ensemble_evaluates_serves_and_describes_itself_as_one_model(classifiers, sentiment_files, tmp_path, capsys):
    out = tmp_path / "ensemble"
    assert main(["ensemble", *map(str, classifiers), "--out", str(out)]) == 0
    assert capsys.readouterr().out == f"an ensemble of 2 classify models -> {out}\n"
    assert main(["evaluate", str(out), "--data", str(sentiment_files["dev"]), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    loaded = Pipeline.load(out)
    expected, _, _ = loaded.evaluate(sentiment_files["dev"])
    assert metrics["accuracy"] == expected["accuracy"]
    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "the mean of 2 models' outputs" in info and "member 0" in info and "member 1    bert" in info
    with TestClient(create_app(loaded)) as client:
        answer = client.post("/predict", json={"texts": TEXTS})
    assert answer.status_code == 200
    assert answer.json()["predictions"] == [pytest.approx(p) for p in loaded.predict(TEXTS)]


def test_taggers_and_regressors_ensemble_too(tagging_files, score_files, tmp_path):
    taggers = [trained_on(tagging_files, tmp_path / f"t{s}", "tag", 20, f"train.seed={s}") for s in (1, 2)]
    sentences = ["the cat sat on the mat today", "a dog"]
    members = [Pipeline.load(path) for path in taggers]
    names = members[0].task.tags
    mean = []  # each word's tag probabilities, by name, averaged over the members
    for words in zip(
        *(
            member.task.predict(
                member.model, member.task.encode(member.task.inputs(sentences), training=False), outputs=True
            )
            for member in members
        )
    ):
        mean.append(sum(w[:, [m.task.tags.index(n) for n in names]] for w, m in zip(words, members)) / 2)
    expected = [[names[int(i)] for i in sentence.argmax(-1)] for sentence in mean]
    assert ensemble(taggers, tmp_path / "taggers").predict(sentences) == expected
    regressors = [trained_on(score_files, tmp_path / f"r{s}", "regress", 20, f"train.seed={s}") for s in (1, 2)]
    texts = ["fine", "awful and slow"]
    members = [Pipeline.load(path).predict(texts) for path in regressors]
    mean = [sum(numbers) / 2 for numbers in zip(*members)]
    assert ensemble(regressors, tmp_path / "regressors").predict(texts) == pytest.approx(mean, abs=1e-5)


def test_what_cannot_be_ensembled_is_refused_in_one_line(classifiers, tagging_files, sentiment_files, tmp_path):
    tagger = trained_on(tagging_files, tmp_path / "t", "tag", 5)
    with pytest.raises(
        AttnkitError,
        match=r"^ensemble: member 1 is a tag \(text -> .*\) model, member 0 a classify "
        r"\(text -> bad, good\) model; an ensemble's members share one task, input and label set$",
    ):
        ensemble([classifiers[0], tagger], tmp_path / "mixed")
    relabelled = tmp_path / "relabelled.tsv"
    relabelled.write_text(
        sentiment_files["train"].read_text().replace("\tgood", "\tfine", 1).replace("good\t", "fine\t")
    )
    other = trained_on({"train": relabelled, "dev": relabelled}, tmp_path / "o", "classify", 5)
    with pytest.raises(AttnkitError, match=r"member 1 is a classify \(text -> bad, fine\) model"):
        ensemble([classifiers[0], other], tmp_path / "other-labels")
    assert not (tmp_path / "mixed").exists() and not (tmp_path / "other-labels").exists()

    made = tmp_path / "ensemble"
    ensemble(classifiers, made)
    with pytest.raises(AttnkitError, match=r"is an ensemble itself; give its members' directories"):
        ensemble([made, classifiers[0]], tmp_path / "nested")
    with pytest.raises(AttnkitError, match=r"an ensemble of 2 models is no one Hugging Face model; export each of"):
        export(made, tmp_path / "hf")
    with pytest.raises(AttnkitError, match=r"an ensemble; average its members"):
        average([made, classifiers[0]], tmp_path / "soup")
    with pytest.raises(AttnkitError, match=r"^ensemble: give at least two model directories$"):
        ensemble(classifiers[:1], tmp_path / "one")


def test_members_whose_labels_are_ordered_otherwise_are_read_by_name(classifiers, tmp_path):
    plain, flipped = Pipeline.load(classifiers[0]), Pipeline.load(classifiers[0])
    flipped.task.labels = flipped.task.labels[::-1]  # the same model, its outputs in the other order
    with torch.no_grad():
        flipped.model.head.weight.copy_(flipped.model.head.weight.flip(0))
        flipped.model.head.bias.copy_(flipped.model.head.bias.flip(0))
    assert Ensemble([plain, flipped]).predict(TEXTS) == [pytest.approx(p) for p in plain.predict(TEXTS)]
    other = Pipeline.load(classifiers[1])
    plain.task.labels, other.task.labels = list("abcde"), list("abcdf")  # only the fifth differs
    with pytest.raises(AttnkitError, match=r"member 1 is a classify \(text -> a, b, c, d, ... \(5\)\) model"):
        Ensemble([plain, other])


def test_an_input_over_any_members_limit_is_over_the_ensembles(classifiers, sentiment_files, tmp_path):
    short = trained_on(sentiment_files, tmp_path / "short", "classify", 5, "data.max_length=8")
    made = ensemble([classifiers[0], short], tmp_path / "ensemble")
    text = "good " * 20
    (count,) = Pipeline.load(short).count_tokens([text])  # by the short member's own tokenizer
    assert Pipeline.load(classifiers[0]).over_limit([text]) == [None]  # the other member reads it whole
    assert made.over_limit(["go", text]) == [None, (count, 8)]
    with TestClient(create_app(made, Limits(too_long="reject"))) as client:
        answer = client.post("/predict", json={"texts": ["go", text]})
    assert answer.status_code == 413 and f"{count} tokens, over this model's limit of 8" in answer.json()["detail"]


def test_a_member_that_is_the_ensemble_itself_is_refused(classifiers, tmp_path):
    made = tmp_path / "ensemble"
    ensemble(classifiers, made)
    config = json.loads((made / "config.json").read_text())
    (made / "config.json").write_text(json.dumps({**config, "ensemble": ["members/0", "."]}))
    with pytest.raises(AttnkitError, match=r"member '\.' is not a folder inside the ensemble"):
        Pipeline.load(made)


def test_onnx_writes_every_member_and_how_to_combine_them(classifiers, tmp_path):
    pytest.importorskip("onnxruntime")
    from attnkit.apps.onnx_export import export_onnx

    ensemble(classifiers, tmp_path / "ensemble")
    manifest = export_onnx(tmp_path / "ensemble", tmp_path / "onnx")
    assert manifest["ensemble"] == ["members/0", "members/1"] and "average their outputs" in manifest["combine"]
    for member in manifest["ensemble"]:
        assert (tmp_path / "onnx" / member / "model.onnx").is_file()
        assert (tmp_path / "onnx" / member / "tokenizer.json").is_file()
        assert manifest["max_difference"][member]["model"] < 1e-4
