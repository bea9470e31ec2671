"""A run's whole configuration, and how a user's YAML and flags become one: the task decides the architecture, a
preset fills its Hugging Face family's settings, the tokenizer decides the vocabulary, and `train.init` fixes
everything but the dropouts. `attnkit train run.yaml` is `attnkit.train(RunConfig.from_yaml("run.yaml"))`.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from pathlib import Path

from attnkit.config import (
    TASK_ARCHS,
    DataConfig,
    ModelConfig,
    TaskConfig,
    TokenizerConfig,
    TrainConfig,
    apply_override,
    from_dict,
    located,
    read_yaml,
)
from attnkit.errors import AttnkitError

FINE_TUNABLE = {"dropout", "attention_dropout", "token_dropout"}  # model settings that train.init leaves open


@dataclass
class RunConfig:
    """Everything `attnkit train` needs; `attnkit train run.yaml` is `attnkit.train(RunConfig.from_yaml(...))`."""

    task: TaskConfig = field(default_factory=TaskConfig)
    out: str = "runs/model"
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @classmethod
    def from_yaml(cls, path: str | os.PathLike, overrides: list[str] | None = None) -> RunConfig:
        values = read_yaml(Path(path))
        return cls.from_values(values, str(path), overrides)

    @classmethod
    def from_values(cls, values: object, where: str, overrides: list[str] | None = None) -> RunConfig:
        """Build from parsed YAML plus "section.key=value" overrides; the task decides the architecture and
        the tokenizer decides the vocabulary, so the model section may not set them differently. A setting under
        an old name is read with a warning (attnkit.errors.AttnkitWarning) that names the new one."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise AttnkitError(f"{where}: expected a mapping of sections, got {type(values).__name__}")
        values = copy.deepcopy(values)  # overrides and defaults below must not change the caller's dict
        for override in overrides or []:
            apply_override(values, override)
        model = values.get("model") or {}
        train = values.get("train") or {}
        if isinstance(model, dict) and isinstance(train, dict) and train.get("init"):
            fixed = sorted(set(model) - FINE_TUNABLE)
            if fixed:
                at = located(where, model, fixed[0])
                raise AttnkitError(
                    f"{at}: model.{fixed[0]}: the architecture comes from train.init; only "
                    f"{', '.join(sorted(FINE_TUNABLE))} can be set when fine-tuning"
                )
        name = _task_name(values, where)
        if isinstance(model, dict):
            for key in ("vocab_size", "target_vocab_size"):
                if key in model:
                    raise AttnkitError(
                        f"{located(where, model, key)}: model.{key}: set by the tokenizer (use tokenizer.vocab_size)"
                    )
            needed = TASK_ARCHS[name] if name is not None else None
            if model.get("preset") is not None:
                apply_preset(model, needed, f"task {name}", where)
            if needed is not None:
                arch = model.setdefault("arch", needed)
                if arch != needed:
                    message = f"model.arch: task {name} needs {needed!r}, got {arch!r}"
                    raise AttnkitError(f"{located(where, model, 'arch')}: {message}")
            values["model"] = model  # values is a copy: its mapping keeps the lines of its keys
        return from_dict(cls, values, where, warn=True)


def _task_name(values: dict, where: str) -> str | None:
    """The task the run's values name (classify by default), if it is one; None where `from_dict` will say what is
    wrong with it (not text)."""
    task = values.get("task") or {}
    name = task.get("name", "classify") if isinstance(task, dict) else None
    if not isinstance(name, str):
        return None
    if name not in TASK_ARCHS:
        known = ", ".join(repr(known) for known in TASK_ARCHS)
        raise AttnkitError(f"{located(where, task, 'name')}: task.name: expected one of {known}, got {name!r}")
    return name


def apply_preset(model: dict, needed: str | None, task: str, where: str) -> None:
    """Fill `model` with the settings its `preset` fixes; one it sets otherwise, or a preset whose architecture is
    not the one that `task` needs (`needed`; None: any), is an error."""
    from attnkit.interop.hf import FAMILIES, PRESETS  # PyTorch comes with the families' weight rules

    preset = model["preset"]
    if not isinstance(preset, str) or preset not in PRESETS:
        raise AttnkitError(
            f"{located(where, model, 'preset')}: model.preset: {preset!r} is not one of {', '.join(PRESETS)}"
        )
    arch = PRESETS[preset]["arch"]
    if needed not in (None, arch):
        fitting = [name for name, settings in PRESETS.items() if settings["arch"] == needed]
        raise AttnkitError(
            f"{located(where, model, 'preset')}: model.preset: {preset} is {_article(arch)} {arch} and {task} "
            f"needs {_article(needed)} {needed} (presets for it: {', '.join(fitting)})"
        )
    for key, value in PRESETS[preset].items():
        model.setdefault(key, value[0] if isinstance(value, tuple) else value)
    differences = FAMILIES[preset].preset_differences(model)
    if differences:
        key, allowed = next(iter(differences.items()))
        wanted = f"one of {', '.join(map(repr, allowed))}" if len(allowed) > 1 else repr(allowed[0])
        raise AttnkitError(
            f"{located(where, model, key)}: model.{key}: {model[key]!r} contradicts model.preset {preset}, "
            f"which needs {wanted}"
        )


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"
