"""RoBERTa and XLM-RoBERTa: BERT's encoder with positions counted from padding_idx + 1 and one token type, with
RobertaForSequenceClassification (a dense layer and tanh on <s>) and RobertaForTokenClassification as heads."""

from __future__ import annotations

import dataclasses

from attnkit.config import ModelConfig
from attnkit.interop.hf.bert import Bert, embedding_rules, layer_rules
from attnkit.interop.hf.family import Family, Field, Head, Rule, linear

CLASSIFIER = frozenset(f"classifier.{name}" for name in ("weight", "bias"))


def classification_head(architecture: str, prefix: str, pooling: str) -> Head:
    """The sequence classifier of RoBERTa, MPNet and ELECTRA: <s> -> dense -> activation -> out_proj, all under
    `classifier.`; attnkit's Classifier computes it as its pooler (its activation named by `pooling`) and head."""
    rules = [*linear("pooler", "classifier.dense"), *linear("head", "classifier.out_proj")]
    top_level = frozenset(name for rule in rules for name in rule.theirs)
    return Head(architecture, prefix, rules, top_level, pooling=pooling)


class PaddingOffset(Family):
    """A family whose learned positions start at padding_idx + 1 (RoBERTa, MPNet): config.json counts those
    first rows in max_position_embeddings, attnkit does not."""

    def config(self, hf: dict) -> ModelConfig:
        config = super().config(hf)
        return dataclasses.replace(config, max_positions=config.max_positions - self.offset(config))

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        hf = super().hf_config(config, special)
        return {**hf, "max_position_embeddings": config.max_positions + self.offset(config)}

    @staticmethod
    def offset(config: ModelConfig) -> int:
        return config.pad_id + 1


class Roberta(PaddingOffset, Bert):
    model_type = "roberta"
    architecture = "RobertaModel"
    preset = {**Bert.preset, "segments": 0}  # one token type, which attnkit folds into the positions
    prefixes = ("", "roberta.")
    fields = (
        *(field for field in Bert.fields if field.ours not in ("segments", "pad_id", "max_positions", "norm_eps")),
        Field("norm_eps", "layer_norm_eps", 1e-5),
        Field("max_positions", "max_position_embeddings", 514),
        Field("pad_id", "pad_token_id", 1),
    )
    constants = {"position_embedding_type": "absolute", "type_vocab_size": 1}
    heads = {
        "sequence": classification_head("RobertaForSequenceClassification", "roberta.", "pooler"),
        "token": Head("RobertaForTokenClassification", "roberta.", linear("head", "classifier"), CLASSIFIER),
    }

    def rules(self, config: ModelConfig) -> list[Rule]:
        layers = [rule for i in range(config.num_layers) for rule in layer_rules(config, i)]
        return [*embedding_rules(config, self.offset(config), types=1), *layers]


class XLMRoberta(Roberta):
    """XLM-R: RoBERTa's architecture with a multilingual SentencePiece vocabulary."""

    model_type = "xlm-roberta"
    architecture = "XLMRobertaModel"
    heads = {
        "sequence": classification_head("XLMRobertaForSequenceClassification", "roberta.", "pooler"),
        "token": Head("XLMRobertaForTokenClassification", "roberta.", linear("head", "classifier"), CLASSIFIER),
    }
