"""Hugging Face checkpoints in and out, from files only (no hub): BERT (MiniLM too), GPT-2, BART, Marian, T5.

A family (a module each, listed in families.py) is the settings its architecture fixes (its preset), a table of
config.json fields and a list of weight rules. A field pairs a ModelConfig setting with its config.json key, a
default and, where the two spell it differently, a conversion each way; import reads the table and export writes
it, beside the preset, which also says what a model must be to export as the family. A weight rule names an attnkit
tensor, the Hugging Face tensors it comes from, and how to go each way (copy, concatenate Q/K/V, transpose GPT-2's
Conv1D, ...); task heads (BERT's sequence and token classifiers) are rules of their own. Import and export read the
same tables, so they cannot drift apart. transformers is not needed here.
"""

from attnkit.interop.hf.families import FAMILIES, PRESETS
from attnkit.interop.hf.load import (
    build_from,
    is_hf_directory,
    load_hf_head,
    load_hf_model,
    read_generation_config,
    read_hf_config,
    read_hf_pooler,
    read_hf_weights,
)
from attnkit.interop.hf.save import TaskExport, export_hf, family_of

__all__ = [
    "FAMILIES",
    "PRESETS",
    "TaskExport",
    "build_from",
    "export_hf",
    "family_of",
    "is_hf_directory",
    "load_hf_head",
    "load_hf_model",
    "read_generation_config",
    "read_hf_config",
    "read_hf_pooler",
    "read_hf_weights",
]
