"""Llama (Llama 2 and 3, SmolLM2, TinyLlama), and the decoders of its layout: Mistral, and Qwen2 (biases on Q, K and
V). Pre-norm RMSNorm layers with grouped-query attention, rotary positions and a SwiGLU feed-forward; written as
LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM."""

from __future__ import annotations

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.interop.hf.family import Family, Field, Rule, concat, copy, decoder_heads, linear, names, norm

# the feed-forward of these families is always gated: hidden_act names the gate's activation
GATED = names(
    {"silu": "swiglu", "swish": "swiglu", "gelu_pytorch_tanh": "geglu_tanh", "gelu_new": "geglu_tanh", "gelu": "geglu"},
    lambda name: f"hidden_act {name!r} is not supported (supported: silu, gelu, gelu_pytorch_tanh)",
)
ROPE_TYPES = ("default", "linear", "llama3")


class Llama(Family):
    model_type = "llama"
    architecture = "LlamaForCausalLM"
    preset = dict(
        arch="decoder",
        norm="rmsnorm",
        norm_first=True,
        positions="rotary",
        embedding_norm=False,
        scale_embeddings=False,
        bias=(False, True),  # attention_bias with mlp_bias: biases on every projection, or none
        attention_scale=None,
        tie_output=(True, False),
        output_bias=False,
        output_scale=1.0,
        activation=("swiglu", "geglu_tanh", "geglu"),
        segments=0,
        embedding_dim=None,
    )
    prefixes = ("model.", "")
    top_level = frozenset({"lm_head.weight"})
    heads = decoder_heads("Llama", "model.", "score")
    holds = frozenset({"num_kv_heads", "head_size", "rotary_scaling"})
    fields = (
        Field("vocab_size", "vocab_size"),
        Field("dim", "hidden_size"),
        Field("num_heads", "num_attention_heads"),
        Field("num_kv_heads", "num_key_value_heads", None),
        Field("head_size", "head_dim", None),
        Field("ff_dim", "intermediate_size"),
        Field("num_layers", "num_hidden_layers"),
        Field("activation", "hidden_act", "silu", GATED),
        Field("norm_eps", "rms_norm_eps", 1e-6),
        Field("max_positions", "max_position_embeddings", 2048),
        Field("attention_dropout", "attention_dropout", 0.0),
        Field("tie_output", "tie_word_embeddings", False),
    )
    tokens = {"bos_token_id": "bos", "eos_token_id": "eos"}

    def settings(self, hf: dict) -> dict:
        settings = super().settings(hf)
        settings.update(rope_settings(hf), bias=self.biases(hf), dropout=0.0)  # no dropout but on attention
        window = self.sliding_window(hf)
        if window is not None and window < settings["max_positions"]:
            raise AttnkitError(
                f"sliding_window {window} (each token attends to the {window} before it) is shorter than "
                f"max_position_embeddings {settings['max_positions']}; attnkit attends to every earlier token"
            )
        settings["pad_id"] = padding_id(hf)
        if settings["num_kv_heads"] == settings["num_heads"]:
            settings["num_kv_heads"] = None
        if settings["head_size"] is not None and settings["head_size"] * settings["num_heads"] == settings["dim"]:
            settings["head_size"] = None
        return settings

    def biases(self, hf: dict) -> bool:
        """Llama's attention_bias (Q, K, V and output) with mlp_bias: attnkit's `bias`, which sets both."""
        attention, mlp = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
        if attention != mlp:
            raise AttnkitError(
                f"attention_bias {str(attention).lower()} with mlp_bias {str(mlp).lower()}: attnkit puts biases on "
                "every projection or on none"
            )
        return attention

    def sliding_window(self, hf: dict) -> int | None:
        """How far back a token attends, where the family limits it (Mistral's sliding window); None: every token."""
        return None

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        return {
            **super().hf_config(config, special),
            "num_key_value_heads": config.kv_heads,
            "head_dim": config.head_dim,
            **self.bias_keys(config),
            **rope_keys(config),
        }

    def bias_keys(self, config: ModelConfig) -> dict:
        return {"attention_bias": config.bias, "mlp_bias": config.bias}

    def norm(self, ours: str, theirs: str) -> list[Rule]:
        return norm(ours, theirs, bias=False)

    def rules(self, config: ModelConfig) -> list[Rule]:
        head, queries = config.head_dim, config.num_heads * config.head_dim
        sizes = [queries, config.kv_heads * head, config.kv_heads * head]
        rules = [copy("embedding.weight", "embed_tokens.weight")]
        if not config.tie_output:
            rules.append(copy("output.weight", "lm_head.weight"))
        for i in range(config.num_layers):
            ours, theirs = f"layers.{i}", f"layers.{i}"
            attention, mlp = f"{theirs}.self_attn", f"{theirs}.mlp"
            rules += self.norm(f"{ours}.self_attn_norm", f"{theirs}.input_layernorm")
            for p in ["weight"] + (["bias"] if config.has_qkv_bias else []):
                rules.append(concat(f"{ours}.self_attn.qkv_proj.{p}", *(f"{attention}.{n}_proj.{p}" for n in "qkv"),
                                    sizes=sizes))  # fmt: skip
            rules += linear(f"{ours}.self_attn.out_proj", f"{attention}.o_proj", config.bias)
            rules += self.norm(f"{ours}.ff_norm", f"{theirs}.post_attention_layernorm")
            for p in ["weight"] + (["bias"] if config.bias else []):
                rules.append(concat(f"{ours}.ff.in_proj.{p}", f"{mlp}.gate_proj.{p}", f"{mlp}.up_proj.{p}"))
            rules += linear(f"{ours}.ff.out_proj", f"{mlp}.down_proj", config.bias)
        return rules + self.norm("final_norm", "norm")


