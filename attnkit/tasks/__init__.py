"""Task shapes: one file each, an object that answers every question about its shape (see base.Task). A new shape is
a new file and a line in TASKS."""

from pathlib import Path

import torch
from torch import nn

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, read_json
from attnkit.interop.hf import build_from, load_hf_head, read_hf_config, read_hf_weights
from attnkit.interop.sentence_transformers import is_st_folder, read_st
from attnkit.tasks.base import AttentionInput, Batch, Task
from attnkit.tasks.classify import ClassifyTask
from attnkit.tasks.embed import EmbedTask
from attnkit.tasks.losses import IGNORE_INDEX
from attnkit.tasks.pair import PairTask
from attnkit.tasks.pretrain import NoTask, PretrainTask
from attnkit.tasks.regress import RegressTask
from attnkit.tasks.seq2seq import Seq2SeqTask
from attnkit.tasks.tag import TagTask

TASKS: dict[str, type[Task]] = {
    "classify": ClassifyTask,
    "tag": TagTask,
    "seq2seq": Seq2SeqTask,
    "pretrain": PretrainTask,
    "pair": PairTask,
    "regress": RegressTask,
    "embed": EmbedTask,
}


def make_task(
    config: TaskConfig, data: DataConfig, tokenizer: Tokenizer, model_config: ModelConfig, state: dict | None = None
) -> Task:
    """The task `config` names, for `tokenizer` and a model of `model_config`; `state` is a trained one's labels."""
    if config.name not in TASKS:
        known = ", ".join(repr(name) for name in TASKS)
        raise AttnkitError(f"task.name: expected one of {known}, got {config.name!r}")
    return TASKS[config.name].of_arch(model_config.arch)(config, data, tokenizer, model_config, state)


def hugging_face_model(path: Path, trust_pickle: bool = False) -> tuple[Task, nn.Module, Tokenizer, str]:
    """A Hugging Face folder's model as attnkit reads it, with its tokenizer and its format in words: a task model
    where its class is a family's head that a task shape takes (*ForSequenceClassification, *ForTokenClassification:
    its head and its id2label), an embedding model where it is a sentence-transformers folder (its pooling), else
    the family's bare architecture with NoTask."""
    family, config = read_hf_config(path)
    tensors, where = read_hf_weights(Path(path), trust_pickle)  # a pickle is refused before anything else is read
    tokenizer = Tokenizer.load(path)
    hf = read_json(Path(path) / CONFIG_FILE)
    kind, origin = family.head_of(hf), f"Hugging Face {family.model_type}"
    for name, shape in TASKS.items():
        state = shape.of_head(kind, hf) if kind else None
        if state is not None:
            head = family.heads[kind]
            data = DataConfig(max_length=config.max_positions)  # what it was trained to read (rotary: any length)
            task = shape(TaskConfig(name=name, pooling=head.pooling), data, tokenizer, config, state)
            model = task.build_model()
            load_hf_head(model, family, config, head, tensors, where)
            return task, model.eval(), tokenizer, f"{origin} ({head.architecture})"
    # drawn as it always was: a fine-tuning that starts from this checkpoint draws its head after these draws
    model = build_from(family, config, tensors, where, drawn=True)
    if is_st_folder(path):
        st = read_st(path)
        data = DataConfig(max_length=st.max_length or config.max_positions)
        state = {"normalize": st.normalize, "pooling": st.pooling}
        task = EmbedTask(TaskConfig(name="embed"), data, tokenizer, config, state)
        with torch.random.fork_rng():  # drawn without moving the random state, as the bare model's reading left it
            embedder = task.build_model()
        task.initialize(embedder, model, str(path))
        return task, embedder.eval(), tokenizer, f"{origin} (sentence-transformers)"
    return no_task(tokenizer, model.config), model, tokenizer, origin


def no_task(tokenizer: Tokenizer, model_config: ModelConfig) -> Task:
    """The task of a model that no attnkit run trained for one (a Hugging Face checkpoint, a bare model)."""
    return NoTask(TaskConfig(name="pretrain"), DataConfig(), tokenizer, model_config)


__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "AttentionInput",
    "Batch",
    "ClassifyTask",
    "EmbedTask",
    "NoTask",
    "PairTask",
    "PretrainTask",
    "RegressTask",
    "Seq2SeqTask",
    "TagTask",
    "Task",
    "hugging_face_model",
    "make_task",
    "no_task",
]
