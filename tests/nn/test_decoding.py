"""Decoding: greedy and beam search against exhaustive search on a tiny model; sampling against greedy decoding,
its own draws and transformers' logits warpers; streaming."""

import io
import itertools
import json
from pathlib import Path

import pytest
import torch

from attnkit.apps.cli import main
from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.nn import EncoderDecoder
from attnkit.nn.decoding import Sampling, generate
from attnkit.training.corpus import pretrain
from tests.conftest import TINY, copy_pairs, corpus, pretrain_config, write_tsv

PAD, BOS, EOS, VOCAB = 0, 1, 2, 6


@pytest.fixture
def model() -> EncoderDecoder:
    torch.manual_seed(0)
    config = ModelConfig(
        arch="encoder-decoder", vocab_size=VOCAB, dim=16, num_heads=2, ff_dim=32, num_layers=1, dropout=0.0
    )
    model = EncoderDecoder(config).eval()
    with torch.no_grad():  # sharper distributions, so that greedy and beam search disagree
        model.decoder.output.weight.mul_(40)
    return model


def sequence_log_prob(model, source, tokens: list[int]) -> float:
    target = torch.tensor([[BOS, *tokens]])
    with torch.no_grad():  # scored as decoding scores: among the tokens it may choose
        logits = model(source, target)
        logits[..., [PAD, BOS]] = float("-inf")
        log_probs = logits.log_softmax(-1)[0]
    return sum(float(log_probs[t, token]) for t, token in enumerate(tokens))


def exhaustive_best(model, source, max_length: int, length_penalty: float) -> list[int]:
    """Every sequence of ordinary tokens up to max_length, ending in EOS."""
    ordinary = [t for t in range(VOCAB) if t not in (PAD, BOS, EOS)]
    best, best_score = None, float("-inf")
    for length in range(max_length + 1):
        for body in itertools.product(ordinary, repeat=length):
            score = sequence_log_prob(model, source, [*body, EOS]) / (length + 1) ** length_penalty
            if score > best_score:
                best, best_score = list(body), score
    return best


@pytest.fixture
def grouped_model() -> EncoderDecoder:
    """The model above with one key/value head for its two query heads (multi-query attention)."""
    torch.manual_seed(0)
    config = ModelConfig(
        arch="encoder-decoder", vocab_size=VOCAB, dim=16, num_heads=2, num_kv_heads=1, ff_dim=32, num_layers=1,
        dropout=0.0,
    )  # fmt: skip
    model = EncoderDecoder(config).eval()
    with torch.no_grad():
        model.decoder.output.weight.mul_(40)
    return model


@pytest.mark.parametrize("which", ["model", "grouped_model"])
def test_wide_beam_finds_the_exhaustive_best(which, request):
    model = request.getfixturevalue(which)
    for seed in range(4):
        source = torch.randint(3, VOCAB, (1, 5), generator=torch.Generator().manual_seed(seed))
        mask = torch.ones_like(source, dtype=torch.bool)
        found = generate(
            model,
            source,
            mask,
            start_id=BOS,
            eos_id=EOS,
            suppress=[PAD, BOS],
            max_new_tokens=3,
            beam_size=64,
            length_penalty=1.0,
        )
        assert found[0] == exhaustive_best(model, source, 3, 1.0)


