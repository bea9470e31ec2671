"""PEFT's LoRA adapters both ways: a LoRA run written as the adapter folder that `peft.PeftModel.from_pretrained`
loads onto the transformers model of its base (adapter_config.json, adapter_model.safetensors), and such a folder
merged into the attnkit model of its base. The family's weight rules name the tensors: a rule that copies a weight,
or splits attnkit's fused Q/K/V rows into Hugging Face's q, k, v, splits an update B A the same way (B's rows, A
whole), so PEFT's q, k, v adapters are attnkit's one fused adapter, exactly. A rule that transposes (GPT-2's Conv1D)
has no such split: its adapters are refused in one line (the merged export holds them)."""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor, nn

from attnkit.errors import AttnkitError, AttnkitWarning
from attnkit.files import atomic_directory, read_json, write_json
from attnkit.interop.hf.family import Family, Rule
from attnkit.interop.hf.save import TaskExport, family_of, hf_tensors, save_tokenizer, task_head
from attnkit.nn.lora import adapted_layers, adapter_names

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
PREFIX = "base_model.model."  # where PeftModel holds the transformers model
HEAD_TASK_TYPES = {"sequence": "SEQ_CLS", "token": "TOKEN_CLS"}
ARCH_TASK_TYPES = {"decoder": "CAUSAL_LM", "encoder-decoder": "SEQ_2_SEQ_LM", "encoder": "FEATURE_EXTRACTION"}


def write_peft(
    export: TaskExport, tokenizer: object, rank: int, alpha: float, base: str, out: str | os.PathLike, where: str
) -> str:
    """The adapters of `export.model` (a task model with LoRALinear layers, unmerged) and its head, as a PEFT
    adapter folder for the Hugging Face model at `base`; returns PEFT's task type."""
    body = export.model.body if export.head is not None else export.model
    family = family_of(body.config, where)
    head = task_head(family, export, where) if export.head is not None else None
    prefix = head.prefix if head is not None else family.prefixes[0]
    adapters = set(adapter_names(body))
    plain = {name: t for name, t in body.state_dict().items() if name not in adapters}
    rules = {rule.ours: rule for rule in family.held_rules(body.config, plain)}
    tensors: dict[str, Tensor] = {}
    targets = []
    for name, layer in adapted_layers(body).items():
        rule = rules[f"{name}.weight"]
        names = [n if n in family.top_level else prefix + n for n in rule.theirs]
        _check_rows(rule, plain[rule.ours], family, names[0], where)
        for hf_name, b in zip(names, rule.to_theirs(layer.lora_b.detach())):
            module = hf_name.removesuffix(".weight")
            tensors[f"{PREFIX}{module}.lora_A.weight"] = layer.lora_a.detach().contiguous().clone()
            tensors[f"{PREFIX}{module}.lora_B.weight"] = b.contiguous().clone()
            targets.append(module)
    if not targets:
        raise AttnkitError(f"{where}: no LoRA adapters to write (a run of train.lora.rank > 0 has them)")
    saved = set()
    if head is not None:  # the head trains in full beside the adapters: PEFT's modules_to_save
        state = {**export.model.state_dict(), **(export.head_state or {})}
        for hf_name, value in hf_tensors(head.rules, state, head.prefix, head.top_level).items():
            tensors[PREFIX + hf_name] = value
            saved.add(hf_name.split(".")[0] if hf_name in head.top_level else hf_name.rsplit(".", 1)[0])
    task_type = HEAD_TASK_TYPES[export.head] if export.head is not None else ARCH_TASK_TYPES[body.config.arch]
    config = {
        "peft_type": "LORA",
        "task_type": task_type,
        "base_model_name_or_path": base,
        "r": rank,
        "lora_alpha": alpha,
        "lora_dropout": 0.0,
        "target_modules": sorted(targets),
        "modules_to_save": sorted(saved) or None,
        "bias": "none",
        "fan_in_fan_out": False,
        "use_rslora": False,
        "use_dora": False,
        "init_lora_weights": True,
        "inference_mode": True,
    }
    with atomic_directory(out) as tmp:
        write_json(tmp / ADAPTER_CONFIG, config)
        safetensors.torch.save_file(tensors, str(tmp / ADAPTER_WEIGHTS), metadata={"format": "pt"})
        save_tokenizer(tokenizer, tmp, export, types=export.pair and bool(body.config.segments))
    return task_type


