"""Every Hugging Face family attnkit reads and writes. A new family is a module of its own (a Family: its preset,
config fields and weight rules) and one entry here."""

from __future__ import annotations

from attnkit.interop.hf.bart import Bart, Marian
from attnkit.interop.hf.bert import Bert
from attnkit.interop.hf.distilbert import DistilBert
from attnkit.interop.hf.electra import Electra
from attnkit.interop.hf.family import Family
from attnkit.interop.hf.gemma import Gemma
from attnkit.interop.hf.gpt2 import GPT2
from attnkit.interop.hf.llama import Llama, Mistral, Qwen2
from attnkit.interop.hf.mpnet import MPNet
from attnkit.interop.hf.roberta import Roberta, XLMRoberta
from attnkit.interop.hf.t5 import T5

FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Bert(), Roberta(), XLMRoberta(), DistilBert(), MPNet(), Electra(), Bart(), Marian(), T5(), GPT2(), Llama(),
        Mistral(), Qwen2(), Gemma(),
    )
}  # fmt: skip
PRESETS: dict[str, dict[str, object]] = {name: family.preset for name, family in FAMILIES.items()}
