"""Reading a Hugging Face checkpoint directory: its config.json as a family and a ModelConfig, its weights as an
attnkit model."""

from __future__ import annotations

import json
import os
import pickle
import re
from collections.abc import Iterator, Mapping
from pathlib import Path

import safetensors
import safetensors.torch
import torch
from torch import Tensor

from attnkit.config import ModelConfig
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, FORMAT, GENERATION_FILE, WEIGHTS_FILE, read_json
from attnkit.interop.hf.families import FAMILIES
from attnkit.interop.hf.family import Family, Head, Tensors
from attnkit.nn import build_model


def is_hf_directory(path: str | os.PathLike) -> bool:
    """A directory whose config.json is a Hugging Face one (it names a model_type)."""
    try:
        data = json.loads((Path(path) / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "model_type" in data and data.get("format") != FORMAT


def read_hf_config(path: str | os.PathLike) -> tuple[Family, ModelConfig]:
    file = Path(path) / CONFIG_FILE
    hf = read_json(file)
    if not isinstance(hf, dict):
        raise AttnkitError(f"{file}: expected a JSON object")
    model_type = hf.get("model_type")
    if model_type not in FAMILIES:
        raise AttnkitError(f"{file}: model_type {model_type!r} is not supported (supported: {', '.join(FAMILIES)})")
    family = FAMILIES[model_type]
    try:
        return family, family.config(hf)
    except KeyError as error:
        raise AttnkitError(f"{file}: missing field {error.args[0]!r} for a {model_type} model") from None
    except AttnkitError as error:
        raise AttnkitError(f"{file}: {error}") from None
    except (TypeError, ValueError) as error:  # a value of a type its family's own arithmetic cannot take
        raise AttnkitError(f"{file}: a setting of the wrong type ({error})") from None


def load_hf_model(path: str | os.PathLike, trust_pickle: bool = False) -> torch.nn.Module:
    """The attnkit model with the weights of the Hugging Face checkpoint at `path`, in evaluation mode."""
    path = Path(path)
    family, config = read_hf_config(path)
    tensors, weights_file = read_hf_weights(path, trust_pickle)
    # drawn as it always was: a fine-tuning that starts from this checkpoint draws its head after these draws
    return build_from(family, config, tensors, weights_file, drawn=True)


def build_from(
    family: Family, config: ModelConfig, tensors: Mapping[str, Tensor], where: Path, drawn: bool = False
) -> torch.nn.Module:
    """The attnkit model of `config`, filled from a family's `tensors` (read from `where`) one weight rule at a time,
    in evaluation mode: while it loads, memory holds the model and the tensors of one rule beside what `tensors`
    keeps (safetensors and GGUF files are mapped, not read whole). Unless `drawn`, the model's own weights are never
    drawn (nor their memory touched) before the file's replace them."""
    model = build_model(config, initialized=drawn)
    state = model.state_dict()
    parameters = dict(model.named_parameters(remove_duplicate=False))
    filled = set()
    with torch.no_grad():
        for name, value in converted(family, config, tensors, where, state):
            if name in parameters:  # the converted tensor becomes the weight: the undrawn one is never touched
                parameters[name].data = value.contiguous()
            else:
                state[name].copy_(value)
            filled.add(name)
    missing = sorted(name for name in state if name not in filled and not _is_tied(model, name))
    if missing:
        raise AttnkitError(f"{where}: incomplete weights (missing {missing[:3]})")
    return model.eval()


def read_hf_weights(path: Path, trust_pickle: bool) -> tuple[Mapping[str, Tensor], Path]:
    """All tensors of a checkpoint, read as they are asked for: model.safetensors or its sharded form (mapped), or
    (trusted only) pytorch_model.bin."""
    single, index = path / WEIGHTS_FILE, path / f"{WEIGHTS_FILE}.index.json"
    try:
        if single.is_file():
            return SafetensorsFiles([single]), single
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return SafetensorsFiles([path / shard for shard in shards]), index
    except (safetensors.SafetensorError, OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        raise AttnkitError(f"{single if single.is_file() else index}: unreadable weights ({error})") from None
    pickled = path / "pytorch_model.bin"
    if pickled.is_file():
        if not trust_pickle:
            raise AttnkitError(
                f"{pickled}: a pickle file, which can run code when loaded; convert it to {WEIGHTS_FILE}, or "
                "pass --trust-pickle (trust_pickle=True) if you trust where it came from"
            )
        try:  # weights_only: torch's unpickler builds tensors and containers and refuses every other object
            return torch.load(pickled, map_location="cpu", weights_only=True), pickled
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
            found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
            if found:
                raise AttnkitError(
                    f"{pickled}: holds {found.group(1)}, not only tensors: loading it would run code; "
                    "refused even with --trust-pickle"
                ) from None
            raise AttnkitError(f"{pickled}: unreadable ({str(error).splitlines()[0]})") from None
    raise AttnkitError(f"{path}: no weights ({WEIGHTS_FILE} or pytorch_model.bin)")


class SafetensorsFiles(Mapping):
    """The tensors of safetensors files (a checkpoint's shards) by name, each read from its mapped file when asked."""

    def __init__(self, files: list[Path]) -> None:
        self.handles = [safetensors.safe_open(str(file), framework="pt") for file in files]
        self.where = {name: handle for handle in self.handles for name in handle.keys()}
        self.files = dict(zip(self.handles, files))

    def __getitem__(self, name: str) -> Tensor:
        handle = self.where[name]
        try:
            return handle.get_tensor(name)
        except (safetensors.SafetensorError, OSError, ValueError) as error:
            raise AttnkitError(f"{self.files[handle]}: tensor {name!r} unreadable ({error})") from None

    def __contains__(self, name: object) -> bool:  # without reading the tensor (Mapping's would)
        return name in self.where

    def __iter__(self) -> Iterator[str]:
        return iter(self.where)

    def __len__(self) -> int:
        return len(self.where)


def converted(
    family: Family, config: ModelConfig, tensors: Mapping[str, Tensor], where: Path, expected: Tensors
) -> Iterator[tuple[str, Tensor]]:
    """Each attnkit tensor of the family's rules, made from the Hugging Face tensors it comes from, its shape
    checked against the model's (`expected`)."""
    rules = family.held_rules(config, expected)
    probe = next(name for name in rules[0].theirs)
    prefix = next((p for p in family.prefixes if p + probe in tensors), None)
    if prefix is None:
        raise AttnkitError(f"{where}: no tensor {family.prefixes[0] + probe!r}; not a {family.model_type} checkpoint?")
    for rule in rules:
        names = [name if name in family.top_level else prefix + name for name in rule.theirs]
        absent = [name for name in names if name not in tensors]
        if absent:
            raise AttnkitError(f"{where}: missing tensor {absent[0]!r}")
        parts = [tensors[name].float() for name in names]
        try:
            value = rule.to_ours(parts)
        except RuntimeError:  # tensors joined or reshaped by the rule whose shapes cannot be
            value = None
        if value is None or tuple(value.shape) != tuple(expected[rule.ours].shape):
            raise AttnkitError(
                f"{where}: tensor {names[0]!r} has shape {list(parts[0].shape)}, which disagrees with "
                f"{CONFIG_FILE} (attnkit {rule.ours} needs {list(expected[rule.ours].shape)})"
            )
        if not all_finite(value):
            raise AttnkitError(f"{where}: tensor {names[0]!r} holds NaN or infinity; these weights cannot predict")
        yield rule.ours, value


def all_finite(tensor: Tensor, chunk: int = 1 << 20) -> bool:
    """Whether every value is a number, checked a million at a time (isfinite's temporaries on a whole embedding
    matrix would be the largest memory of a load)."""
    return all(bool(part.isfinite().all()) for part in tensor.reshape(-1).split(chunk))


def load_hf_head(
    model: torch.nn.Module, family: Family, config: ModelConfig, head: Head, tensors: Mapping[str, Tensor], where: Path
) -> None:
    """Fill a task model (its body, an encoder or a decoder, and its head) with the `tensors` of a Hugging Face task
    model read from `where`, whose class is the family's `head`."""
    body, state = model.body.state_dict(), model.state_dict()
    with torch.no_grad():
        for name, value in converted(family, config, tensors, where, body):
            body[name].copy_(value)
        for rule in head.rules:
            names = [name if name in head.top_level else head.prefix + name for name in rule.theirs]
            absent = [name for name in names if name not in tensors]
            if absent:
                raise AttnkitError(f"{where}: missing tensor {absent[0]!r} of {head.architecture}'s head")
            value = rule.to_ours([tensors[name].float() for name in names])
            if tuple(value.shape) != tuple(state[rule.ours].shape):
                raise AttnkitError(
                    f"{where}: tensor {names[0]!r} has shape {list(value.shape)}; {CONFIG_FILE}'s labels "
                    f"need {list(state[rule.ours].shape)}"
                )
            state[rule.ours].copy_(value)


def read_generation_config(path: str | os.PathLike) -> dict:
    """The generation defaults of a checkpoint folder's generation_config.json (temperature, top_p, the end
    tokens, ...); empty if it has none."""
    file = Path(path) / GENERATION_FILE
    if not file.is_file():
        return {}
    settings = read_json(file)
    if not isinstance(settings, dict):
        raise AttnkitError(f"{file}: expected a JSON object")
    return settings


def read_hf_pooler(path: str | os.PathLike, trust_pickle: bool = False) -> Tensors | None:
    """The pooler of a Hugging Face BERT checkpoint as attnkit's Classifier.pooler weights; None if it has none."""
    family, _ = read_hf_config(path)
    rules = getattr(family, "pooler", None)
    if rules is None:
        return None
    tensors, _ = read_hf_weights(Path(path), trust_pickle)
    for prefix in family.prefixes:
        names = [[prefix + name for name in rule.theirs] for rule in rules]
        if all(name in tensors for group in names for name in group):
            return {
                rule.ours.removeprefix("pooler."): rule.to_ours([tensors[n].float() for n in group])
                for rule, group in zip(rules, names)
            }
    return None


def _is_tied(model: torch.nn.Module, name: str) -> bool:
    """True if parameter `name` is the same tensor as another one that is loaded (tied embeddings)."""
    tensor = model.state_dict(keep_vars=True)[name]
    return any(other is tensor for key, other in model.state_dict(keep_vars=True).items() if key != name)
