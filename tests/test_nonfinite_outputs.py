"""A model whose outputs are not numbers (NaN or infinity) never yields a prediction: damaged weights are refused
when loaded, and outputs that overflow under float16 autocast (the dev evaluation of a float16 run) are an error
naming the cause, not a label picked from NaNs."""

import pytest
import torch

from attnkit.errors import AttnkitError, require_finite
from attnkit.inference.checkpoint import save_weights
from attnkit.inference.pipeline import Pipeline
from tests.conftest import copy_pairs, sentiment_rows, trained

DATA = {"classify": (sentiment_rows(30, 1), ("label", "text")), "seq2seq": (copy_pairs(30, 1), ("source", "target"))}


def trained_pipeline(tmp_path, task: str) -> Pipeline:
    rows, header = DATA[task]
    return Pipeline.load(trained(tmp_path, task, rows, header, 2, "train.patience=null"), device="cpu")


@pytest.mark.parametrize("task", ["classify", "seq2seq"])
def test_weights_holding_nan_are_refused_when_loaded(tmp_path, task):
    pipeline = trained_pipeline(tmp_path, task)
    name, weight = next(iter(pipeline.model.named_parameters()))
    with torch.no_grad():
        weight[0] = float("nan")
    save_weights(pipeline.model, tmp_path / "model")
    with pytest.raises(AttnkitError, match=rf"model.safetensors: tensor '{name}' holds NaN or infinity"):
        Pipeline.load(tmp_path / "model", device="cpu")


@pytest.mark.parametrize("task", ["classify", "seq2seq"])
def test_outputs_that_overflow_float16_are_an_error_not_a_prediction(tmp_path, task):
    pipeline = trained_pipeline(tmp_path, task)
    text = "happy red" if task == "classify" else "red green"
    with torch.no_grad():  # products beyond float16 (largest 65,504), far within float32
        for parameter in pipeline.model.parameters():
            if parameter.dim() == 2:
                parameter.mul_(1e4)
    assert pipeline.predict([text])  # float32: a prediction
    with torch.autocast("cpu", dtype=torch.float16), pytest.raises(AttnkitError, match="not finite .*float16"):
        pipeline.predict([text])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_require_finite_finds_one_nan_or_infinity_anywhere(value, dtype):
    scores = torch.randn(4, 300).to(dtype)
    assert require_finite(scores) is scores
    scores[2, 177] = value
    with pytest.raises(AttnkitError, match="not finite"):
        require_finite(scores)
    assert require_finite(torch.empty(0, 300, dtype=dtype)).shape == (0, 300)
    assert require_finite(torch.full((2, 3), 3e38)) is not None  # large but finite: no error
