"""`attnkit attention`: the weights it shows are softmax(QK^T/sqrt(d)) of each layer's own projections, every
model shape gives its maps, and the command writes a heatmap per layer and head and the HTML page."""

import math
from pathlib import Path

import pytest
import torch

from attnkit.apps.attention_maps import attention
from attnkit.apps.cli import main
from attnkit.inference.pipeline import Pipeline
from attnkit.nn import MultiHeadAttention
from attnkit.training.corpus import pretrain
from tests.conftest import copy_pairs, corpus, pretrain_config, sentiment_rows, trained
from tests.numerics import assert_close

TWO_LAYERS = "model.num_layers=2"  # two layers, for maps of more than one


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    return trained(
        tmp_path_factory.mktemp("classifier"), "classify", sentiment_rows(200, 1), ("label", "text"), 40, TWO_LAYERS
    )


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Path:
    return trained(
        tmp_path_factory.mktemp("translator"), "seq2seq", copy_pairs(200, 1), ("source", "target"), 40, TWO_LAYERS
    )


def recomputed(model: torch.nn.Module, run) -> dict[str, torch.Tensor]:
    """softmax(QK^T/sqrt(d)) of every attention module, from the inputs it was called with and its own weights:
    module name -> (heads, queries, keys) for the first example. Causal self-attention masks later keys."""
    inputs: dict[str, tuple] = {}
    hooks = [
        module.register_forward_pre_hook(
            lambda m, args, kwargs, name=name: inputs.setdefault(name, (args, kwargs)), with_kwargs=True
        )
        for name, module in model.named_modules()
        if isinstance(module, MultiHeadAttention)
    ]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    expected = {}
    for name, (args, kwargs) in inputs.items():
        module: MultiHeadAttention = model.get_submodule(name)
        x = args[0][0]
        if module.cross:
            memory = args[1][0]  # called as cross_attn(x, memory, ...)
            q = x @ module.q_proj.weight.T + module.q_proj.bias
            k, _ = (memory @ module.kv_proj.weight.T + module.kv_proj.bias).chunk(2, dim=-1)
        else:
            q, k, _ = (x @ module.qkv_proj.weight.T + module.qkv_proj.bias).chunk(3, dim=-1)
        heads, d = module.num_heads, module.head_dim
        q, k = q.unflatten(-1, (heads, d)).transpose(0, 1), k.unflatten(-1, (heads, d)).transpose(0, 1)
        scores = q @ k.transpose(-2, -1) / math.sqrt(d)
        if kwargs.get("causal"):
            scores = scores.masked_fill(torch.ones_like(scores, dtype=torch.bool).triu(1), float("-inf"))
        expected[name] = scores.softmax(-1)
    return expected


def test_the_weights_shown_are_softmax_of_queries_and_keys_from_each_layer(translator):
    pipeline = Pipeline.load(translator, device="cpu")
    shown: list = []
    expected = recomputed(pipeline.model, lambda: shown.append(attention(pipeline, "red green blue", "red green")))
    maps = {m.name: m.weights for m in shown[0].maps}
    assert list(maps) == ["encoder self-attention", "decoder self-attention", "cross-attention"]
    for layer in range(2):
        assert_close(maps["encoder self-attention"][layer], expected[f"encoder.layers.{layer}.self_attn"])
        assert_close(maps["decoder self-attention"][layer], expected[f"decoder.layers.{layer}.self_attn"])
        assert_close(maps["cross-attention"][layer], expected[f"decoder.layers.{layer}.cross_attn"])
    assert not torch.equal(maps["cross-attention"][0, 0], maps["cross-attention"][0, 1])  # heads differ


def test_an_encoder_decoder_shows_three_maps_over_its_own_output_or_the_given_target(translator):
    pipeline = Pipeline.load(translator, device="cpu")
    own = attention(pipeline, "red green blue")
    assert own.target == own.prediction == pipeline.predict(["red green blue"])[0]
    given = attention(pipeline, "red green blue", target="blue blue")
    encoder, decoder, cross = given.maps
    assert given.prediction is None
    assert encoder.queries == encoder.keys == cross.keys and decoder.queries == cross.queries
    assert encoder.keys[-1] == "</s>" and "</s>" not in decoder.queries  # the decoder predicts </s>, never reads it
    assert len(decoder.queries) == 1 + len(pipeline.tokenizer.encode("blue blue"))
    assert cross.weights.shape == (2, 2, len(cross.queries), len(cross.keys))
    assert torch.allclose(cross.weights.sum(-1), torch.ones(()))
    assert (decoder.weights.triu(1) == 0).all() and not (decoder.weights.tril() == 0).all()  # causal


