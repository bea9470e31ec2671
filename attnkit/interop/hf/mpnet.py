"""MPNet (all-mpnet-base-v2 among others): BERT's post-norm encoder with learned positions counted from
padding_idx + 1 and T5's relative position buckets (one table for all layers), no token types; with
MPNetForSequenceClassification (a dense layer and tanh on <s>) and MPNetForTokenClassification as heads."""

from __future__ import annotations

from attnkit.config import ModelConfig
from attnkit.data.tokenizer import BOS, EOS, MASK, PAD, UNK
from attnkit.interop.hf.bert import Bert, offset_positions
from attnkit.interop.hf.family import Field, Head, Rule, concat, copy, linear, norm
from attnkit.interop.hf.roberta import CLASSIFIER, PaddingOffset, classification_head


class MPNet(PaddingOffset):
    model_type = "mpnet"
    architecture = "MPNetModel"
    preset = dict(
        arch="encoder",
        norm="layernorm",
        norm_first=False,
        positions="learned+relative",
        relative_buckets=32,  # MPNet's code computes 32 buckets whatever its config.json says
        relative_max_distance=128,  # fixed in MPNet's code
        embedding_norm=True,
        embedding_dim=None,
        scale_embeddings=False,
        bias=True,
        attention_scale=None,
        activation=("gelu", "gelu_tanh", "relu", "silu"),
        segments=0,
    )
    prefixes = ("", "mpnet.")
    fields = (  # BERT's, without token types, positions counted as RoBERTa's
        *(field for field in Bert.fields if field.ours not in ("segments", "pad_id", "max_positions")),
        Field("max_positions", "max_position_embeddings", 514),
        Field("pad_id", "pad_token_id", 1),
    )
    constants = {"relative_attention_num_buckets": 32}
    # MPNet's code counts positions after the tokens that are not id 1, its <pad>: a vocabulary trained for it
    # puts <pad> there
    special_tokens = [BOS, PAD, EOS, UNK, MASK]
    pooler = linear("pooler", "pooler.dense")  # MPNetModel's pooler, a start for the classifier's dense layer
    heads = {
        "sequence": classification_head("MPNetForSequenceClassification", "mpnet.", "pooler"),
        "token": Head("MPNetForTokenClassification", "mpnet.", linear("head", "classifier"), CLASSIFIER),
    }

    @staticmethod
    def offset(config: ModelConfig) -> int:
        return 2  # positions start after padding_idx 1 whatever pad_token_id is

    def differences(self, config: ModelConfig) -> list[str]:
        return super().differences(config) + ([] if config.pad_id == 1 else ["pad_id=1"])

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = [
            copy("embedding.weight", "embeddings.word_embeddings.weight"),
            offset_positions("embeddings.position_embeddings.weight", self.offset(config)),
            *norm("embed_norm", "embeddings.LayerNorm"),
            copy("positions.bias.weight", "encoder.relative_attention_bias.weight"),
        ]
        for i in range(config.num_layers):
            ours, theirs = f"layers.{i}", f"encoder.layer.{i}"
            rules += [
                *[
                    concat(f"{ours}.self_attn.qkv_proj.{p}", *(f"{theirs}.attention.attn.{n}.{p}" for n in "qkv"))
                    for p in ("weight", "bias")
                ],
                *linear(f"{ours}.self_attn.out_proj", f"{theirs}.attention.attn.o"),
                *norm(f"{ours}.self_attn_norm", f"{theirs}.attention.LayerNorm"),
                *linear(f"{ours}.ff.in_proj", f"{theirs}.intermediate.dense"),
                *linear(f"{ours}.ff.out_proj", f"{theirs}.output.dense"),
                *norm(f"{ours}.ff_norm", f"{theirs}.output.LayerNorm"),
            ]
        return rules
