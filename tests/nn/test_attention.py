"""attnkit.nn.attention against PyTorch's nn.MultiheadAttention, and the KV cache and masks on their own."""

import pytest
import torch
from torch import nn

from attnkit.nn.attention import (
    HALF_EXPLICIT_MAX_KEYS,
    WHOLE_ROOM_MIN_ROWS,
    KVCache,
    MultiHeadAttention,
    _explicit_is_faster,
    causal_mask,
    record_attention,
)
from tests.nn.conftest import padding
from tests.numerics import assert_close

DIM, HEADS = 32, 4


def torch_and_attnkit(cross: bool, bias: bool = True) -> tuple[nn.MultiheadAttention, MultiHeadAttention]:
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(DIM, HEADS, bias=bias, batch_first=True).eval()
    nn.init.normal_(reference.in_proj_weight)  # random biases too, so that a missing one shows
    if bias:
        nn.init.normal_(reference.in_proj_bias)
        nn.init.normal_(reference.out_proj.bias)
    ours = MultiHeadAttention(DIM, HEADS, cross=cross, bias=bias).eval()
    with torch.no_grad():
        if cross:
            ours.q_proj.weight.copy_(reference.in_proj_weight[:DIM])
            ours.kv_proj.weight.copy_(reference.in_proj_weight[DIM:])
            if bias:
                ours.q_proj.bias.copy_(reference.in_proj_bias[:DIM])
                ours.kv_proj.bias.copy_(reference.in_proj_bias[DIM:])
        else:
            ours.qkv_proj.weight.copy_(reference.in_proj_weight)
            if bias:
                ours.qkv_proj.bias.copy_(reference.in_proj_bias)
        ours.out_proj.load_state_dict(reference.out_proj.state_dict())
    return reference, ours


@pytest.mark.parametrize("bias", [True, False])
def test_self_attention_matches_torch_with_padding(bias):
    reference, ours = torch_and_attnkit(cross=False, bias=bias)
    x = torch.randn(3, 7, DIM)
    real = padding([7, 4, 1], 7)
    expected, expected_weights = reference(x, x, x, key_padding_mask=~real, average_attn_weights=False)
    out, weights = ours(x, mask=real[:, None, None, :], need_weights=True)
    fast, no_weights = ours(x, mask=real[:, None, None, :])
    assert no_weights is None
    assert_close(out, expected)
    assert_close(fast, expected)
    assert_close(weights, expected_weights)


def test_cross_attention_matches_torch_with_padding():
    reference, ours = torch_and_attnkit(cross=True)
    x, memory = torch.randn(2, 5, DIM), torch.randn(2, 9, DIM)
    real = padding([9, 3], 9)
    expected, _ = reference(x, memory, memory, key_padding_mask=~real)
    out, _ = ours(x, memory, mask=real[:, None, None, :])
    assert_close(out, expected)


def test_causal_self_attention_matches_torch():
    reference, ours = torch_and_attnkit(cross=False)
    x = torch.randn(2, 6, DIM)
    expected, _ = reference(x, x, x, attn_mask=~causal_mask(6, 6))
    assert_close(ours(x, causal=True)[0], expected)
    assert_close(ours(x, causal=True, need_weights=True)[0], expected)


def test_causal_mask_aligns_queries_to_the_end_of_the_keys():
    assert causal_mask(2, 4).tolist() == [[True, True, True, False], [True, True, True, True]]


def test_score_bias_is_added_to_the_scores():
    _, ours = torch_and_attnkit(cross=False)
    x = torch.randn(1, 4, DIM)
    block_last_key = torch.zeros(1, HEADS, 4, 4)
    block_last_key[..., -1] = float("-inf")
    masked = ours(x, mask=torch.tensor([[True, True, True, False]])[:, None, None, :])[0]
    biased = ours(x, bias=block_last_key)[0]
    assert_close(biased, masked)


def test_self_attention_cache_grows_by_the_new_steps():
    _, ours = torch_and_attnkit(cross=False)
    x = torch.randn(2, 5, DIM)
    full = ours(x, causal=True)[0]
    cache = KVCache()
    steps = [ours(x[:, t : t + 1], causal=True, cache=cache)[0] for t in range(5)]
    assert cache.length == 5 and cache.key is not None and cache.key.shape[:2] == (2, HEADS)
    assert_close(torch.cat(steps, dim=1), full)
    for _ in range(20):  # past the first room (16 steps): it grows, and the earlier keys move with it
        steps.append(ours(x[:, :1], causal=True, cache=cache)[0])
    assert cache.length == 25 and cache.key.shape[2] >= 25
    longer = torch.cat([x, x[:, :1].expand(2, 20, DIM)], dim=1)
    assert_close(torch.cat(steps, dim=1), ours(longer, causal=True)[0])