def test_a_classifier_shows_its_encoder_and_its_prediction(classifier):
    pipeline = Pipeline.load(classifier, device="cpu")
    result = attention(pipeline, "happy bright warm")
    (only,) = result.maps
    label = pipeline.predict(["happy bright warm"])[0]["label"]
    assert only.name == "encoder self-attention" and result.prediction.startswith(label + " (")
    assert only.weights.shape[:2] == (2, 2) and only.queries[0] == "<s>" and only.queries[-1] == "</s>"


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_a_pretrained_model_without_a_task_shows_its_self_attention(tmp_path, arch):
    run = pretrain_config(corpus(tmp_path / "text"), tmp_path / "model", arch, "train.max_steps=3")
    pretrain(run)
    result = attention(Pipeline.load(tmp_path / "model", device="cpu"), "the cat sat on the mat")
    (only,) = result.maps
    assert only.name == f"{arch} self-attention" and result.prediction is None
    assert "cat" in only.queries and only.weights.shape[-2:] == (len(only.queries),) * 2
    assert ((only.weights.triu(1) == 0).all()) == (arch == "decoder")


def test_the_command_writes_a_heatmap_per_layer_and_head_and_the_page(translator, tmp_path, capsys):
    out = tmp_path / "maps"
    assert main(["attention", str(translator), "red green blue", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for folder in ("encoder-self", "decoder-self", "cross"):
        pngs = sorted((out / folder).glob("*.png"))
        assert [p.name for p in pngs] == [f"layer{layer}-head{head}.png" for layer in (1, 2) for head in (1, 2)]
        assert all(p.read_bytes().startswith(b"\x89PNG") for p in pngs)
    page = (out / "attention.html").read_text()
    assert "cross-attention" in page and "red" in page and "<script src" not in page and "http" not in page
    assert "output:" in printed and "attention.html" in printed and "12 heatmaps" in printed


def test_no_png_writes_only_the_page_and_leaves_no_earlier_heatmap(classifier, tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["attention", str(classifier), "happy", "--out", str(out)]) == 0
    assert len(list((out / "encoder-self").glob("*.png"))) == 4
    assert main(["attention", str(classifier), "sad", "--out", str(out), "--no-png"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["attention.html", "notes.txt"]  # the user's file stays
    assert main(["attention", str(classifier), "sad", "--out", str(tmp_path / "new" / "o"), "--no-png"]) == 0
    assert [p.name for p in (tmp_path / "new" / "o").iterdir()] == ["attention.html"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["happy", "--target", "sad"], "--target is for encoder-decoder models"),
        (["   "], "no text to look at"),
        ([" ".join(["happy"] * 200)], "text: 202 tokens; attention maps are drawn for at most 128"),
    ],
)
def test_mistakes_are_one_line_and_write_nothing(classifier, tmp_path, capsys, extra, message):
    assert main(["attention", str(classifier), *extra, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "o").exists()


@pytest.mark.parametrize(
    "target, message",
    [("  ", "the target is blank"), (" ".join(["red"] * 130), "target: 131 tokens; attention maps are drawn for")],
)
def test_a_blank_or_long_target_is_refused(translator, tmp_path, capsys, target, message):
    assert main(["attention", str(translator), "red", "--target", target, "--out", str(tmp_path / "o")]) == 2
    assert message in capsys.readouterr().err


def test_an_out_that_is_a_file_or_under_one_is_one_line(classifier, tmp_path, capsys):
    (tmp_path / "file.tsv").write_text("data")
    assert main(["attention", str(classifier), "happy", "--out", str(tmp_path / "file.tsv")]) == 2
    assert "file.tsv: exists and is not a directory" in capsys.readouterr().err
    assert main(["attention", str(classifier), "happy", "--out", str(tmp_path / "file.tsv" / "o"), "--no-png"]) == 2
    assert "cannot write the maps there (Not a directory)" in capsys.readouterr().err
    assert (tmp_path / "file.tsv").read_text() == "data"


def test_a_pretrained_encoder_decoder_shows_its_three_maps_over_its_own_output(tmp_path):
    run = pretrain_config(corpus(tmp_path / "text"), tmp_path / "model", "encoder-decoder", "train.max_steps=3")
    pretrain(run)
    result = attention(Pipeline.load(tmp_path / "model", device="cpu"), "the cat sat on the mat", "the cat")
    assert [m.name for m in result.maps] == ["encoder self-attention", "decoder self-attention", "cross-attention"]
    assert result.target == "the cat" and "cat" in result.maps[2].queries
