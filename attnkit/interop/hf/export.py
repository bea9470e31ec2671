"""Writing an attnkit model, and its tokenizer, as a Hugging Face checkpoint directory."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch
from tokenizers import processors

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, WEIGHTS_FILE, atomic_directory, write_json
from attnkit.interop.hf.base import Family, Head, Rule, Tensors
from attnkit.interop.hf.load import FAMILIES


@dataclass
class TaskExport:
    """What export needs of a trained task model besides its weights."""

    name: str  # classify, tag or seq2seq
    specials: str  # around an input: both (<s> text </s>), end (text </s>) or none (Task.specials)
    labels: list[str] = field(default_factory=list)  # classify, tag: the name of each output
    max_length: int | None = None  # classify, seq2seq: inputs are cut to this many tokens
    generation: dict = field(default_factory=dict)  # seq2seq: attnkit's decoding, as transformers' generation config


def export_hf(
    model: torch.nn.Module,
    tokenizer: object,
    out: str | os.PathLike,
    task: TaskExport | None = None,
    where: str = "model",
) -> str:
    """Write `model` (with `tokenizer`) as a Hugging Face checkpoint directory; returns the family's name. A task
    model becomes the family's class for the task, with its head; only an architecture a family holds is written."""
    headed = task is not None and task.name in ("classify", "tag")
    base = model.encoder if headed else model
    family = family_of(base.config, where)
    head = _head(family, model, task.name, where) if headed else None
    prefix = head.prefix if head else family.prefixes[0]
    tensors = _hf_tensors(family.rules(base.config), base.state_dict(), prefix, family.top_level)
    special = {role: getattr(tokenizer, f"{role}_id") for role in ("bos", "eos", "pad", "unk")}
    special["start"] = base.config.decoder_start_id if base.config.decoder_start_id is not None else special["bos"]
    config = {**family.hf_config(base.config, special), "torch_dtype": "float32"}
    if head is not None:
        tensors.update(_hf_tensors(head.rules, model.state_dict(), head.prefix, head.top_level))
        labels = task.labels
        config.update(architectures=[head.architecture], **head.config)
        config.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    with atomic_directory(out) as tmp:
        write_json(tmp / CONFIG_FILE, config)
        safetensors.torch.save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if task is not None and task.generation:
            write_json(tmp / "generation_config.json", task.generation)
        _save_tokenizer(tokenizer, tmp, task)
    return family.model_type


def family_of(config: ModelConfig, where: str = "model") -> Family:
    """The family whose architecture `config` is; if none, an error that names the closest and how to train it."""
    differences = {name: family.differences(config) for name, family in FAMILIES.items()}
    for name, wrong in differences.items():
        if not wrong:
            return FAMILIES[name]
    closest = min(differences, key=lambda n: (any(w.startswith("arch") for w in differences[n]), len(differences[n])))
    raise AttnkitError(
        f"{where}: no Hugging Face family holds this architecture (closest: {closest}, which needs "
        f"{', '.join(differences[closest])}); train with --preset {closest} (model.preset: {closest}) to get one "
        "that exports"
    )


def _head(family: Family, model: torch.nn.Module, task: str, where: str) -> Head:
    head = family.heads.get(task)
    if head is None:
        raise AttnkitError(f"{where}: Hugging Face {family.model_type} has no model class for task {task}")
    if getattr(model, "shapes", None) is not None:
        raise AttnkitError(
            f"{where}: a tagger trained with task.word_shapes reads word shapes, which {head.architecture} cannot"
        )
    pooling = getattr(model, "pooling", None)
    if head.pooling is not None and pooling != head.pooling:
        raise AttnkitError(
            f"{where}: a classifier with task.pooling={pooling} cannot become {head.architecture}, which pools as "
            f"task.pooling={head.pooling}; train with task.pooling: {head.pooling} (the default with --preset "
            f"{family.model_type})"
        )
    return head


def _hf_tensors(rules: list[Rule], state: Tensors, prefix: str, top_level: frozenset[str] = frozenset()) -> Tensors:
    """The Hugging Face tensors that `rules` make of attnkit's `state`, named under `prefix`."""
    tensors = {}
    for rule in rules:
        for hf_name, value in zip(rule.theirs, rule.to_theirs(state[rule.ours].detach())):
            tensors[hf_name if hf_name in top_level else prefix + hf_name] = value.contiguous().clone()
    return tensors


def _save_tokenizer(tokenizer: object, directory: Path, task: TaskExport | None) -> None:
    """tokenizer.json and tokenizer_config.json; for a task model, tokenizer.json adds the special tokens that the
    task's inputs have, so that transformers' tokenizer(text) gives the ids attnkit gives the model."""
    settings = _tokenizer_config(tokenizer)
    if task is None:
        tokenizer.save(directory / "tokenizer.json")
    else:
        save_with_specials(tokenizer, directory / "tokenizer.json", task.specials)
        if task.max_length is not None:
            settings["model_max_length"] = task.max_length
    write_json(directory / "tokenizer_config.json", settings)


def save_with_specials(tokenizer: object, file: Path, specials: str) -> None:
    """tokenizer.json whose encode adds the special tokens that attnkit gives a task's inputs: both
    (<s> text </s>, Tokenizer.add_specials), end (text </s>) or none."""
    backend = type(tokenizer.backend).from_str(tokenizer.backend.to_str())
    backend.post_processor = _template(tokenizer, specials)
    backend.save(str(file))


def _template(tokenizer: object, specials: str) -> processors.TemplateProcessing:
    token = tokenizer.backend.id_to_token
    before = [tokenizer.bos_id] if specials == "both" and tokenizer.bos_id is not None else []
    after = [] if specials == "none" else [tokenizer.eos_id]
    single = " ".join([*(token(i) for i in before), "$A", *(token(i) for i in after)])
    return processors.TemplateProcessing(single=single, special_tokens=[(token(i), i) for i in {*before, *after}])


def _tokenizer_config(tokenizer: object) -> dict:
    """Enough for transformers' AutoTokenizer to use tokenizer.json with the right special tokens (and to give
    the inputs every family's model takes)."""
    backend = tokenizer.backend
    names = {
        role: backend.id_to_token(getattr(tokenizer, f"{role}_id"))
        for role in ("bos", "eos", "pad", "unk", "mask")
        if getattr(tokenizer, f"{role}_id") is not None
    }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_input_names": ["input_ids", "attention_mask"],
        **{f"{role}_token": t for role, t in names.items()},
    }
