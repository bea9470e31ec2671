"""One checkpoint directory format: config.json (the configs as JSON) + model.safetensors (the weights) +
tokenizer.json, written by `save_checkpoint` and read back by `load_model` (a bare model), `read_trained` (what a
trained one's task is) and attnkit.load; `read_model`, the one reader that recognizes what a path holds (that, a
Hugging Face folder, a GGUF file) and returns it whole. An ensemble's directory holds its members' checkpoints
under members/ and a config.json that lists them (`write_ensemble`, `read_ensemble`).

Directories are written to a temporary sibling and renamed into place, so a crash never leaves half a
checkpoint; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import nn

from attnkit.config import DataConfig, LoraConfig, ModelConfig, TaskConfig, TrainConfig, from_dict, to_dict
from attnkit.data.batching import BATCH_TOKENS
from attnkit.data.tokenizer import TOKENIZER_CONFIG_FILE, TOKENIZER_FILE, Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import (
    CONFIG_FILE,
    FORMAT,
    GENERATION_FILE,
    WEIGHTS_FILE,
    atomic_directory,
    current_umask,
    read_json,
    sync,
    write_json,
)
from attnkit.interop.gguf import find_gguf, read_gguf
from attnkit.interop.hf import (
    is_hf_directory,
    read_generation_config,
)
from attnkit.interop.peft import merge_peft_adapter
from attnkit.nn.lora import add_lora, merge_lora
from attnkit.nn.transformer import build_model
from attnkit.tasks import Task, hugging_face_model, make_task, no_task


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    tokenizer: Tokenizer | None = None,
    sections: dict | None = None,
    only: Collection[str] | None = None,
) -> None:
    """The one writer of checkpoint directories, which attnkit.load, `--init`, `--resume` and export read:
    config.json ({"format": "attnkit", "model": model.config, **sections}: the task, data and training settings of
    a run), model.safetensors and, when given, tokenizer.json; with `only`, the weights of those names alone (a
    LoRA run's adapters and head). The directory appears whole or not at all."""
    with atomic_directory(path) as tmp:
        write_checkpoint(tmp, model, tokenizer, sections, only)


def write_checkpoint(
    directory: Path,
    model: nn.Module,
    tokenizer: Tokenizer | None = None,
    sections: dict | None = None,
    only: Collection[str] | None = None,
) -> None:
    """The files of a checkpoint, written into `directory` (a temporary one, which the caller renames)."""
    write_json(directory / CONFIG_FILE, {"format": FORMAT, "model": to_dict(model.config), **(sections or {})})
    save_weights(model, directory, only)
    if tokenizer is not None:
        tokenizer.save(directory / TOKENIZER_FILE)


def save_weights(model: nn.Module, directory: str | os.PathLike, only: Collection[str] | None = None) -> None:
    """model.safetensors in `directory` (with `only`, the tensors of those names alone), replaced whole: written
    beside its place and renamed into it."""
    directory = Path(directory)
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    for parameter in model.parameters():  # laid out column-major by a one-row product (PackedLinear): safetensors
        if not parameter.is_contiguous():  # finds a tied weight's shared storage only in the usual layout
            parameter.data = parameter.data.contiguous()
    try:
        if only is None:
            safetensors.torch.save_model(model, str(tmp))
        else:
            state = model.state_dict()
            safetensors.torch.save_file({name: state[name].contiguous() for name in sorted(only)}, str(tmp))
        tmp.chmod(0o666 & ~current_umask())  # safetensors creates its files readable by their owner only
        sync(tmp)
        os.replace(tmp, directory / WEIGHTS_FILE)
    finally:
        tmp.unlink(missing_ok=True)


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the bare model (no task) saved at `path`, in evaluation mode."""
    path = Path(path)
    config = read_model_config(path)
    model = build_model(config)
    load_weights(model, path / WEIGHTS_FILE)
    return model.eval()


def read_checkpoint_json(path: str | os.PathLike) -> dict:
    """The parsed config.json of the checkpoint directory `path`."""
    path = Path(path)
    if not (path / CONFIG_FILE).is_file():
        why = f"no {CONFIG_FILE}" if path.is_dir() else "a file" if path.exists() else "no such directory"
        raise AttnkitError(
            f"{path}: not a model directory ({why}); train one with attnkit train, or pass a Hugging Face directory"
        )
    data = read_json(path / CONFIG_FILE)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise AttnkitError(f'{path / CONFIG_FILE}: not an attnkit config (no "format": "{FORMAT}")')
    return data


def read_model_config(path: str | os.PathLike) -> ModelConfig:
    data = read_checkpoint_json(path)
    return from_dict(ModelConfig, data.get("model"), str(Path(path) / CONFIG_FILE), "model.")


@dataclass
class Loaded:
    """A model read from a path, with what predicts with it: its tokenizer, its task (NoTask for one that no attnkit
    run trained), the format it came in, the batch size it trained with, the generation defaults it ships."""

    model: nn.Module
    tokenizer: Tokenizer
    task: Task
    origin: str = "attnkit"  # or "Hugging Face llama", "GGUF llama (file.gguf)"
    batch_tokens: int = BATCH_TOKENS
    generation: dict = field(default_factory=dict)  # as generation_config.json: temperature, top_p, eos_token_id, ...


def read_model(path: Path, trust_pickle: bool = False, merged: bool = True) -> Loaded:
    """Whatever `path` holds, read whole: a GGUF file (or a folder with one), a Hugging Face folder, an attnkit
    checkpoint (of a trained task, or a bare model; a LoRA run's on its base, its adapters merged unless not
    `merged`)."""
    gguf = find_gguf(path)
    if gguf is not None:
        checkpoint = read_gguf(gguf)
        model, tokenizer = checkpoint.model(), checkpoint.tokenizer
        origin = f"GGUF {checkpoint.family.model_type} ({gguf.name})"
        return Loaded(model, tokenizer, no_task(tokenizer, model.config), origin, generation=checkpoint.generation)
    if is_hf_directory(path):
        return _hugging_face(Path(path), trust_pickle)
    trained = read_trained(path)
    tokenizer = Tokenizer.load(path)
    if trained is None:
        return _bare(Path(path), tokenizer)
    try:
        task = make_task(trained.task, trained.data, tokenizer, trained.model, trained.state)
    except AttnkitError as error:  # what config.json says of the task cannot be what attnkit wrote
        raise AttnkitError(f"{Path(path) / CONFIG_FILE}: {error}") from None
    if trained.base is not None:
        return _adapted(Path(path), trained, task, tokenizer, trust_pickle, merged)
    model = task.build_model()
    load_weights(model, Path(path) / WEIGHTS_FILE)
    return Loaded(model, tokenizer, task, batch_tokens=trained.batch_tokens or BATCH_TOKENS)


def _adapted(
    path: Path, trained: Trained, task: Task, tokenizer: Tokenizer, trust_pickle: bool, merged: bool
) -> Loaded:
    """A LoRA run's checkpoint: its base read and checked, the task's model started from it as training started it,
    the adapters and head put in, and the adapters merged (they cost nothing at inference)."""
    base_path = Path(trained.base["path"])
    where = path / CONFIG_FILE
    if not base_path.exists():
        raise AttnkitError(
            f"{where}: its base {base_path} is gone; this LoRA run holds adapters for it alone "
            "(put the base back there, or export the run merged where the base is)"
        )
    base = read_model(base_path, trust_pickle)
    if "adapter" in trained.base:  # a PEFT adapter merged into the base before the run (train.adapter)
        merge_peft_adapter(base.model, trained.base["adapter"], str(base_path))
    check_base(base.model, trained.base, where)
    model = task.build_model()
    trained_names = start_adapted(task, model, base.model, str(base_path), trained.lora, trust_pickle)
    load_weights(model, path / WEIGHTS_FILE, trained_names)
    if merged:
        merge_lora(model)
    origin = f"attnkit LoRA (rank {trained.lora.rank}) of {base_path}"
    return Loaded(model.eval(), tokenizer, task, origin, batch_tokens=trained.batch_tokens or BATCH_TOKENS)


def start_adapted(
    task: Task, model: nn.Module, base: nn.Module, where: str, lora: LoraConfig | None, trust_pickle: bool = False
) -> set[str]:
    """`model` (a new model of `task`) started from the pretrained `base` read from `where`; with LoRA (lora.rank >
    0), adapters added and everything else frozen but the task's head. The names of the weights that train (all of
    them without LoRA)."""
    task.initialize(model, base, where, trust_pickle)
    if lora is None or not lora.rank:
        return set(model.state_dict())
    adapters = add_lora(model, lora.rank, lora.effective_alpha, lora.dropout, lora.targets)
    if not adapters:
        raise AttnkitError(f"train.lora.targets: {where} has no {' or '.join(lora.targets)} layers to adapt")
    trained = set(adapters) | task.head(model)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(name in trained)
    return trained


def fingerprint(model: nn.Module) -> str:
    """A digest of a model's weights (names, types, shapes, values): what a LoRA run's base must still have."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{list(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().data)
    return f"sha256:{digest.hexdigest()}"


