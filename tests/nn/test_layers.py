"""Encoder and decoder layers against PyTorch's nn.TransformerEncoderLayer / nn.TransformerDecoderLayer."""

import pytest
import torch
from torch import nn

from attnkit.config import ModelConfig
from attnkit.nn.attention import causal_mask
from attnkit.nn.layers import DecoderLayer, EncoderLayer, FeedForward
from tests.nn.conftest import padding
from tests.numerics import assert_close

DIM, HEADS, FF = 32, 4, 64


def config(norm_first: bool, activation: str = "relu") -> ModelConfig:
    return ModelConfig(dim=DIM, num_heads=HEADS, ff_dim=FF, dropout=0.0, activation=activation, norm_first=norm_first)


def randomize(module: nn.Module) -> None:
    """Random values everywhere (norm weights and biases included), so that a weight copied to the wrong place shows."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.startswith("norm") and name.endswith("weight") else 0.0))


def copy_attention(ours: nn.Module, reference: nn.MultiheadAttention, cross: bool) -> None:
    with torch.no_grad():
        if cross:
            ours.q_proj.weight.copy_(reference.in_proj_weight[:DIM])
            ours.q_proj.bias.copy_(reference.in_proj_bias[:DIM])
            ours.kv_proj.weight.copy_(reference.in_proj_weight[DIM:])
            ours.kv_proj.bias.copy_(reference.in_proj_bias[DIM:])
        else:
            ours.qkv_proj.weight.copy_(reference.in_proj_weight)
            ours.qkv_proj.bias.copy_(reference.in_proj_bias)
        ours.out_proj.load_state_dict(reference.out_proj.state_dict())


def copy_feed_forward_and_norms(ours: nn.Module, reference: nn.Module, norms: dict[str, str]) -> None:
    ours.ff.in_proj.load_state_dict(reference.linear1.state_dict())
    ours.ff.out_proj.load_state_dict(reference.linear2.state_dict())
    for our_name, their_name in norms.items():
        getattr(ours, our_name).load_state_dict(getattr(reference, their_name).state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
@pytest.mark.parametrize("activation", ["relu", "gelu"])
def test_encoder_layer_matches_torch(norm_first, activation):
    torch.manual_seed(0)
    reference = nn.TransformerEncoderLayer(
        DIM, HEADS, FF, dropout=0.0, activation=activation, batch_first=True, norm_first=norm_first
    ).eval()
    randomize(reference)
    ours = EncoderLayer(config(norm_first, activation)).eval()
    copy_attention(ours.self_attn, reference.self_attn, cross=False)
    copy_feed_forward_and_norms(ours, reference, {"self_attn_norm": "norm1", "ff_norm": "norm2"})

    x = torch.randn(3, 8, DIM)
    real = padding([8, 5, 2], 8)
    expected = reference(x, src_key_padding_mask=~real)
    out = ours(x, real[:, None, None, :])
    # torch's fast path leaves padded positions at zero; only real positions are defined
    assert_close(out[real], expected[real])


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch(norm_first):
    torch.manual_seed(0)
    reference = nn.TransformerDecoderLayer(DIM, HEADS, FF, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    randomize(reference)
    ours = DecoderLayer(config(norm_first), cross=True).eval()
    copy_attention(ours.self_attn, reference.self_attn, cross=False)
    copy_attention(ours.cross_attn, reference.multihead_attn, cross=True)
    copy_feed_forward_and_norms(
        ours, reference, {"self_attn_norm": "norm1", "cross_attn_norm": "norm2", "ff_norm": "norm3"}
    )

    x, memory = torch.randn(3, 6, DIM), torch.randn(3, 9, DIM)
    real, memory_real = padding([6, 4, 1], 6), padding([9, 2, 5], 9)
    expected = reference(
        x,
        memory,
        tgt_mask=~causal_mask(6, 6),  # torch's boolean masks mean "may not attend"
        tgt_is_causal=True,
        tgt_key_padding_mask=~real,
        memory_key_padding_mask=~memory_real,
    )
    out = ours(x, real[:, None, None, :], memory, memory_real[:, None, None, :])
    assert_close(out[real], expected[real])


@pytest.mark.parametrize("activation", ["swiglu", "geglu"])
def test_gated_feed_forward_multiplies_gate_and_up_projections(activation):
    torch.manual_seed(0)
    ff = FeedForward(DIM, FF, activation, bias=False)
    x = torch.randn(2, 3, DIM)
    gate_weight, up_weight = ff.in_proj.weight.chunk(2, dim=0)
    act = torch.nn.functional.silu if activation == "swiglu" else torch.nn.functional.gelu
    expected = (act(x @ gate_weight.T) * (x @ up_weight.T)) @ ff.out_proj.weight.T
    assert_close(ff(x), expected)
