"""One checkpoint directory format: config.json (the configs as JSON) + model.safetensors (the weights).

Directories are written to a temporary sibling and renamed into place, so a crash never leaves half a
checkpoint; nothing is ever unpickled.
"""

from __future__ import annotations

import os
from pathlib import Path

import safetensors
import safetensors.torch
from torch import nn

from attnkit.config import ModelConfig, from_dict, to_dict
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, FORMAT, WEIGHTS_FILE, atomic_directory, read_json, write_json
from attnkit.nn.transformer import build_model, count_parameters


def save_model(model: nn.Module, path: str | os.PathLike, extra: dict | None = None) -> None:
    """Write `model` (which carries its ModelConfig as `.config`) as a checkpoint directory at `path`.
    `extra` adds sections to config.json (the task, the tokenizer settings, ...)."""
    with atomic_directory(path) as tmp:
        write_json(tmp / CONFIG_FILE, {"format": FORMAT, "model": to_dict(model.config), **(extra or {})})
        safetensors.torch.save_model(model, str(tmp / WEIGHTS_FILE))


def load_model(path: str | os.PathLike) -> nn.Module:
    """Rebuild the model saved at `path`, in evaluation mode."""
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


def load_weights(model: nn.Module, file: Path) -> None:
    """Fill `model` from a safetensors file, checking names and shapes first so that errors say which tensor."""
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
    try:
        safetensors.torch.load_model(model, str(file), strict=True)
    except (safetensors.SafetensorError, OSError) as error:
        raise AttnkitError(f"{file}: unreadable, truncated or not safetensors ({error})") from None
    except RuntimeError as error:  # tensors the model needs are absent
        missing = str(error).splitlines()[1:2]
        raise AttnkitError(f"{file}: incomplete weights; {' '.join(missing).strip()}") from None


def describe(path: str | os.PathLike) -> str:
    """A few lines on the checkpoint at `path`: architecture, sizes and parameter count (`attnkit info`)."""
    from attnkit.interop.hf import is_hf_directory, load_hf_model, read_hf_config
    from attnkit.pipeline import Pipeline

    if is_hf_directory(path):
        model = load_hf_model(path)
        origin = [("format", f"Hugging Face {read_hf_config(path)[0].model_type}")]
    elif "task" in read_checkpoint_json(path):  # the encoder or encoder-decoder carries a task head
        pipeline = Pipeline.load(path)
        model, task = pipeline.model, pipeline.task
        outputs = next((f"{len(v)} {k}" for k, v in task.state().items()), "")
        origin = [("task", task.name + (f", {outputs}" if outputs else ""))]
    else:
        model = load_model(path)
        origin = [("task", "none (fine-tune it with attnkit train --init)")]
    c: ModelConfig = model.config
    if c.arch == "encoder-decoder":
        layers = f"{c.num_layers} encoder + {c.decoder_layers} decoder layers"
        vocab = f"{c.vocab_size} source / {c.output_vocab_size} target"
        vocab += ", shared embeddings" if c.share_embeddings else ", separate embeddings"
    else:
        layers = f"{c.num_layers} {'causal ' if c.arch == 'decoder' else ''}layers"
        vocab = str(c.vocab_size)
    if c.arch != "encoder":
        vocab += ", tied output projection" if c.tie_output else ", separate output projection"
    rows = [
        ("checkpoint", str(path)),
        *origin,
        ("arch", f"{c.arch}, {layers}"),
        ("width", f"dim {c.dim}, {c.num_heads} heads of {c.head_dim}, feed-forward {c.ff_dim} ({c.activation})"),
        ("norm", f"{c.norm}, {'pre-norm' if c.norm_first else 'post-norm'}"),
        ("positions", c.positions + (f" (up to {c.max_positions})" if c.positions == "learned" else "")),
        ("vocabulary", vocab),
        ("parameters", f"{count_parameters(model):,}"),
    ]
    return "\n".join(f"{key:<11} {value}" for key, value in rows)
