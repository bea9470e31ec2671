"""Properties of whole stacks that must hold for every position scheme: padding invariance, causality,
permutation equivariance (only without positions), incremental decoding, and lengths beyond training."""

import pytest
import torch

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.nn import DecoderCache, build_model
from tests.nn.conftest import padding
from tests.numerics import assert_close

SCHEMES = ["none", "sinusoidal", "learned", "relative", "rotary", "alibi"]
VOCAB = 50


def tiny(arch: str, positions: str, **overrides) -> torch.nn.Module:
    torch.manual_seed(0)
    settings = dict(
        arch=arch,
        positions=positions,
        vocab_size=VOCAB,
        dim=32,
        num_heads=4,
        ff_dim=64,
        num_layers=2,
        dropout=0.0,
        max_positions=64,
        relative_buckets=8,
        relative_max_distance=16,
    )
    return build_model(ModelConfig(**{**settings, **overrides})).eval()


def tokens(batch: int, time: int, seed: int = 1) -> torch.Tensor:
    return torch.randint(1, VOCAB, (batch, time), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("positions", SCHEMES)
@pytest.mark.parametrize("norm_first", [True, False])
def test_encoder_padding_does_not_change_real_positions(positions, norm_first):
    model = tiny("encoder", positions, norm_first=norm_first)
    x = tokens(2, 6)
    reference = model(x)
    for extra in (1, 5, 17):
        padded = torch.cat([x, torch.zeros(2, extra, dtype=torch.long)], dim=1)
        out = model(padded, padding([6, 6], 6 + extra))
        assert_close(out[:, :6], reference)


@pytest.mark.parametrize("positions", SCHEMES)
def test_decoder_and_encoder_decoder_padding_do_not_change_real_positions(positions):
    decoder = tiny("decoder", positions)
    seq2seq = tiny("encoder-decoder", positions)
    source, target = tokens(2, 5), tokens(2, 4, seed=2)
    decoder_reference, seq2seq_reference = decoder(target), seq2seq(source, target)
    for extra in (1, 9):
        pad = torch.zeros(2, extra, dtype=torch.long)
        padded_source, padded_target = torch.cat([source, pad], 1), torch.cat([target, pad], 1)
        source_mask, target_mask = padding([5, 5], 5 + extra), padding([4, 4], 4 + extra)
        out = decoder(padded_target, target_mask)
        assert_close(out[:, :4], decoder_reference)
        out = seq2seq(padded_source, padded_target, source_mask, target_mask)
        assert_close(out[:, :4], seq2seq_reference)


@pytest.mark.parametrize("positions", SCHEMES)
@pytest.mark.parametrize("arch", ["decoder", "encoder-decoder"])
def test_later_tokens_never_change_earlier_decoder_outputs(positions, arch):
    model = tiny(arch, positions)
    source, target = tokens(1, 5), tokens(1, 8, seed=2)
    run = (lambda t: model(source, t)) if arch == "encoder-decoder" else model
    reference = run(target)
    for t in range(8):
        changed = target.clone()
        changed[:, t:] = tokens(1, 8 - t, seed=10 + t)
        out = run(changed)
        assert_close(out[:, :t], reference[:, :t])
        if t < 7:  # the change must show somewhere, or the test proves nothing
            assert not torch.allclose(out[:, t:], reference[:, t:], atol=1e-4)


def test_encoder_without_positions_is_permutation_equivariant():
    model = tiny("encoder", "none")
    x = tokens(2, 7)
    order = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    assert_close(model(x[:, order]), model(x)[:, order])


@pytest.mark.parametrize("positions", [s for s in SCHEMES if s != "none"])
def test_encoder_with_positions_is_not_permutation_equivariant(positions):
    model = tiny("encoder", positions)
    x = tokens(2, 7)
    order = torch.randperm(7, generator=torch.Generator().manual_seed(3))
    assert not torch.allclose(model(x[:, order]), model(x)[:, order], atol=1e-4)


@pytest.mark.parametrize("positions", SCHEMES)
@pytest.mark.parametrize("kv_heads", [None, 2, 1], ids=["multi-head", "grouped", "multi-query"])
def test_decoder_kv_cache_matches_full_forward(positions, kv_heads):
    model = tiny("decoder", positions, num_kv_heads=kv_heads)
    x = tokens(2, 9)
    full = model(x)
    cache = model.new_cache()
    chunks = [model(x[:, :3], cache=cache)]  # a prompt of several tokens, then one token at a time
    chunks += [model(x[:, t : t + 1], cache=cache) for t in range(3, 9)]
    assert cache.length == 9 and cache.self_attn[0].key.shape[1] == (kv_heads or 4)
    assert_close(torch.cat(chunks, dim=1), full)


@pytest.mark.parametrize("positions", SCHEMES)
@pytest.mark.parametrize("kv_heads", [None, 2], ids=["multi-head", "grouped"])
def test_encoder_decoder_kv_cache_matches_full_forward(positions, kv_heads):
    model = tiny("encoder-decoder", positions, num_decoder_layers=3, num_kv_heads=kv_heads)
    source, target = tokens(2, 6), tokens(2, 7, seed=2)
    source_mask = padding([6, 3], 6)
    full = model(source, target, source_mask)
    memory = model.encode(source, source_mask)
    cache = DecoderCache.empty(3)
    steps = [model.decode(target[:, t : t + 1], memory, source_mask, cache=cache) for t in range(7)]
    assert_close(torch.cat(steps, dim=1), full)


def test_kv_cache_keeps_padding_of_the_prompt():
    model = tiny("decoder", "rotary")
    prompt = torch.cat([tokens(2, 4), torch.zeros(2, 2, dtype=torch.long)], dim=1)
    mask = padding([6, 4], 6)
    following = tokens(2, 2, seed=5)
    full = model(torch.cat([prompt, following], 1), torch.cat([mask, torch.ones(2, 2, dtype=torch.bool)], 1))
    cache = model.new_cache()
    model(prompt, mask, cache=cache)
    step = model(following, cache=cache)
    assert_close(step, full[:, 6:])


@pytest.mark.parametrize("rows", [[2, 2, 0, 3], [1, 2, 0, 3], [0, 1, 2, 3], [3, 0]])  # a 3-cycle, none moved, fewer
def test_beam_reorder_selects_cache_rows(rows):
    model = tiny("decoder", "sinusoidal")
    x = tokens(4, 4)
    cache = model.new_cache()
    model(x, cache=cache)
    cache.reorder(torch.tensor(rows))
    n = len(rows)
    step = model(tokens(n, 1, seed=7), cache=cache)
    assert_close(step, model(torch.cat([x[rows], tokens(n, 1, seed=7)], 1))[:, -1:])


@pytest.mark.parametrize("positions", ["relative", "rotary", "alibi"])
def test_relative_schemes_run_beyond_the_training_length(positions):
    model = tiny("encoder-decoder", positions, max_positions=16).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    source = tokens(8, 16)  # copying: the longest sequences it is trained on have 16 tokens
    target = torch.cat([torch.zeros(8, 1, dtype=torch.long), source[:, :-1]], dim=1)
    losses = []
    for _ in range(10):
        loss = torch.nn.functional.cross_entropy(model(source, target).flatten(0, 1), source.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0]  # the steps trained it: what runs below are learned weights
    model.eval()
    long_source, long_target = tokens(2, 200, seed=3), tokens(2, 150, seed=4)
    out = model(long_source, long_target)
    assert out.shape == (2, 150, VOCAB) and torch.isfinite(out).all()
    prefix = model(long_source, long_target[:, :40])  # causal decoding stays consistent at any length
    assert_close(out[:, :40], prefix, tolerance=1e-4)


def test_learned_positions_refuse_sequences_longer_than_the_table():
    model = tiny("encoder", "learned", max_positions=16)
    with pytest.raises(AttnkitError, match="longer than this model's 16 learned positions"):
        model(tokens(1, 17))


def test_tied_output_shares_the_embedding_matrix():
    model = tiny("encoder-decoder", "sinusoidal")
    assert model.decoder.output.weight is model.encoder.embedding.weight
    separate = tiny("encoder-decoder", "sinusoidal", share_embeddings=False, tie_output=False, target_vocab_size=30)
    assert separate.decoder.embedding.weight.shape == (30, 32)
    assert separate(tokens(1, 3), tokens(1, 2) % 30).shape == (1, 2, 30)


def test_token_dropout_zeroes_whole_tokens_only_in_training():
    model = tiny("encoder", "none", token_dropout=0.5)
    inputs = []  # what the first layer receives: the embedded tokens, after token dropout
    model.layers[0].register_forward_pre_hook(lambda _, args: inputs.append(args[0].detach()))
    x = tokens(4, 50)
    model.eval()(x)
    torch.manual_seed(0)
    model.train()(x)
    model.eval()(x)
    kept, trained, again = inputs
    assert torch.equal(again, kept)  # nothing is dropped outside training
    dropped = (trained == 0).all(-1)
    assert 0.3 < dropped.float().mean() < 0.7
    assert ((trained == 0).any(-1) == dropped).all()  # a token is dropped whole or not at all
    assert_close(trained[~dropped], kept[~dropped] / 0.5)  # and the others are scaled up by 1 / (1 - p)


@pytest.mark.parametrize("arch", ["decoder", "encoder-decoder"])
def test_chosen_positions_get_the_logits_of_the_full_forward(arch):
    model = tiny(arch, "sinusoidal")
    target, mask = tokens(2, 6, seed=2), padding([6, 3], 6)
    chosen = mask.clone()
    chosen[0, 1] = False
    inputs = (target, mask) if arch == "decoder" else (tokens(2, 5), target, None, mask)
    full = model(*inputs)
    assert_close(model(*inputs, chosen=chosen), full[chosen])


@pytest.mark.parametrize("positions", ["learned", "relative", "rotary", "alibi"])
@pytest.mark.parametrize(("norm_first", "kv_heads"), [(False, None), (True, 2)])
@pytest.mark.parametrize("training", [False, True])
def test_the_first_position_alone_is_the_full_forwards_with_its_draws(positions, norm_first, kv_heads, training):
    """Encoder(first_only=True) computes the last layer for the first position alone: the same states and
    gradients, and in training the same dropout masks (drawn as for every position) and the random numbers after."""
    model = tiny(
        "encoder", positions, norm_first=norm_first, num_kv_heads=kv_heads, dropout=0.3, attention_dropout=0.3
    ).train(training)
    x, mask = tokens(3, 7), padding([7, 4, 6], 7)
    results = []
    for first_only in (False, True):
        torch.manual_seed(5)
        states = model(x, mask, first_only=first_only)
        grads = torch.autograd.grad(states[:, 0].square().sum(), list(model.parameters()))
        results.append((states, grads, torch.rand(4)))
    (full, full_grads, full_after), (first, first_grads, first_after) = results
    assert first.shape == (3, 1, 32)
    assert_close(first, full[:, :1])
    for a, b in zip(first_grads, full_grads):
        assert_close(a, b)
    assert torch.equal(first_after, full_after)
    if training:  # the draws mattered: another seed gives other states
        torch.manual_seed(6)
        assert not torch.allclose(model(x, mask, first_only=True), first)


def test_beams_share_their_sources_cross_attention_rows_and_reorder_within_them():
    model = tiny("encoder-decoder", "sinusoidal")
    source, source_mask = tokens(2, 5), padding([5, 3], 5)
    memory = model.encode(source, source_mask)
    cache = model.decoder.new_cache(memory)  # one row per source
    target, index = tokens(4, 3, seed=3), torch.tensor([1, 1, 2, 3])  # two beams per source, moved within their pair
    with torch.no_grad():  # as decoding runs
        model.decode(target, memory, source_mask, cache=cache)
        cache.reorder(index)
        step = model.decode(tokens(4, 1, seed=8), memory, source_mask, cache=cache)
        cache.reorder(index)
        after = model.decode(tokens(4, 1, seed=9), memory, source_mask, cache=cache)
    assert cache.cross_attn[0].key.shape[0] == 2
    beams = memory.repeat_interleave(2, dim=0), source_mask.repeat_interleave(2, dim=0)  # as if each beam had its own
    prefix = torch.cat([target[index], tokens(4, 1, seed=8)], 1)
    assert_close(step, model.decode(prefix, *beams)[:, -1:])
    assert_close(after, model.decode(torch.cat([prefix[index], tokens(4, 1, seed=9)], 1), *beams)[:, -1:])


def test_the_description_counts_layers_in_words():
    from attnkit.nn import describe

    one = ModelConfig(arch="encoder-decoder", num_layers=1, num_decoder_layers=1, vocab_size=10)
    assert describe(one)[0] == ("arch", "encoder-decoder, 1 encoder layer + 1 decoder layer")
    six = ModelConfig(arch="decoder", num_layers=6, vocab_size=10)
    assert describe(six)[0] == ("arch", "decoder, 6 causal layers")