def merge_peft_adapter(model: nn.Module, directory: str | os.PathLike, where: str) -> None:
    """Merge the LoRA adapter of the PEFT folder `directory` into `model` (attnkit's model of the Hugging Face
    checkpoint read from `where`, the adapter's base): W += (alpha / r) B A for each adapted layer."""
    directory = Path(directory)
    config = _adapter_config(directory)
    scaling = config["lora_alpha"] / (math.sqrt(config["r"]) if config.get("use_rslora") else config["r"])
    try:
        tensors = safetensors.torch.load_file(str(directory / ADAPTER_WEIGHTS))
    except (safetensors.SafetensorError, OSError) as error:
        raise AttnkitError(f"{directory / ADAPTER_WEIGHTS}: unreadable ({error})") from None
    body = getattr(model, "body", model)
    family = family_of(body.config, where)
    adapters = {name.removeprefix(PREFIX): t for name, t in tensors.items() if ".lora_" in name}
    modules = {name.rsplit(".lora_", 1)[0] for name in adapters}
    state = body.state_dict()
    rules = family.held_rules(body.config, state)
    prefix = next(
        (p for p in family.prefixes if any(p + n.removesuffix(".weight") in modules for r in rules for n in r.theirs)),
        None,
    )
    if prefix is None:
        raise AttnkitError(f"{directory}: its adapters name no layer of {where} (a {family.model_type} checkpoint)")
    merged = set()
    with torch.no_grad():
        for rule in rules:
            names = [(n if n in family.top_level else prefix + n).removesuffix(".weight") for n in rule.theirs]
            if not any(name in modules for name in names):
                continue
            weight = state[rule.ours]
            _check_rows(rule, weight, family, names[0], str(directory))
            parts = rule.to_theirs(weight)
            deltas = [
                scaling * (adapters[f"{name}.lora_B.weight"].float() @ adapters[f"{name}.lora_A.weight"].float())
                if name in modules
                else torch.zeros_like(part)
                for name, part in zip(names, parts)
            ]
            if any(delta.shape != part.shape for delta, part in zip(deltas, parts)):
                raise AttnkitError(f"{directory}: the adapter of {names[0]} does not fit {where}'s shape")
            weight += torch.cat(deltas)
            merged.update(name for name in names if name in modules)
    unknown = sorted(modules - merged)
    if unknown:
        raise AttnkitError(f"{directory}: adapter {unknown[0]!r} names no layer of {where} that attnkit can merge")
    others = sorted({name.removeprefix(PREFIX).split(".")[0] for name in tensors if ".lora_" not in name})
    if others:
        warnings.warn(
            f"{directory}: its trained modules {', '.join(others)} (a task's head) are not read; the task's head "
            "starts new",
            AttnkitWarning,
            stacklevel=2,
        )


def _adapter_config(directory: Path) -> dict:
    """adapter_config.json, checked to be a LoRA adapter that a merge reproduces."""
    file = directory / ADAPTER_CONFIG
    if not file.is_file():
        raise AttnkitError(f"{directory}: not a PEFT adapter folder (no {ADAPTER_CONFIG})")
    config = read_json(file)
    if not isinstance(config, dict) or config.get("peft_type") != "LORA":
        raise AttnkitError(f"{file}: peft_type {config.get('peft_type')!r}; attnkit reads LoRA adapters alone")
    for key in ("use_dora", "fan_in_fan_out"):
        if config.get(key):
            raise AttnkitError(f"{file}: {key} is true; attnkit merges plain LoRA adapters alone")
    for key in ("rank_pattern", "alpha_pattern"):
        if config.get(key):
            raise AttnkitError(f"{file}: {key} gives layers ranks of their own; attnkit merges one rank and alpha")
    for key in ("r", "lora_alpha"):
        value = config.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            raise AttnkitError(f"{file}: {key}: expected a positive number, got {value!r}")
    if not (directory / ADAPTER_WEIGHTS).is_file():
        raise AttnkitError(f"{directory}: no {ADAPTER_WEIGHTS} (attnkit reads safetensors adapters)")
    return config


def _check_rows(rule: Rule, weight: Tensor, family: Family, name: str, where: str) -> None:
    """The rule copies `weight` or splits its rows (so that an update B A splits as B's rows), or one line says
    that its adapters have no PEFT form."""
    parts = rule.to_theirs(weight.detach())
    if not torch.equal(torch.cat(parts), weight.detach()):
        raise AttnkitError(
            f"{where}: {family.model_type} stores {name} otherwise than attnkit's rows (transposed), so a LoRA "
            "adapter of it has no PEFT form here; export the run merged (attnkit export RUN --out DIR)"
        )
