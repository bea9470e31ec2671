"""The documentation says what the code does: every configuration key is documented, every CLI command is in
the README, every example config named in the docs exists."""

import dataclasses
import re
import typing
from pathlib import Path

import pytest

from attnkit.apps.cli import build_parser
from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig, TrainConfig

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("config", [TaskConfig, DataConfig, TokenizerConfig, ModelConfig, TrainConfig])
def test_every_configuration_key_is_documented(config):
    reference = (ROOT / "docs" / "configuration.md").read_text()
    section = config.__name__.removesuffix("Config").lower()
    assert f"## `{section}`" in reference
    documented = reference.split(f"## `{section}`")[1].split("\n## ")[0]
    hints = typing.get_type_hints(config)
    for field in dataclasses.fields(config):
        assert f"`{field.name}`" in documented, f"{section}.{field.name} is not in docs/configuration.md"
        if dataclasses.is_dataclass(hints[field.name]):  # a nested section (train.lora): each of its keys too
            for inner in dataclasses.fields(hints[field.name]):
                assert f"`{field.name}.{inner.name}`" in documented, f"{section}.{field.name}.{inner.name}"


def test_every_command_is_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    commands = build_parser()._subparsers._group_actions[0].choices  # noqa: SLF001
    for name in commands:
        assert f"attnkit {name}" in readme, f"`attnkit {name}` is not in the README"


def test_documented_example_configs_exist():
    text = "".join(p.read_text() for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])
    for name in set(re.findall(r"examples/([\w-]+\.yaml)", text)):
        assert (ROOT / "examples" / name).is_file(), name


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    command = next(
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line.startswith("python3 -m venv")
    )
    assert command in readme


def test_the_help_names_every_task_and_family():
    """attnkit's --help answers without loading torch, so it names the tasks and families itself: all of them."""
    from attnkit.apps import cli
    from attnkit.interop.hf import FAMILIES
    from attnkit.tasks import TASKS

    assert all(name in cli.TASK_HELP for name in TASKS if name != "pretrain")  # pretraining has its own command
    assert all(name in cli.PRESET_HELP for name in FAMILIES)


def test_the_configuration_knows_each_tasks_architecture():
    """RunConfig checks a run without importing the tasks, from TASK_ARCHS: it must say what the tasks say."""
    from attnkit.config import TASK_ARCHS
    from attnkit.tasks import TASKS

    assert TASK_ARCHS == {name: task.arch for name, task in TASKS.items()}


def test_every_task_has_a_row_in_the_readme():
    from attnkit.tasks import TASKS

    readme = (ROOT / "README.md").read_text()
    for name in TASKS:
        assert f"\n| {name} |" in readme, name


def test_the_cli_offers_every_engine_and_quantization():
    from attnkit.apps import cli
    from attnkit.inference import pipeline
    from attnkit.interop import ct2

    assert cli.ENGINES == pipeline.ENGINES and cli.QUANTIZATIONS == ct2.QUANTIZATIONS
