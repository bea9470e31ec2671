"""ELECTRA (its discriminator): BERT's encoder, without pooler, whose embeddings may be narrower than its layers
and projected up; with ElectraForSequenceClassification (a dense layer and GELU on [CLS]) and
ElectraForTokenClassification as heads."""

from __future__ import annotations

import dataclasses

from attnkit.config import ModelConfig
from attnkit.interop.hf.bert import Bert, embedding_rules, layer_rules
from attnkit.interop.hf.family import Head, Rule, linear
from attnkit.interop.hf.roberta import CLASSIFIER, classification_head


class Electra(Bert):
    model_type = "electra"
    architecture = "ElectraModel"
    preset = {key: value for key, value in Bert.preset.items() if key != "embedding_dim"}  # any embedding width
    prefixes = ("", "electra.")
    pooler = None
    heads = {
        "sequence": classification_head("ElectraForSequenceClassification", "electra.", "pooler_gelu"),
        "token": Head("ElectraForTokenClassification", "electra.", linear("head", "classifier"), CLASSIFIER),
    }

    def config(self, hf: dict) -> ModelConfig:
        config = super().config(hf)
        width = hf.get("embedding_size", config.dim)
        return dataclasses.replace(config, embedding_dim=None if width == config.dim else width)

    def hf_config(self, config: ModelConfig, special: dict[str, int | None]) -> dict:
        return {**super().hf_config(config, special), "embedding_size": config.embedding_width}

    def rules(self, config: ModelConfig) -> list[Rule]:
        rules = embedding_rules(config)
        if config.embedding_dim is not None:
            rules += linear("embed_proj", "embeddings_project")
        return [*rules, *[rule for i in range(config.num_layers) for rule in layer_rules(config, i)]]
