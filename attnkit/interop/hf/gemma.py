"""Gemma (the first): Llama's layout with a GeGLU feed-forward, embeddings scaled by sqrt(dim) and tied to the output,
heads of a width of their own, and an RMSNorm that multiplies by 1 + w (attnkit's holds 1 + w itself); written as
GemmaForCausalLM."""

from __future__ import annotations

from attnkit.config import ModelConfig
from attnkit.interop.hf.family import Field, Rule, decoder_heads, names
from attnkit.interop.hf.llama import Llama

# Gemma's gate is GELU's tanh approximation; transformers reads its legacy "gelu" as that too
GELU = names(
    {"gelu_pytorch_tanh": "geglu_tanh", "gelu": "geglu_tanh", "gelu_new": "geglu_tanh"},
    lambda name: f"hidden_activation {name!r} is not supported (supported: gelu_pytorch_tanh)",
)


class Gemma(Llama):
    model_type = "gemma"
    architecture = "GemmaForCausalLM"
    heads = decoder_heads("Gemma", "model.", "score")
    preset = {**Llama.preset, "bias": False, "scale_embeddings": True, "tie_output": True, "activation": "geglu_tanh"}
    fields = tuple(f for f in Llama.fields if f.ours not in ("activation", "head_size", "tie_output")) + (
        Field("head_size", "head_dim", 256),
        Field("activation", ("hidden_activation", "hidden_act"), None, GELU),
    )

    def settings(self, hf: dict) -> dict:
        # hidden_activation (transformers 4) where set, else hidden_act
        activation = hf.get("hidden_activation") or hf.get("hidden_act") or "gelu_pytorch_tanh"
        return super().settings({**hf, "hidden_activation": activation})

    def biases(self, hf: dict) -> bool:
        return False

    def norm(self, ours: str, theirs: str) -> list[Rule]:
        """Gemma's norm weight w scales by 1 + w: attnkit's RMSNorm holds 1 + w."""
        return [Rule(f"{ours}.weight", (f"{theirs}.weight",), lambda t: t[0] + 1, lambda t: [t - 1])]

    def bias_keys(self, config: ModelConfig) -> dict:
        return {"attention_bias": False}
