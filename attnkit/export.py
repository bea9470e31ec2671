"""`attnkit export`: a trained or pretrained attnkit model written in another format. Today: Hugging Face
directories (config.json, model.safetensors, tokenizer.json) that transformers loads with the same outputs."""

from __future__ import annotations

import os

from attnkit.interop.hf import export_hf
from attnkit.nn import Decoder, Encoder, EncoderDecoder
from attnkit.pipeline import Pipeline, encoder_of


def export(path: str | os.PathLike, out: str | os.PathLike, trust_pickle: bool = False) -> str:
    """Write the model at `path` as a Hugging Face checkpoint in `out`; returns the family it was written as.
    A task model (classifier, tagger) is written as its encoder: task heads have no Hugging Face twin."""
    pipeline = Pipeline.load(path, trust_pickle)
    model = pipeline.model
    if not isinstance(model, (Encoder, Decoder, EncoderDecoder)):
        model = encoder_of(model)
    return export_hf(model, pipeline.tokenizer, out)
