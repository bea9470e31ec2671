"""Every example configuration is valid, and points at files that exist where ../shared is present."""

from pathlib import Path

import pytest

from attnkit import RunConfig
from attnkit.tasks import TASKS

ROOT = Path(__file__).parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))


def test_there_is_an_example_per_task_shape():
    tasks = {RunConfig.from_yaml(path).task.name for path in EXAMPLES}
    assert tasks == set(TASKS)


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_is_valid_and_its_data_exists(path, monkeypatch):
    run = RunConfig.from_yaml(path)
    monkeypatch.chdir(ROOT)
    if not (ROOT.parent / "shared" / "data").is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    for file in (run.data.train, run.data.dev, run.data.test):
        assert file is None or Path(file).exists(), file  # pretraining text may be a folder