def test_a_decoding_step_reads_only_the_filled_steps_of_the_cache():
    """Each step after the first reads the cache's whole room (with zeros beyond the filled steps, never attended):
    the outputs, the probabilities given back and those recorded cover the filled steps alone."""
    _, ours = torch_and_attnkit(cross=False)
    x = torch.randn(WHOLE_ROOM_MIN_ROWS, 5, DIM)
    keep = torch.ones(WHOLE_ROOM_MIN_ROWS, 5, dtype=torch.bool)
    keep[0, 1] = False  # a padded prompt
    full = ours(x, mask=keep[:, None, None, :], causal=True)[0]
    cache = KVCache()
    ours(x[:, :1], mask=keep[:, None, None, :1], causal=True, cache=cache)
    for t in range(1, 5):
        step = ours(x[:, t : t + 1], mask=keep[:, None, None, : t + 1], causal=True, cache=cache)[0]
        assert cache.key is not None and cache.key.shape[2] > t + 1  # there is room beyond the filled steps
        assert_close(step, full[:, t : t + 1])
    _, weights = ours(x[:, :1], mask=None, causal=True, cache=cache, need_weights=True)
    assert weights is not None and weights.shape == (WHOLE_ROOM_MIN_ROWS, HEADS, 1, 6)
    with record_attention(ours) as maps:
        ours(x[:, :1], causal=True, cache=cache)
    assert maps[""][0].shape == (WHOLE_ROOM_MIN_ROWS, HEADS, 1, 7)


def test_cross_attention_cache_projects_memory_once():
    _, ours = torch_and_attnkit(cross=True)
    x, memory = torch.randn(2, 3, DIM), torch.randn(2, 6, DIM)
    cache = KVCache()
    first = ours(x, memory, cache=cache)[0]
    stored = cache.key
    again = ours(x, None, cache=cache)[0]  # no memory needed once cached
    assert cache.key is stored
    torch.testing.assert_close(again, first)


def test_record_attention_collects_probabilities_and_restores_the_module():
    _, ours = torch_and_attnkit(cross=False)
    x = torch.randn(2, 4, DIM)
    with record_attention(ours) as maps:
        ours(x)
    (weights,) = maps[""]
    assert weights.shape == (2, HEADS, 4, 4)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, HEADS, 4))
    assert ours.recorded is None


def test_half_precision_on_the_cpu_takes_the_explicit_path_below_the_key_limit_and_matches_sdpa():
    _, ours = torch_and_attnkit(cross=False)
    with torch.no_grad():  # weights of the usual scale: softmax as sharp as random N(0, 1) weights make it
        for parameter in ours.parameters():  # magnifies bfloat16's rounding beyond any tolerance
            parameter.mul_(0.2)
    ours = ours.to(torch.bfloat16)
    for time in (7, HALF_EXPLICIT_MAX_KEYS + 1):
        x = torch.randn(2, time, DIM, dtype=torch.bfloat16)
        real = padding([time, time - 3], time)
        q = torch.empty(1, 1, 2, 1, dtype=torch.bfloat16)  # more than one query: not a decoding step
        k = torch.empty(1, 1, time, 1)
        assert _explicit_is_faster(q, k, 0.0, False) == (time <= HALF_EXPLICIT_MAX_KEYS)
        out, _ = ours(x, mask=real[:, None, None, :])
        reference, _ = ours(x, mask=real[:, None, None, :], need_weights=True)  # the explicit path, always
        with torch.no_grad():
            q, k, v = (ours._heads(t, HEADS) for t in ours.qkv_proj(x).chunk(3, dim=-1))
            sdpa = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=real[:, None, None, :])
            sdpa = ours.out_proj(sdpa.transpose(1, 2).reshape(2, time, DIM))
        assert_close(out.float(), sdpa.float(), tolerance=0.02)  # bfloat16 keeps 8 bits of mantissa
        assert_close(out.float(), reference.float(), tolerance=0.02)
    assert not _explicit_is_faster(torch.empty(1, 1, 2, 1), torch.empty(1, 1, 8, 1), 0.0, False)  # float32: SDPA
    assert _explicit_is_faster(torch.empty(1, 1, 1, 1), torch.empty(1, 1, 8, 1), 0.0, True)  # but a decoding step
    assert _explicit_is_faster(torch.empty(1, 1, 1, 1), torch.empty(1, 1, 8, 1), 0.1, True)  # attention dropout


