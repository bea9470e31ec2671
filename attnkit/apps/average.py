"""Weight averaging of models fine-tuned from one checkpoint (a "model soup", Wortsman et al., ICML 2022): the
average of a few runs that differ in their learning rate or regularization is often more accurate than each, in and
out of domain, and it is one model: it predicts, serves and exports as fast as any of them.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnkit.data.tokenizer import TOKENIZER_FILE
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, check_output
from attnkit.inference.checkpoint import ENSEMBLE, LORA_BASE, read_checkpoint_json, save_checkpoint
from attnkit.inference.pipeline import Pipeline

# what must be equal for two models to be averaged: the architecture, the task and its labels, the tokenizer
SAME = ("model", "task", "task_state")


def average(paths: list[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Pipeline:
    """Average the weights of the trained models at `paths` into a new model directory `out`, and return it loaded.
    The models must share the architecture, task, labels and tokenizer; averaging pays only for models fine-tuned
    from one pretrained checkpoint (models trained from different random starts average to noise)."""
    paths = [Path(path) for path in paths]
    out = Path(out)
    if len(paths) < 2:
        raise AttnkitError("average: give at least two model directories")
    if any(out.resolve() == path.resolve() for path in paths):
        raise AttnkitError(f"{out}: is one of the models to average; write the average to a new directory")
    check_output(out, overwrite)
    configs = [_trained_config(path) for path in paths]
    tokenizers = [(path / TOKENIZER_FILE).read_bytes() for path in paths]
    for path, config, tokenizer in zip(paths[1:], configs[1:], tokenizers[1:]):
        differs = [key for key in SAME if config.get(key) != configs[0].get(key)]
        if tokenizer != tokenizers[0]:
            differs.append("tokenizer")
        if differs:
            raise AttnkitError(
                f"{path}: its {' and '.join(differs)} {'differs' if len(differs) == 1 else 'differ'} from "
                f"{paths[0]}'s; only models of one architecture, "
                "task, label set and tokenizer can be averaged"
            )
    bases = {config[LORA_BASE]["fingerprint"] for config in configs if LORA_BASE in config}
    if len(bases) > 1:
        raise AttnkitError(f"{paths[0]} and the others: LoRA runs of different bases; average runs of one base")
    first, *others = [Pipeline.load(path, device="cpu") for path in paths]  # a LoRA run's adapters merged
    states = [pipeline.model.state_dict() for pipeline in (first, *others)]
    mean = {
        name: (sum(state[name].double() for state in states) / len(states)).to(tensor.dtype)
        for name, tensor in states[0].items()
        if tensor.is_floating_point()
    }
    first.model.load_state_dict(mean, strict=False)
    sections = {key: value for key, value in configs[0].items() if key not in ("format", "model", LORA_BASE)}
    sections.update(out=str(out), averaged_from=[str(path) for path in paths])
    save_checkpoint(out, first.model, first.tokenizer, sections)
    return Pipeline.load(out, device="cpu")


def _trained_config(path: Path) -> dict:
    config = read_checkpoint_json(path)
    if ENSEMBLE in config:
        raise AttnkitError(f"{path}: an ensemble; average its members ({path}/members/0, ...) or ensemble the models")
    if "task" not in config:
        raise AttnkitError(f"{path / CONFIG_FILE}: a bare model without a task; average models from attnkit train")
    if not (path / TOKENIZER_FILE).is_file():
        raise AttnkitError(f"{path}: no {TOKENIZER_FILE}")
    return config
