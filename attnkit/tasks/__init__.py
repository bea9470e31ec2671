"""Task shapes: one file each, an object that answers every question about its shape (see base.Task). A new shape is
a new file and a line in TASKS."""

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.tasks.base import IGNORE_INDEX, AttentionInput, Batch, Task
from attnkit.tasks.classify import ClassifyTask
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
}


def make_task(
    config: TaskConfig, data: DataConfig, tokenizer: Tokenizer, model_config: ModelConfig, state: dict | None = None
) -> Task:
    """The task `config` names, for `tokenizer` and a model of `model_config`; `state` is a trained one's labels."""
    if config.name not in TASKS:
        known = ", ".join(repr(name) for name in TASKS)
        raise AttnkitError(f"task.name: expected one of {known}, got {config.name!r}")
    return TASKS[config.name](config, data, tokenizer, model_config, state)


def no_task(tokenizer: Tokenizer, model_config: ModelConfig) -> Task:
    """The task of a model that no attnkit run trained for one (a Hugging Face checkpoint, a bare model)."""
    return NoTask(TaskConfig(name="pretrain"), DataConfig(), tokenizer, model_config)


__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "AttentionInput",
    "Batch",
    "ClassifyTask",
    "NoTask",
    "PairTask",
    "PretrainTask",
    "RegressTask",
    "Seq2SeqTask",
    "TagTask",
    "Task",
    "make_task",
    "no_task",
]
