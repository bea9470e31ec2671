"""BART, and Marian (the same layout with sinusoidal positions and no embedding norm): encoder-decoders that share
one embedding between encoder, decoder and output layer."""

from __future__ import annotations

import torch

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.interop.hf.family import ACTIVATIONS, Convert, Family, Field, Rule, concat, copy, linear, norm


class Bart(Family):
    model_type = "bart"
    architecture = "BartForConditionalGeneration"
    preset = dict(
        arch="encoder-decoder",
        norm="layernorm",
        norm_first=False,
        positions="learned",
        embedding_norm=True,
        bias=True,
        attention_scale=None,
        share_embeddings=True,
        tie_output=True,
        output_bias=True,
        norm_eps=1e-5,
        output_scale=1.0,
        activation=("gelu", "gelu_tanh", "relu", "silu"),
        segments=0,
    )
    prefixes = ("model.", "")
    top_level = frozenset({"final_logits_bias"})
    fields = (
        Field("vocab_size", "vocab_size"),
        Field("dim", "d_model"),
        Field("num_heads", ("encoder_attention_heads", "decoder_attention_heads")),
        Field("ff_dim", ("encoder_ffn_dim", "decoder_ffn_dim")),
        Field("num_layers", "encoder_layers"),
        Field("num_decoder_layers", "decoder_layers"),
        Field("dropout", "dropout", 0.1),
        Field("attention_dropout", "attention_dropout", 0.0),
        Field("activation", "activation_function", convert=ACTIVATIONS),
        Field("max_positions", "max_position_embeddings"),
        Field("scale_embeddings", "scale_embedding", False, Convert(bool)),
        Field("pad_id", "pad_token_id", 1),
        Field("decoder_start_id", "decoder_start_token_id", 2),
    )
    tokens = {"bos_token_id": "bos", "eos_token_id": "eos", "forced_eos_token_id": "eos"}
    constants = {
        "activation_dropout": 0.0,
        "tie_word_embeddings": True,
        "share_encoder_decoder_embeddings": True,
        "is_encoder_decoder": True,
    }

    def positions(self, stack: str) -> list[Rule]:
        return [offset_positions(f"{stack}.positions.table.weight", f"{stack}.embed_positions.weight", 2)]

    def embedding_norm(self, stack: str) -> list[Rule]:
        return norm(f"{stack}.embed_norm", f"{stack}.layernorm_embedding")

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [
            copy("encoder.embedding.weight", "shared.weight"),
            Rule("decoder.output.bias", ("final_logits_bias",), lambda t: t[0][0], lambda t: [t[None].clone()]),
        ]
        for stack, count in (("encoder", config.num_layers), ("decoder", config.decoder_layers)):
            rules += self.positions(stack) + self.embedding_norm(stack)
            for i in range(count):
                ours, theirs = f"{stack}.layers.{i}", f"{stack}.layers.{i}"
                rules += _attention(f"{ours}.self_attn", f"{theirs}.self_attn", cross=False)
                rules += norm(f"{ours}.self_attn_norm", f"{theirs}.self_attn_layer_norm")
                if stack == "decoder":
                    rules += _attention(f"{ours}.cross_attn", f"{theirs}.encoder_attn", cross=True)
                    rules += norm(f"{ours}.cross_attn_norm", f"{theirs}.encoder_attn_layer_norm")
                rules += linear(f"{ours}.ff.in_proj", f"{theirs}.fc1") + linear(f"{ours}.ff.out_proj", f"{theirs}.fc2")
                rules += norm(f"{ours}.ff_norm", f"{theirs}.final_layer_norm")
        return rules


def _replaced(fields: tuple[Field, ...], *changes: Field) -> tuple[Field, ...]:
    """`fields` with each of `changes` in place of the field for its setting."""
    changed = {f.ours: f for f in changes}
    return tuple(changed.get(f.ours, f) for f in fields)


class Marian(Bart):
    model_type = "marian"
    architecture = "MarianMTModel"
    # BART's layout with sinusoidal positions, no embedding norm, and (by default) swish
    preset = {
        **Bart.preset,
        "positions": "sinusoidal",
        "embedding_norm": False,
        "activation": ("silu", "gelu", "gelu_tanh", "relu"),
    }
    # MarianConfig scales embeddings unless told not to, and names the decoder's vocabulary size too
    fields = _replaced(
        Bart.fields,
        Field("vocab_size", ("vocab_size", "decoder_vocab_size")),
        Field("scale_embeddings", "scale_embedding", True, Convert(bool)),
    )

    def config(self, hf: dict) -> ModelConfig:
        if not hf.get("share_encoder_decoder_embeddings", True):
            raise AttnkitError("Marian models with separate source and target vocabularies are not supported")
        config = super().config(hf)
        if "decoder_start_token_id" not in hf:
            config.decoder_start_id = config.pad_id  # Marian starts decoding with its pad token
        return config

    def positions(self, stack: str) -> list[Rule]:
        return []  # sinusoids, computed (transformers recomputes its table too)

    def embedding_norm(self, stack: str) -> list[Rule]:
        return []


def offset_positions(ours: str, theirs: str, offset: int) -> Rule:
    """BART's learned positions start at row `offset`."""
    return Rule(ours, (theirs,), lambda t: t[0][offset:], lambda t: [torch.cat([t.new_zeros(offset, t.shape[1]), t])])


def _attention(ours: str, theirs: str, cross: bool) -> list[Rule]:
    if cross:
        projections = linear(f"{ours}.q_proj", f"{theirs}.q_proj") + [
            concat(f"{ours}.kv_proj.{p}", f"{theirs}.k_proj.{p}", f"{theirs}.v_proj.{p}") for p in ("weight", "bias")
        ]
    else:
        projections = [
            concat(f"{ours}.qkv_proj.{p}", *(f"{theirs}.{n}_proj.{p}" for n in "qkv")) for p in ("weight", "bias")
        ]
    return projections + linear(f"{ours}.out_proj", f"{theirs}.out_proj")
