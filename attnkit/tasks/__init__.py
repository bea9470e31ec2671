"""Task shapes: one file each, a small object with the verbs the trainer and the pipeline call."""

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.tasks.base import IGNORE_INDEX, Batch, Task
from attnkit.tasks.classify import ClassifyTask
from attnkit.tasks.pretrain import PretrainTask
from attnkit.tasks.seq2seq import Seq2SeqTask
from attnkit.tasks.tag import TagTask
from attnkit.tokenization import Tokenizer

TASKS: dict[str, type[Task]] = {
    "classify": ClassifyTask,
    "tag": TagTask,
    "seq2seq": Seq2SeqTask,
    "pretrain": PretrainTask,
}


def make_task(
    config: TaskConfig, data: DataConfig, tokenizer: Tokenizer, model_config: ModelConfig, state: dict | None = None
) -> Task:
    """The task `config` names, for `tokenizer` and a model of `model_config`; `state` is a trained one's labels."""
    return TASKS[config.name](config, data, tokenizer, model_config, state)


__all__ = [
    "IGNORE_INDEX",
    "TASKS",
    "Batch",
    "ClassifyTask",
    "PretrainTask",
    "Seq2SeqTask",
    "TagTask",
    "Task",
    "make_task",
]
