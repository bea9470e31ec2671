"""Task shapes: one file each, a small object with the verbs the trainer and the pipeline call."""

from attnkit.config import DataConfig, TaskConfig
from attnkit.tasks.base import IGNORE_INDEX, Batch, Task
from attnkit.tasks.classify import ClassifyTask
from attnkit.tasks.pretrain import PretrainTask
from attnkit.tasks.seq2seq import Seq2SeqTask
from attnkit.tasks.tag import TagTask

TASKS: dict[str, type[Task]] = {
    "classify": ClassifyTask,
    "tag": TagTask,
    "seq2seq": Seq2SeqTask,
    "pretrain": PretrainTask,
}


def make_task(config: TaskConfig, data: DataConfig, state: dict | None = None) -> Task:
    return TASKS[config.name](config, data, state)


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
