"""The README's first command, `attnkit demo`, runs every step of its story (at a fiftieth of its steps)."""

import json
from pathlib import Path

import pytest

from attnkit.apps.demo import _compare, demo


def test_demo_runs_every_step_and_writes_the_plot(tmp_path, capsys, monkeypatch):
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    results = demo("demo", pace=0.02)
    out = capsys.readouterr().out
    for step in (
        "1. pretraining",
        "2. sentiment",
        "(always the commonest label: 51.0%)",
        "3. part-of-speech",
        "4. translation",
        "done in",
    ):
        assert step in out
    assert Path("demo/learning_curve.png").stat().st_size > 10_000
    assert len(results["sentiment"]["from scratch"]) == len(results["sentiment"]["sizes"]) == 2
    for model in ("pretrained", "sentiment-tuned-4000", "sentiment-scratch-500", "tagging", "translation"):
        assert Path("demo", model, "model.safetensors").is_file()
    data = json.loads(Path("demo/tagging/config.json").read_text())["data"]
    assert data["train"] == "demo/data/tr-pos.train.conll"  # as given, not made absolute


def test_the_demo_says_what_its_figures_show():
    assert _compare(0.598, 0.588).startswith("level")  # 1.0 point: within the noise of 500 reviews
    assert _compare(0.72, 0.65) == "pretraining helps: +7.0 points"
    assert _compare(0.65, 0.72).startswith("from scratch is ahead by 7.0 points")
