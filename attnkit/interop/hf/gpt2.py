"""GPT-2: a decoder whose output layer is its embedding, written as GPT2LMHeadModel."""

from __future__ import annotations

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.interop.hf.family import ACTIVATIONS, Family, Field, Rule, copy, decoder_heads, norm


class GPT2(Family):
    model_type = "gpt2"
    architecture = "GPT2LMHeadModel"
    preset = dict(
        arch="decoder",
        norm="layernorm",
        norm_first=True,
        positions="learned",
        embedding_norm=False,
        scale_embeddings=False,
        bias=True,
        attention_scale=None,
        tie_output=True,
        output_bias=False,
        output_scale=1.0,
        activation=("gelu_tanh", "gelu", "relu", "silu"),
        segments=0,
    )
    prefixes = ("transformer.", "")
    heads = decoder_heads("GPT2", "transformer.", "classifier")
    fields = (
        Field("vocab_size", "vocab_size"),
        Field("dim", "n_embd"),
        Field("num_heads", "n_head"),
        Field("ff_dim", "n_inner"),
        Field("num_layers", "n_layer"),
        Field("dropout", ("resid_pdrop", "embd_pdrop"), 0.1),
        Field("attention_dropout", "attn_pdrop", 0.1),
        Field("activation", "activation_function", "gelu_new", ACTIVATIONS),
        Field("norm_eps", "layer_norm_epsilon", 1e-5),
        Field("max_positions", "n_positions", 1024),
    )
    tokens = {"bos_token_id": "bos", "eos_token_id": "eos"}
    constants = {"tie_word_embeddings": True}

    def config(self, hf: dict) -> ModelConfig:
        width = hf["n_embd"]
        inner = hf.get("n_inner") or (4 * width if isinstance(width, int) else width)  # null: 4 x n_embd
        config = super().config({**hf, "n_inner": inner})
        pad = hf.get("pad_token_id") or hf.get("eos_token_id") or 0  # GPT-2 pads, if at all, with eos
        if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
            raise AttnkitError(f"pad_token_id or eos_token_id: expected a token id, got {pad!r}")
        config.pad_id = pad
        return config

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [copy("embedding.weight", "wte.weight"), copy("positions.table.weight", "wpe.weight")]
        for i in range(config.num_layers):
            ours, theirs = f"layers.{i}", f"h.{i}"
            rules += [
                *norm(f"{ours}.self_attn_norm", f"{theirs}.ln_1"),
                transposed(f"{ours}.self_attn.qkv_proj.weight", f"{theirs}.attn.c_attn.weight"),
                copy(f"{ours}.self_attn.qkv_proj.bias", f"{theirs}.attn.c_attn.bias"),
                transposed(f"{ours}.self_attn.out_proj.weight", f"{theirs}.attn.c_proj.weight"),
                copy(f"{ours}.self_attn.out_proj.bias", f"{theirs}.attn.c_proj.bias"),
                *norm(f"{ours}.ff_norm", f"{theirs}.ln_2"),
                transposed(f"{ours}.ff.in_proj.weight", f"{theirs}.mlp.c_fc.weight"),
                copy(f"{ours}.ff.in_proj.bias", f"{theirs}.mlp.c_fc.bias"),
                transposed(f"{ours}.ff.out_proj.weight", f"{theirs}.mlp.c_proj.weight"),
                copy(f"{ours}.ff.out_proj.bias", f"{theirs}.mlp.c_proj.bias"),
            ]
        return rules + norm("final_norm", "ln_f")


def transposed(ours: str, theirs: str) -> Rule:
    """GPT-2's Conv1D stores (in, out); nn.Linear stores (out, in)."""
    return Rule(ours, (theirs,), lambda t: t[0].t().contiguous(), lambda t: [t.t().contiguous()])
