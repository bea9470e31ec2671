"""A model whose outputs are not numbers (NaN or infinity) never yields a prediction: damaged weights are refused
when loaded, and outputs that overflow under float16 autocast (the dev evaluation of a float16 run) are an error
naming the cause, not a label picked from NaNs."""

import pytest
import torch

from attnkit.apps.cli import main
from attnkit.errors import AttnkitError
from attnkit.inference.checkpoint import save_weights
from attnkit.inference.pipeline import Pipeline
from tests.conftest import TINY, copy_pairs, sentiment_rows, write_tsv

SETS = [word for setting in [*TINY, "train.patience=null"] for word in ("--set", setting)]


def trained(tmp_path, task: str) -> Pipeline:
    rows, header = (
        (sentiment_rows(30, 1), ("label", "text")) if task == "classify" else (copy_pairs(30, 1), ("source", "target"))
    )
    train = write_tsv(tmp_path / "train.tsv", header, rows)
    args = ["train", "--task", task, "--train", train, "--out", tmp_path / "model", "--max-steps", "2", *SETS]
    assert main([str(a) for a in args]) == 0
    return Pipeline.load(tmp_path / "model", device="cpu")


@pytest.mark.parametrize("task", ["classify", "seq2seq"])
def test_weights_holding_nan_are_refused_when_loaded(tmp_path, task):
    pipeline = trained(tmp_path, task)
    name, weight = next(iter(pipeline.model.named_parameters()))
    with torch.no_grad():
        weight[0] = float("nan")
    save_weights(pipeline.model, tmp_path / "model")
    with pytest.raises(AttnkitError, match=rf"model.safetensors: tensor '{name}' holds NaN or infinity"):
        Pipeline.load(tmp_path / "model", device="cpu")


@pytest.mark.parametrize("task", ["classify", "seq2seq"])
def test_outputs_that_overflow_float16_are_an_error_not_a_prediction(tmp_path, task):
    pipeline = trained(tmp_path, task)
    text = "happy red" if task == "classify" else "red green"
    with torch.no_grad():  # products beyond float16 (largest 65,504), far within float32
        for parameter in pipeline.model.parameters():
            if parameter.dim() == 2:
                parameter.mul_(1e4)
    assert pipeline.predict([text])  # float32: a prediction
    with torch.autocast("cpu", dtype=torch.float16), pytest.raises(AttnkitError, match="not finite .*float16"):
        pipeline.predict([text])
