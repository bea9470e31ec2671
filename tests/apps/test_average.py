"""`attnkit average`: the weights are the exact mean, the result is a model like any other, and models that cannot be
averaged are refused with one line before anything is written."""

import json
import shutil

import pytest
import safetensors.torch
import torch

from attnkit.apps.average import average
from attnkit.apps.cli import main
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, WEIGHTS_FILE
from attnkit.inference.pipeline import Pipeline
from attnkit.training.loop import train
from tests.conftest import run_config


@pytest.fixture
def two_models(sentiment_files, tmp_path):
    """A trained classifier and a copy of it with every weight moved: two models of one architecture and task."""
    first, second = tmp_path / "a", tmp_path / "b"
    train(run_config(sentiment_files, first, "classify", "train.epochs=1"), quiet=True)
    shutil.copytree(first, second)
    weights = safetensors.torch.load_file(str(second / WEIGHTS_FILE))
    torch.manual_seed(0)
    moved = {name: t + torch.randn_like(t) if t.is_floating_point() else t for name, t in weights.items()}
    safetensors.torch.save_file(moved, str(second / WEIGHTS_FILE))
    return first, second


def test_the_average_holds_the_mean_of_the_weights_and_predicts(two_models, sentiment_files, tmp_path):
    first, second = two_models
    assert main(["average", str(first), str(second), "--out", str(tmp_path / "mean")]) == 0
    mean = safetensors.torch.load_file(str(tmp_path / "mean" / WEIGHTS_FILE))
    a = safetensors.torch.load_file(str(first / WEIGHTS_FILE))
    b = safetensors.torch.load_file(str(second / WEIGHTS_FILE))
    assert mean.keys() == a.keys()
    for name, tensor in mean.items():
        assert torch.allclose(tensor, (a[name] + b[name]) / 2, atol=1e-6), name
    config = json.loads((tmp_path / "mean" / CONFIG_FILE).read_text())
    assert config["averaged_from"] == [str(first), str(second)]
    assert len(Pipeline.load(tmp_path / "mean").evaluate(sentiment_files["dev"])[1]) == 40


def test_a_model_averaged_with_itself_predicts_as_it_does(two_models, sentiment_files, tmp_path):
    first, _ = two_models
    twin = tmp_path / "twin"
    shutil.copytree(first, twin)
    mean = average([first, twin], tmp_path / "mean")
    texts = ["a fine film", "dull and long"]
    assert torch.equal(mean.encode(texts)[0], Pipeline.load(first).encode(texts)[0])


def test_models_of_other_labels_are_refused_before_writing(two_models, tmp_path, capsys):
    first, second = two_models
    config = json.loads((second / CONFIG_FILE).read_text())
    config["task_state"]["labels"] = ["yes", "no"]
    (second / CONFIG_FILE).write_text(json.dumps(config))
    assert main(["average", str(first), str(second), "--out", str(tmp_path / "mean")]) == 2
    error = capsys.readouterr().err
    assert (
        error == f"attnkit: error: {second}: its task_state differs from {first}'s; only models of one "
        "architecture, task, label set and tokenizer can be averaged\n"
    )
    assert not (tmp_path / "mean").exists()


def test_models_of_another_tokenizer_are_refused(two_models, tmp_path):
    first, second = two_models
    (second / "tokenizer.json").write_text((second / "tokenizer.json").read_text().replace('"a"', '"á"', 1))
    with pytest.raises(AttnkitError, match="its tokenizer differs"):
        average([first, second], tmp_path / "mean")


@pytest.mark.parametrize(
    ("paths", "out", "message"),
    [
        (["a"], "mean", "give at least two model directories"),
        (["a", "b"], "a", "is one of the models to average"),
        (["a", "b"], "b", "is one of the models to average"),
        (["a", "missing"], "mean", "not a model directory"),
    ],
)
def test_mistakes_get_one_line(two_models, tmp_path, capsys, paths, out, message):
    args = [str(tmp_path / p) for p in paths]
    assert main(["average", *args, "--out", str(tmp_path / out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_an_existing_out_is_replaced_only_when_asked(two_models, tmp_path, capsys):
    first, second = two_models
    (tmp_path / "mean").mkdir()
    (tmp_path / "mean" / "notes.txt").write_text("precious")
    for flags in ([], ["--overwrite"]):  # a user's folder: never replaced, and no hint that --overwrite would
        assert main(["average", str(first), str(second), "--out", str(tmp_path / "mean"), *flags]) == 2
        assert "mean: exists and is not an attnkit checkpoint; refusing to overwrite it" in capsys.readouterr().err
    assert (tmp_path / "mean" / "notes.txt").read_text() == "precious"
    average([first, second], tmp_path / "again")
    assert main(["average", str(first), str(second), "--out", str(tmp_path / "again")]) == 2
    assert "again: already exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert main(["average", str(first), str(second), "--out", str(tmp_path / "again"), "--overwrite"]) == 0