class Mistral(Llama):
    """Llama's layout without biases; its sliding window must reach as far as its positions."""

    model_type = "mistral"
    architecture = "MistralForCausalLM"
    heads = decoder_heads("Mistral", "model.", "score")
    preset = {**Llama.preset, "bias": False}

    def biases(self, hf: dict) -> bool:
        return False

    def sliding_window(self, hf: dict) -> int | None:
        return hf.get("sliding_window")

    def bias_keys(self, config: ModelConfig) -> dict:
        return {"sliding_window": None}


class Qwen2(Mistral):
    """Llama's layout with biases on Q, K and V (and nowhere else); a sliding window only if use_sliding_window."""

    model_type = "qwen2"
    architecture = "Qwen2ForCausalLM"
    heads = decoder_heads("Qwen2", "model.", "score")
    preset = {**Llama.preset, "bias": False, "qkv_bias": True}
    holds = Llama.holds | {"qkv_bias"}

    def sliding_window(self, hf: dict) -> int | None:
        return hf.get("sliding_window") if hf.get("use_sliding_window") else None

    def bias_keys(self, config: ModelConfig) -> dict:
        return {"use_sliding_window": False, "sliding_window": None}


def padding_id(hf: dict) -> int:
    """pad_token_id, else the (first) end token, which these families pad with if at all, else 0."""
    pad = hf.get("pad_token_id")
    if pad is None:
        pad = hf.get("eos_token_id")
        pad = (pad or [0])[0] if isinstance(pad, list) else pad
    if pad is None:
        return 0
    if not isinstance(pad, int) or isinstance(pad, bool) or pad < 0:
        raise AttnkitError(f"pad_token_id or eos_token_id: expected a token id, got {pad!r}")
    return pad


def rope_settings(hf: dict) -> dict:
    """The rotary settings of config.json: rope_theta and rope_scaling (transformers 4), or rope_parameters (5)."""
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise AttnkitError(f"rope_parameters: expected a mapping, got {rope!r}")
    kind = rope.get("rope_type", rope.get("type", "default"))
    partial = rope.get("partial_rotary_factor", hf.get("partial_rotary_factor", 1.0))
    if partial != 1.0:
        raise AttnkitError(f"partial_rotary_factor {partial}: attnkit rotates every dimension of a head")
    settings = {"rotary_base": float(rope.get("rope_theta", hf.get("rope_theta", 10000.0)))}
    if kind == "default":
        return settings
    if kind not in ROPE_TYPES:
        raise AttnkitError(f"rope_type {kind!r} is not supported (supported: {', '.join(ROPE_TYPES)})")
    settings.update(rotary_scaling=kind, rotary_factor=float(rope["factor"]))
    if kind == "llama3":
        settings.update(
            rotary_low_freq_factor=float(rope["low_freq_factor"]),
            rotary_high_freq_factor=float(rope["high_freq_factor"]),
            rotary_original_positions=int(rope["original_max_position_embeddings"]),
        )
    return settings


def rope_keys(config: ModelConfig) -> dict:
    """config.json's rope_theta and rope_scaling, as transformers 4 and 5 both read them."""
    scaling = None
    if config.rotary_scaling != "none":
        scaling = {"rope_type": config.rotary_scaling, "factor": config.rotary_factor}
    if config.rotary_scaling == "llama3":
        scaling.update(
            low_freq_factor=config.rotary_low_freq_factor,
            high_freq_factor=config.rotary_high_freq_factor,
            original_max_position_embeddings=config.rotary_original_positions,
        )
    return {"rope_theta": config.rotary_base, "rope_scaling": scaling}