def test_beam_of_one_is_greedy(model):
    source = torch.randint(3, VOCAB, (3, 5), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(source, dtype=torch.bool)
    greedy = generate(model, source, mask, start_id=BOS, eos_id=EOS, suppress=[PAD, BOS], max_new_tokens=6)
    with torch.no_grad():  # step-by-step argmax without the cache
        for row in range(3):
            tokens = [BOS]
            while len(tokens) <= 6:
                logits = model(source[row : row + 1], torch.tensor([tokens]))[0, -1]
                logits[[PAD, BOS]] = float("-inf")
                nxt = int(logits.argmax())
                if nxt == EOS:
                    break
                tokens.append(nxt)
            assert greedy[row] == tokens[1:7]


def test_batched_beam_search_equals_one_at_a_time_with_padding(model):
    sources = [[3, 4, 5, 3, 4], [5, 5], [4, 3, 3]]
    batch = torch.zeros(3, 5, dtype=torch.long)
    mask = torch.zeros(3, 5, dtype=torch.bool)
    for i, s in enumerate(sources):
        batch[i, : len(s)], mask[i, : len(s)] = torch.tensor(s), True
    together = generate(
        model, batch, mask, start_id=BOS, eos_id=EOS, suppress=[PAD, BOS], max_new_tokens=8, beam_size=3
    )
    for i, s in enumerate(sources):
        alone = generate(
            model,
            torch.tensor([s]),
            torch.ones(1, len(s), dtype=torch.bool),
            start_id=BOS,
            eos_id=EOS,
            suppress=[PAD, BOS],
            max_new_tokens=8,
            beam_size=3,
        )
        assert together[i] == alone[0]


def test_outputs_never_exceed_max_new_tokens(model):
    source = torch.randint(3, VOCAB, (4, 5), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(source, dtype=torch.bool)
    with torch.no_grad():
        model.decoder.output.bias = torch.nn.Parameter(torch.zeros(VOCAB))
        model.decoder.output.bias[EOS] = -1e4  # never ends by itself
    for beam in (1, 3):
        outputs = generate(
            model, source, mask, start_id=BOS, eos_id=EOS, suppress=[PAD, BOS], max_new_tokens=4, beam_size=beam
        )
        assert all(len(o) == 4 for o in outputs)


def repeated(row: list[int], n: int) -> bool:
    grams = [tuple(row[i : i + n]) for i in range(len(row) - n + 1)]
    return len(grams) != len(set(grams))


@pytest.mark.parametrize("n", [1, 2, 3], ids=["tokens", "bigrams", "trigrams"])
def test_no_repeat_ngram_forbids_repeated_ngrams(model, n):
    source = torch.randint(3, VOCAB, (3, 5), generator=torch.Generator().manual_seed(4))
    mask = torch.ones_like(source, dtype=torch.bool)
    with torch.no_grad():
        model.decoder.output.bias = torch.nn.Parameter(torch.zeros(VOCAB))
        model.decoder.output.bias[EOS] = -1e4  # long outputs, where a tiny vocabulary must repeat itself
    for beam in (1, 3):
        settings = dict(start_id=BOS, eos_id=EOS, max_new_tokens=12, beam_size=beam, suppress=[PAD, BOS])
        free = generate(model, source, mask, **settings)
        assert any(repeated(row, n) for row in free)  # without the setting they repeat, or this proves nothing
        outputs = generate(model, source, mask, **settings, no_repeat_ngram=n)
        assert not any(repeated(row, n) for row in outputs)
        if n > 1:  # shorter n-grams may still repeat: only n-grams of length n are forbidden
            assert any(repeated(row, n - 1) for row in outputs)


# sampling


def test_sampling_among_the_top_one_or_nearly_no_temperature_is_greedy(model):
    source = torch.tensor([[3, 4, 5, EOS], [5, 3, EOS, PAD]])
    mask = source != PAD
    greedy = generate(model, source, mask, start_id=BOS, eos_id=EOS, max_new_tokens=6)
    for sampling in (Sampling(top_k=1, seed=0), Sampling(temperature=1e-4, seed=0), Sampling(top_p=1e-6, seed=0)):
        assert generate(model, source, mask, start_id=BOS, eos_id=EOS, max_new_tokens=6, sampling=sampling) == greedy


def test_the_same_seed_draws_the_same_outputs_and_another_seed_others(model):
    with torch.no_grad():
        model.decoder.output.weight.div_(40)  # flat distributions: samples vary
    source = torch.tensor([[3, 4, 5, EOS]] * 8)

    def drawn(seed: int) -> list[list[int]]:
        return generate(model, source, start_id=BOS, eos_id=EOS, max_new_tokens=8, sampling=Sampling(seed=seed))

    assert drawn(1) == drawn(1) and drawn(1) != drawn(2)
    assert len({tuple(row) for row in drawn(1)}) > 1  # the rows of one batch draw independently


def test_top_k_and_top_p_keep_the_likeliest_tokens_and_draw_in_proportion():
    probs = torch.tensor([[0.05, 0.5, 0.15, 0.3]])
    assert torch.isfinite(Sampling(top_k=2).filtered(probs.log())).tolist() == [[False, True, False, True]]
    assert torch.isfinite(Sampling(top_p=0.8).filtered(probs.log())).tolist() == [[False, True, False, True]]
    assert torch.isfinite(Sampling(top_p=0.81).filtered(probs.log())).tolist() == [[False, True, True, True]]
    choose = Sampling(top_k=2, seed=0).chooser(torch.device("cpu"))
    draws = torch.cat([choose(probs.log()) for _ in range(4000)]).flatten()
    assert set(draws.tolist()) == {1, 3} and abs(float((draws == 1).float().mean()) - 0.5 / 0.8) < 0.03


def test_sampling_filters_as_transformers_does():
    transformers = pytest.importorskip("transformers")
    logits = torch.randn(4, 50, generator=torch.Generator().manual_seed(0)) * 3
    for temperature, top_k, top_p in [(0.7, 0, 1.0), (1.0, 5, 1.0), (1.0, 0, 0.9), (1.3, 10, 0.75)]:
        theirs = transformers.TemperatureLogitsWarper(temperature)(None, logits.clone())
        if top_k:
            theirs = transformers.TopKLogitsWarper(top_k)(None, theirs)
        if top_p < 1:
            theirs = transformers.TopPLogitsWarper(top_p)(None, theirs)
        ours = Sampling(temperature, top_k, top_p).filtered(logits.log_softmax(-1))
        assert torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
        assert torch.allclose(ours.softmax(-1), theirs.softmax(-1), atol=1e-6)


@pytest.mark.parametrize("settings, message", [({"temperature": 0}, "temperature above 0"), ({"top_k": -1}, "top-k"),
                                               ({"top_p": 0}, "top-p"), ({"top_p": 1.5}, "top-p")])  # fmt: skip
def test_bad_sampling_settings_are_refused(settings, message):
    with pytest.raises(AttnkitError, match=message):
        Sampling(**settings)


def test_streaming_sends_each_token_as_it_is_chosen(model):
    source = torch.tensor([[3, 4, 5, EOS]])
    seen: list[int] = []
    out = generate(
        model, source, start_id=BOS, eos_id=EOS, max_new_tokens=6, stream=lambda t: seen.append(int(t[0, 0]))
    )
    assert seen[: len(out[0])] == out[0] and (len(seen) == len(out[0]) or seen[len(out[0])] == EOS)


# attnkit generate and Pipeline.generate


@pytest.fixture(scope="module")
def language_model(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("lm")
    pretrain(pretrain_config(corpus(folder / "text"), folder / "model", "decoder", "train.max_steps=20"))
    return folder / "model"


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("translator")
    train = write_tsv(folder / "train.tsv", ("source", "target"), copy_pairs(200, 1))
    sets = [item for setting in TINY for item in ("--set", setting)]
    args = ["train", "--task", "seq2seq", "--train", train, "--out", folder / "model", "--max-steps", "40", *sets]
    assert main([str(a) for a in args]) == 0
    return folder / "model"


def test_a_decoder_continues_each_prompt_and_streams_what_it_returns(language_model):
    pipeline = Pipeline.load(language_model, device="cpu")
    prompts = ["the cat sat", "", "on the"]
    outputs = pipeline.generate(prompts, max_new_tokens=6)
    assert outputs[1] is None and all(isinstance(outputs[i], str) for i in (0, 2))
    assert outputs == [pipeline.generate([p], max_new_tokens=6)[0] for p in prompts]  # batching changes nothing
    pieces: dict[int, str] = {}
    streamed = pipeline.generate(
        prompts, max_new_tokens=6, stream=lambda i, p: pieces.update({i: pieces.get(i, "") + p})
    )
    assert streamed == outputs and pieces == {i: outputs[i] for i in (0, 2) if outputs[i]}
    sampled = pipeline.generate(prompts, max_new_tokens=6, sampling=Sampling(temperature=2.0, seed=3))
    assert sampled == pipeline.generate(prompts, max_new_tokens=6, sampling=Sampling(temperature=2.0, seed=3))


def test_an_encoder_decoder_generates_what_it_predicts(translator):
    pipeline = Pipeline.load(translator, device="cpu")
    texts = ["red green blue", "small large"]
    assert pipeline.generate(texts) == pipeline.predict(texts)  # the model's own beam search and limits
    greedy = pipeline.with_decoding(beam_size=1).predict(texts)
    assert pipeline.generate(texts, beam_size=1) == greedy
    pieces: list[str] = []
    assert pipeline.generate(texts[:1], beam_size=1, stream=lambda i, p: pieces.append(p)) == greedy[:1]
    assert "".join(pieces) == greedy[0]


def test_a_decoder_with_learned_positions_stops_where_they_end(tmp_path):
    learned = ("model.positions=learned", "model.max_positions=8", "data.max_length=8")
    pretrain(pretrain_config(corpus(tmp_path / "text"), tmp_path / "lm", "decoder", "train.max_steps=2", *learned))
    pipeline = Pipeline.load(tmp_path / "lm", device="cpu")
    (output,) = pipeline.generate(["the cat sat"], max_new_tokens=50)  # <s> + 3 words: 4 positions left
    assert len(pipeline.tokenizer.encode(output)) <= 4
    with pytest.raises(AttnkitError, match="a prompt of 9 tokens leaves no room in this model's 8 positions"):
        pipeline.generate(["the cat sat on the mat and the"])


def test_the_command_streams_text_or_writes_json(language_model, capsys, monkeypatch):
    assert main(["generate", str(language_model), "--prompt", "the cat", "--max-new-tokens", "5"]) == 0
    expected = Pipeline.load(language_model, device="cpu").generate(["the cat"], max_new_tokens=5)[0]
    assert capsys.readouterr().out == expected + "\n"
    monkeypatch.setattr("sys.stdin", io.StringIO("the cat\n\non the\n"))
    args = ["--max-new-tokens", "5", "--temperature", "1.5", "--top-k", "10", "--seed", "7", "--json"]
    assert main(["generate", str(language_model), *args]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["prompt"] for line in lines] == ["the cat", "", "on the"] and lines[1]["output"] is None


@pytest.mark.parametrize(
    "args, message",
    [
        (["--prompt", "x", "--top-k", "5"], "give a temperature above 0 to sample"),
        (["--prompt", "x", "--temperature", "-1"], "temperature must be 0 (no sampling) or more"),
        (["--prompt", "x", "--temperature", "1", "--top-p", "0"], "top-p must be above 0"),
        (["--prompt", "x", "--temperature", "1", "--beam-size", "4"], "beam search (beam_size > 1) and sampling"),
        (["--prompt", "  "], "--prompt: no prompt to continue"),
        (["--prompt", "x", "--max-new-tokens", "0"], "max_new_tokens must be at least 1"),
    ],
)
def test_mistakes_are_one_line(language_model, capsys, args, message):
    assert main(["generate", str(language_model), *args]) == 2
    assert message in capsys.readouterr().err


def test_a_model_without_a_decoder_cannot_generate(tmp_path, capsys):
    pretrain(pretrain_config(corpus(tmp_path / "text"), tmp_path / "mlm", "encoder", "train.max_steps=2"))
    assert main(["generate", str(tmp_path / "mlm"), "--prompt", "the cat"]) == 2
    assert "this model has no decoder: it cannot generate text" in capsys.readouterr().err