def check_base(model: nn.Module, base: dict, where: object) -> None:
    """`model` is the base that a LoRA run named (`base`: its path and fingerprint), or one line says it is not."""
    if fingerprint(model) != base["fingerprint"]:
        raise AttnkitError(
            f"{where}: its base {base['path']} has changed since the run (its weights' fingerprint differs); "
            "the adapters fit the weights they were trained on alone"
        )


def _hugging_face(path: Path, trust_pickle: bool) -> Loaded:
    """A Hugging Face folder: a task model where its class is a task's (attnkit.tasks.hugging_face_model), else the
    bare architecture, with the generation defaults it ships."""
    task, model, tokenizer, origin = hugging_face_model(path, trust_pickle)
    return Loaded(model, tokenizer, task, origin, generation=read_generation_config(path))


def _bare(path: Path, tokenizer: Tokenizer) -> Loaded:
    """A model saved without a task, with the generation defaults it came with (a GGUF's or a Hugging Face
    checkpoint's, kept by `attnkit export --ct2`)."""
    model = load_model(path)
    return Loaded(model, tokenizer, no_task(tokenizer, model.config), generation=read_generation_config(path))


@dataclass
class Trained:
    """What a trained checkpoint's config.json says of its run: the task and how it reads its data, the model,
    what the task learned from the training data (its labels), and the batch size it was trained with."""

    task: TaskConfig
    data: DataConfig
    model: ModelConfig
    state: dict
    batch_tokens: int | None
    lora: LoraConfig | None = None
    base: dict | None = None  # a LoRA run's base: {"path", "fingerprint"}


