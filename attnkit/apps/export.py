"""`attnkit export`: a trained or pretrained attnkit model (or an imported one) written as a Hugging Face directory
(config.json, model.safetensors, tokenizer.json) that transformers loads with the same predictions; the ONNX form is
attnkit.apps.onnx_export's. What is written for a task, its head and settings, is the task's to say."""

from __future__ import annotations

import os

from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.hf import export_hf


def export(path: str | os.PathLike, out: str | os.PathLike, trust_pickle: bool = False) -> str:
    """Write the model at `path` as a Hugging Face checkpoint in `out`; returns the family it was written as.
    A task model goes with its head (classify, pair and regress as the family's sequence classifier, tag as its
    token classifier), seq2seq with its decoding; a pretrained one as the family's plain model."""
    pipeline = Pipeline.load(path, trust_pickle)
    if len(pipeline.members) > 1:
        raise AttnkitError(
            f"{path}: an ensemble of {len(pipeline.members)} models is no one Hugging Face model; export each of "
            f"{path}/members/0, {path}/members/1, ... (or the ensemble with --onnx: every member, one manifest)"
        )
    return export_hf(pipeline.task.hf_export(pipeline.model), pipeline.tokenizer, out, where=str(path))
