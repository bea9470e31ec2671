"""The README's first command, `attnkit demo`, runs every step of its story (at a fiftieth of its time)."""

import pytest

from attnkit.demo import demo


def test_demo_runs_every_step_and_writes_the_plot(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    results = demo(tmp_path / "demo", pace=0.02)
    out = capsys.readouterr().out
    for step in ("1. pretraining", "2. sentiment", "3. part-of-speech", "4. translation", "done in"):
        assert step in out
    assert (tmp_path / "demo" / "learning_curve.png").stat().st_size > 10_000
    assert len(results["sentiment"]["from scratch"]) == len(results["sentiment"]["sizes"]) == 2
    for model in ("pretrained", "sentiment-tuned-4000", "sentiment-scratch-500", "tagging", "translation"):
        assert (tmp_path / "demo" / model / "model.safetensors").is_file()