def read_trained(path: str | os.PathLike) -> Trained | None:
    """The run saved in the checkpoint directory `path`, or None for a bare model (saved without a task)."""
    data = read_checkpoint_json(path)
    where = str(Path(path) / CONFIG_FILE)
    if "task" not in data:
        return None
    state = data.get("task_state", {})
    if not isinstance(state, dict):
        raise AttnkitError(f"{where}: task_state: expected a mapping, got {state!r}")
    for key in ("labels", "tags"):  # what a classifier and a tagger name their outputs with
        names = state.get(key, [])
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names) and len(set(names)) == len(names)):
            raise AttnkitError(f"{where}: task_state.{key}: expected a list of distinct names, got {names!r}")
    sections = {
        name: from_dict(kind, {} if data.get(name) is None else data[name], where, f"{name}.")
        for name, kind in (("task", TaskConfig), ("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig))
    }
    base = data.get(LORA_BASE)
    if base is not None and not (
        isinstance(base, dict)
        and {"path", "fingerprint"} <= set(base) <= {"path", "fingerprint", "adapter"}
        and all(isinstance(value, str) for value in base.values())
    ):
        raise AttnkitError(f"{where}: {LORA_BASE}: expected the base's path and fingerprint, got {base!r}")
    train = sections["train"]
    return Trained(sections["task"], sections["data"], sections["model"], state, train.batch_tokens, train.lora, base)


LORA_BASE = "lora_base"  # config.json's section that names a LoRA run's base: its weights are not in the checkpoint


def load_weights(model: nn.Module, file: Path, only: Collection[str] | None = None) -> None:
    """Fill `model` from a safetensors file, checking names and shapes first so that errors say which tensor; with
    `only`, the file holds the tensors of those names, and the model's others stay as they are."""
    if not file.is_file():
        raise AttnkitError(f"{file}: missing (a checkpoint needs its weights)")
    try:
        with safetensors.safe_open(str(file), framework="pt") as f:
            shapes = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise AttnkitError(f"{file}: unreadable, truncated or not safetensors ({error})") from None
    expected = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    unknown = sorted(shapes.keys() - expected.keys())
    if unknown:
        raise AttnkitError(f"{file}: tensor {unknown[0]!r} does not belong to the model that config.json describes")
    for name, shape in expected.items():
        if name in shapes and shapes[name] != shape:
            raise AttnkitError(
                f"{file}: tensor {name!r} has shape {list(shapes[name])}, config.json implies {list(shape)}"
            )
    if only is not None:
        _load_some(model, file, shapes, set(only))
        return
    try:
        safetensors.torch.load_model(model, str(file), strict=True)
    except (safetensors.SafetensorError, OSError) as error:
        raise AttnkitError(f"{file}: unreadable, truncated or not safetensors ({error})") from None
    except RuntimeError as error:  # tensors the model needs are absent
        missing = str(error).splitlines()[1:2]
        raise AttnkitError(f"{file}: incomplete weights; {' '.join(missing).strip()}") from None
    damaged = next((name for name, t in model.named_parameters() if not bool(t.isfinite().all())), None)
    if damaged is not None:
        raise AttnkitError(f"{file}: tensor {damaged!r} holds NaN or infinity; these weights cannot predict")


def _load_some(model: nn.Module, file: Path, shapes: dict, only: set[str]) -> None:
    missing = sorted(only - shapes.keys())
    if missing:
        raise AttnkitError(f"{file}: incomplete weights; tensor {missing[0]!r} is missing")
    unexpected = sorted(shapes.keys() - only)
    if unexpected:
        raise AttnkitError(f"{file}: tensor {unexpected[0]!r} does not belong to the adapters and head it holds")
    state = safetensors.torch.load_file(str(file))
    if not all(bool(t.isfinite().all()) for t in state.values() if t.is_floating_point()):
        raise AttnkitError(f"{file}: a tensor holds NaN or infinity; these weights cannot predict")
    model.load_state_dict(state, strict=False)


def merged_sections(path: str | os.PathLike) -> dict | None:
    """A LoRA run's config.json sections (its task, data, training), for a checkpoint of its merged weights, which
    names no base; None for any other checkpoint (a Hugging Face folder, a GGUF file too)."""
    try:
        data = read_checkpoint_json(path)
    except AttnkitError:
        return None
    if LORA_BASE not in data:
        return None
    return {key: value for key, value in data.items() if key not in ("format", "model", LORA_BASE)}


ENSEMBLE = "ensemble"  # the key of an ensemble's config.json: its members' directories, relative to it
MEMBER_FILES = (CONFIG_FILE, WEIGHTS_FILE, TOKENIZER_FILE)  # what a member needs to predict (no training state)
# a tokenizer's special tokens by name and chat template, and the generation defaults, where a checkpoint has them
OPTIONAL_FILES = (TOKENIZER_CONFIG_FILE, GENERATION_FILE)


def copy_checkpoint(source: Path, directory: Path) -> None:
    """A checkpoint's files that predict (no training state) copied into `directory`."""
    for file in MEMBER_FILES:
        shutil.copyfile(source / file, directory / file)
    for file in OPTIONAL_FILES:
        if (source / file).is_file():
            shutil.copyfile(source / file, directory / file)


def write_ensemble(path: str | os.PathLike, members: list[Path]) -> None:
    """An ensemble directory: a copy of each member checkpoint (its config, weights and tokenizer) under
    members/, and config.json listing them. It appears whole or not at all."""
    with atomic_directory(path) as tmp:
        names = []
        for i, member in enumerate(members):
            name = f"members/{i}"
            (tmp / name).mkdir(parents=True)
            copy_checkpoint(member, tmp / name)
            names.append(name)
        write_json(tmp / CONFIG_FILE, {"format": FORMAT, ENSEMBLE: names, "from": [str(m) for m in members]})


def read_ensemble(path: str | os.PathLike) -> list[Path] | None:
    """The member directories of the ensemble at `path`, or None if it is not one."""
    path = Path(path)
    try:
        data = read_json(path / CONFIG_FILE)
    except AttnkitError:
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT or ENSEMBLE not in data:
        return None
    names = data[ENSEMBLE]
    if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise AttnkitError(f"{path / CONFIG_FILE}: {ENSEMBLE}: expected a list of two or more member directories")
    members = [(path / name).resolve() for name in names]
    home = path.resolve()
    outside = [name for name, member in zip(names, members) if member == home or not member.is_relative_to(home)]
    if outside:
        raise AttnkitError(
            f"{path / CONFIG_FILE}: {ENSEMBLE}: member {outside[0]!r} is not a folder inside the ensemble"
        )
    return members