def grouped_and_repeated(kv_heads: int, cross: bool = False) -> tuple[MultiHeadAttention, MultiHeadAttention]:
    """Grouped-query attention with `kv_heads` key/value heads, and the multi-head attention whose key and value
    heads are those repeated for each query head that shares them (transformers' repeat_kv): the same function."""
    torch.manual_seed(0)
    grouped = MultiHeadAttention(DIM, HEADS, num_kv_heads=kv_heads, cross=cross).eval()
    full = MultiHeadAttention(DIM, HEADS, cross=cross).eval()
    head = DIM // HEADS

    def repeated(t: torch.Tensor) -> torch.Tensor:  # (kv heads * head, ...) -> (heads * head, ...)
        return t.unflatten(0, (kv_heads, head)).repeat_interleave(HEADS // kv_heads, dim=0).flatten(0, 1)

    with torch.no_grad():
        for p in grouped.parameters():  # random biases, so that a misplaced one shows
            p.normal_()
        if cross:
            full.q_proj.load_state_dict(grouped.q_proj.state_dict())
            pairs = [(full.kv_proj, grouped.kv_proj, [kv_heads * head] * 2)]
        else:
            pairs = [(full.qkv_proj, grouped.qkv_proj, [DIM, kv_heads * head, kv_heads * head])]
        for ours, theirs, sizes in pairs:
            for name in ("weight", "bias"):
                parts = list(getattr(theirs, name).split(sizes))
                first = 0 if cross else 1
                parts[first:] = [repeated(part) for part in parts[first:]]
                getattr(ours, name).copy_(torch.cat(parts))
        full.out_proj.load_state_dict(grouped.out_proj.state_dict())
    return grouped, full


@pytest.mark.parametrize("kv_heads", [1, 2], ids=["multi-query", "grouped"])
def test_grouped_query_attention_matches_repeated_heads(kv_heads):
    grouped, full = grouped_and_repeated(kv_heads)
    assert grouped.qkv_proj.weight.shape[0] == DIM + 2 * kv_heads * DIM // HEADS
    x, real = torch.randn(3, 7, DIM), padding([7, 4, 1], 7)[:, None, None, :]
    bias = torch.randn(1, HEADS, 7, 7)  # a position scheme's bias (ALiBi, relative), per query head
    for causal in (False, True):
        out, weights = grouped(x, mask=real, causal=causal, bias=bias, need_weights=True)
        expected, expected_weights = full(x, mask=real, causal=causal, bias=bias, need_weights=True)
        assert_close(out, expected)
        assert_close(weights, expected_weights)
        assert_close(grouped(x, mask=real, causal=causal, bias=bias)[0], expected)  # SDPA's path


@pytest.mark.parametrize("kv_heads", [1, 2], ids=["multi-query", "grouped"])
def test_grouped_query_cache_holds_key_value_heads_and_decodes_as_the_whole(kv_heads):
    grouped, full = grouped_and_repeated(kv_heads)
    x, bias = torch.randn(2, 6, DIM), torch.randn(1, HEADS, 6, 6)
    expected = full(x, causal=True, bias=bias)[0]
    cache = KVCache()
    with torch.no_grad():  # a prompt of two tokens, then one token a step: the step's grouped queries share a product
        steps = [grouped(x[:, :2], causal=True, bias=bias[:, :, :2, :2], cache=cache)[0]]
        steps += [grouped(x[:, t : t + 1], causal=True, bias=bias[:, :, t : t + 1, : t + 1], cache=cache)[0]
                  for t in range(2, 6)]  # fmt: skip
    assert cache.key.shape[1] == kv_heads and cache.length == 6
    assert_close(torch.cat(steps, dim=1), expected)


def test_grouped_query_cross_attention_matches_repeated_heads():
    grouped, full = grouped_and_repeated(2, cross=True)
    x, memory, real = torch.randn(2, 5, DIM), torch.randn(2, 9, DIM), padding([9, 4], 9)[:, None, None, :]
    assert_close(grouped(x, memory, mask=real)[0], full(x, memory, mask=real)[0])
    assert_close(grouped(x[:, :1], memory, mask=real)[0], full(x[:, :1], memory, mask=real)[0])  # one query
