"""Writing an attnkit model, and its tokenizer, as a Hugging Face checkpoint directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import safetensors.torch
import torch
from tokenizers import processors
from torch import Tensor

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, WEIGHTS_FILE, atomic_directory, write_json
from attnkit.interop.hf.families import FAMILIES
from attnkit.interop.hf.family import Family, Head, Rule, Tensors


@dataclass
class TaskExport:
    """What a Hugging Face directory needs of a model besides its weights (attnkit.tasks' `hf_export` makes one)."""

    model: torch.nn.Module  # what is written: a task model (its `encoder` and its head), or a bare architecture
    task: str = "model"  # what the model does, for messages
    head: str | None = None  # the family's class for the task: "sequence" (an output per input) or "token"
    specials: str | None = None  # around an input: both (<s> text </s>), end (text </s>), none; None: as it came
    labels: list[str] = field(default_factory=list)  # a head's outputs, by name
    max_length: int | None = None  # inputs are cut to this many tokens
    generation: dict = field(default_factory=dict)  # attnkit's decoding, as transformers' generation config
    config: dict = field(default_factory=dict)  # config.json fields of the task (problem_type)
    pooling: str | None = None  # how a sequence head pools: the family's class must pool the same way
    refused: str | None = None  # what the model reads that the family's classes cannot ("a tagger ... reads ...")
    pair: bool = False  # inputs are pairs of texts, the second marked by token type 1 (BERT's sentence B)
    head_state: dict[str, Tensor] | None = None  # the head's tensors, where they differ from the model's own
    files: dict[str, dict | list] = field(default_factory=dict)  # more JSON files (sentence-transformers' modules)
    library: str = "transformers"  # what loads the folder: transformers, or sentence-transformers
    usage: list[str] = field(default_factory=list)  # the model card's code for the loaded `model` (and `tokenizer`)


def export_hf(
    task: TaskExport,
    tokenizer: object,
    out: str | os.PathLike,
    where: str = "model",
    readme: Callable[[str], str] | None = None,
) -> str:
    """Write `task.model` (with `tokenizer`) as a Hugging Face checkpoint directory; returns the family's name. A
    task model becomes the family's class for its head; only an architecture a family holds is written. `readme`
    gives the folder's README.md (a model card) for the family's name."""
    base = task.model.body if task.head is not None else task.model
    family = family_of(base.config, where)
    head = task_head(family, task, where) if task.head is not None else None
    prefix = head.prefix if head else family.prefixes[0]
    state = base.state_dict()
    tensors = hf_tensors(family.held_rules(base.config, state), state, prefix, family.top_level)
    special = {role: getattr(tokenizer, f"{role}_id") for role in ("bos", "eos", "pad", "unk")}
    special["start"] = base.config.decoder_start_id if base.config.decoder_start_id is not None else special["bos"]
    config = {**family.hf_config(base.config, special), "torch_dtype": "float32"}
    if head is not None:
        state = {**task.model.state_dict(), **(task.head_state or {})}
        tensors.update(hf_tensors(head.rules, state, head.prefix, head.top_level))
        config.update(architectures=[head.architecture], **task.config)
        config.setdefault("pad_token_id", special["pad"])  # where a decoder's classifier finds a padded text's end
        labels = task.labels
        config.update(id2label=dict(enumerate(labels)), label2id={label: i for i, label in enumerate(labels)})
    with atomic_directory(out) as tmp:
        write_json(tmp / CONFIG_FILE, config)
        safetensors.torch.save_file(tensors, str(tmp / WEIGHTS_FILE), metadata={"format": "pt"})
        if task.generation:
            write_json(tmp / "generation_config.json", task.generation)
        for name, content in task.files.items():
            (tmp / name).parent.mkdir(parents=True, exist_ok=True)
            write_json(tmp / name, content)
        save_tokenizer(tokenizer, tmp, task, types=task.pair and bool(base.config.segments))
        if readme is not None:
            (tmp / "README.md").write_text(readme(family.model_type), encoding="utf-8")
    return family.model_type


def family_of(config: ModelConfig, where: str = "model") -> Family:
    """The family whose architecture `config` is; if none, an error that names the closest and how to train it."""
    differences = {name: family.differences(config) for name, family in FAMILIES.items()}
    if config.preset in differences and not differences[config.preset]:  # several may hold it: its own first
        return FAMILIES[config.preset]
    for name, wrong in differences.items():
        if not wrong:
            return FAMILIES[name]
    closest = min(differences, key=lambda n: (any(w.startswith("arch") for w in differences[n]), len(differences[n])))
    raise AttnkitError(
        f"{where}: no Hugging Face family holds this architecture (closest: {closest}, which needs "
        f"{', '.join(differences[closest])}); train with --preset {closest} (model.preset: {closest}) to get one "
        "that exports"
    )


def task_head(family: Family, task: TaskExport, where: str) -> Head:
    head = family.heads.get(task.head)
    if head is None:
        raise AttnkitError(f"{where}: Hugging Face {family.model_type} has no model class for task {task.task}")
    if task.refused is not None:
        raise AttnkitError(f"{where}: {task.refused}, which {head.architecture} cannot")
    if head.pooling is not None and task.pooling != head.pooling:
        raise AttnkitError(
            f"{where}: a classifier with task.pooling={task.pooling} cannot become {head.architecture}, which pools "
            f"as task.pooling={head.pooling}; train with task.pooling: {head.pooling} (the default with --preset "
            f"{family.model_type})"
        )
    return head


def hf_tensors(rules: list[Rule], state: Tensors, prefix: str, top_level: frozenset[str] = frozenset()) -> Tensors:
    """The Hugging Face tensors that `rules` make of attnkit's `state`, named under `prefix`."""
    tensors = {}
    for rule in rules:
        for hf_name, value in zip(rule.theirs, rule.to_theirs(state[rule.ours].detach())):
            tensors[hf_name if hf_name in top_level else prefix + hf_name] = value.contiguous().clone()
    return tensors


def save_tokenizer(tokenizer: object, directory: Path, task: TaskExport, types: bool) -> None:
    """tokenizer.json and tokenizer_config.json; tokenizer.json adds the special tokens that the task's inputs
    have, so that transformers' tokenizer(text) (or tokenizer(text_a, text_b)) gives the ids attnkit gives the
    model, and with `types` a pair's token types."""
    settings = _tokenizer_config(tokenizer, types)
    if task.specials is None:  # a bare model: the tokenizer as it came
        tokenizer.save(directory / "tokenizer.json")
    else:
        save_with_specials(tokenizer, directory / "tokenizer.json", task.specials, task.pair, types)
    if task.max_length is not None:
        settings["model_max_length"] = task.max_length
    write_json(directory / "tokenizer_config.json", settings)


def save_with_specials(tokenizer: object, file: Path, specials: str, pair: bool = False, types: bool = True) -> None:
    """tokenizer.json whose encode adds the special tokens that attnkit gives a task's inputs: both
    (<s> text </s>, Tokenizer.add_specials), end (text </s>) or none; with `pair`, a pair as <s> a </s> b </s>
    (Tokenizer.add_pair_specials), with `types` token type 1 from b on."""
    backend = type(tokenizer.backend).from_str(tokenizer.backend.to_str())
    backend.post_processor = _template(tokenizer, specials, pair, types)
    backend.save(str(file))


def _template(tokenizer: object, specials: str, pair: bool, types: bool) -> processors.TemplateProcessing:
    token = tokenizer.backend.id_to_token
    before = [tokenizer.bos_id] if specials == "both" and tokenizer.bos_id is not None else []
    after = [] if specials == "none" else [tokenizer.eos_id]
    single = " ".join([*(token(i) for i in before), "$A", *(token(i) for i in after)])
    second_type = ":1" if types else ""
    second = " ".join([f"$B{second_type}", *(f"{token(i)}{second_type}" for i in after)])
    return processors.TemplateProcessing(
        single=single,
        pair=f"{single} {second}" if pair else None,
        special_tokens=[(token(i), i) for i in {*before, *after}],
    )


def _tokenizer_config(tokenizer: object, types: bool = False) -> dict:
    """Enough for transformers' AutoTokenizer to use tokenizer.json with the right special tokens (and to give
    the inputs every family's model takes; with `types`, a pair model's token types too)."""
    backend = tokenizer.backend
    names = {
        role: backend.id_to_token(getattr(tokenizer, f"{role}_id"))
        for role in ("bos", "eos", "pad", "unk", "mask")
        if getattr(tokenizer, f"{role}_id") is not None
    }
    roles = getattr(tokenizer, "roles", {})  # a role the checkpoint said has no token (Qwen2's start) says so again
    template = getattr(tokenizer, "chat_template", None)
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_input_names": ["input_ids", "attention_mask", *(["token_type_ids"] if types else [])],
        **{f"{role}_token": t for role, t in names.items()},
        **{f"{role}_token": None for role, name in roles.items() if name is None},
        **({"chat_template": template} if template else {}),
    }
