"""T5 and T5 v1.1: a pre-norm encoder-decoder with RMSNorm, relative position buckets and no biases."""

from __future__ import annotations

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.interop.hf.family import Family, Field, Rule, concat, copy, names, norm

FEED_FORWARD = names(
    {"relu": "relu", "gated-gelu": "geglu_tanh", "gated-silu": "swiglu", "gelu": "gelu"},
    lambda name: f"feed_forward_proj {name!r} is not supported",
)


class T5(Family):
    model_type = "t5"
    architecture = "T5ForConditionalGeneration"
    preset = dict(
        arch="encoder-decoder",
        norm="rmsnorm",
        norm_first=True,
        positions="relative",
        embedding_norm=False,
        scale_embeddings=False,
        bias=False,
        attention_scale=1.0,
        share_embeddings=True,
        output_bias=False,
        activation=("relu", "geglu_tanh", "swiglu", "gelu"),
        segments=0,
    )
    top_level = frozenset({"lm_head.weight"})
    fields = (
        Field("vocab_size", "vocab_size"),
        Field("dim", "d_model"),
        Field("num_heads", "num_heads"),
        Field("ff_dim", "d_ff"),
        Field("num_layers", "num_layers"),
        Field("num_decoder_layers", "num_decoder_layers", None),
        Field("dropout", "dropout_rate", 0.1),
        Field("activation", "feed_forward_proj", "relu", FEED_FORWARD),
        Field("norm_eps", "layer_norm_epsilon", 1e-6),
        Field("relative_buckets", "relative_attention_num_buckets", 32),
        Field("relative_max_distance", "relative_attention_max_distance", 128),
        Field("tie_output", "tie_word_embeddings", True),
        Field("pad_id", "pad_token_id", 0),
        Field("decoder_start_id", "decoder_start_token_id", 0),
    )
    tokens = {"eos_token_id": "eos"}
    constants = {"is_encoder_decoder": True}

    def config(self, hf: dict) -> ModelConfig:
        if hf["d_kv"] * hf["num_heads"] != hf["d_model"]:
            raise AttnkitError(
                f"d_kv x num_heads ({hf['d_kv']} x {hf['num_heads']}) must equal d_model ({hf['d_model']})"
            )
        config = super().config(hf)
        # T5 scales the decoder output by d_model^-0.5 before the output layer, v1.1 does not; configs before
        # transformers 5 said so with tie_word_embeddings, later ones with scale_decoder_outputs
        if hf.get("scale_decoder_outputs", config.tie_output):
            config.output_scale = config.dim**-0.5
        return config

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        scaled = config.output_scale != 1.0
        return {**super().hf_config(config, special), "d_kv": config.head_dim, "scale_decoder_outputs": scaled}

    def differences(self, config: ModelConfig) -> list[str]:
        scaled = config.output_scale in (1.0, config.dim**-0.5)  # T5 scales its output by dim^-0.5, v1.1 not
        return super().differences(config) + ([] if scaled else ["output_scale in (1.0, dim ** -0.5)"])

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [copy("encoder.embedding.weight", "shared.weight")]
        if not config.tie_output:
            rules.append(copy("decoder.output.weight", "lm_head.weight"))
        gated = config.activation in ("geglu_tanh", "swiglu")
        for stack, count in (("encoder", config.num_layers), ("decoder", config.decoder_layers)):
            rules.append(
                copy(
                    f"{stack}.positions.bias.weight",
                    f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                )
            )
            for i in range(count):
                ours, theirs = f"{stack}.layers.{i}", f"{stack}.block.{i}.layer"
                rules += _attention(f"{ours}.self_attn", f"{theirs}.0.SelfAttention", cross=False)
                rules += norm(f"{ours}.self_attn_norm", f"{theirs}.0.layer_norm", bias=False)
                ff = 1
                if stack == "decoder":
                    rules += _attention(f"{ours}.cross_attn", f"{theirs}.1.EncDecAttention", cross=True)
                    rules += norm(f"{ours}.cross_attn_norm", f"{theirs}.1.layer_norm", bias=False)
                    ff = 2
                dense = f"{theirs}.{ff}.DenseReluDense"
                if gated:
                    rules.append(concat(f"{ours}.ff.in_proj.weight", f"{dense}.wi_0.weight", f"{dense}.wi_1.weight"))
                else:
                    rules.append(copy(f"{ours}.ff.in_proj.weight", f"{dense}.wi.weight"))
                rules.append(copy(f"{ours}.ff.out_proj.weight", f"{dense}.wo.weight"))
                rules += norm(f"{ours}.ff_norm", f"{theirs}.{ff}.layer_norm", bias=False)
            rules += norm(f"{stack}.final_norm", f"{stack}.final_layer_norm", bias=False)
        return rules


def _attention(ours: str, theirs: str, cross: bool) -> list[Rule]:
    if cross:
        projections = [
            copy(f"{ours}.q_proj.weight", f"{theirs}.q.weight"),
            concat(f"{ours}.kv_proj.weight", f"{theirs}.k.weight", f"{theirs}.v.weight"),
        ]
    else:
        projections = [concat(f"{ours}.qkv_proj.weight", *(f"{theirs}.{n}.weight" for n in "qkv"))]
    return projections + [copy(f"{ours}.out_proj.weight", f"{theirs}.o.weight")]
