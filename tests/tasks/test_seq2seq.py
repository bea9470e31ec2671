"""Sequence to sequence: teacher-forced training and beam-search decoding learn a copy task."""

import pytest

from attnkit.config import DataConfig
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.tasks.seq2seq import Seq2SeqTask
from attnkit.training.loop import train
from tests.conftest import run_config


def test_encoder_decoder_learns_to_copy(copy_files, tmp_path):
    settings = (
        "train.epochs=80",
        "model.dim=64",
        "model.num_heads=4",
        "train.lr=5e-3",
        "train.label_smoothing=0.0",
        "task.beam_size=2",
        "train.patience=null",
        "train.eval_every=160",
    )
    summary = train(run_config(copy_files, tmp_path / "out", "seq2seq", *settings))
    assert summary["dev"]["bleu"] > 90
    assert Pipeline.load(tmp_path / "out").predict(["red green blue"]) == ["red green blue"]


def test_a_missing_column_names_the_setting_that_picks_it(tmp_path):
    path = tmp_path / "p.tsv"
    path.write_text("en\ttarget\na\tb\n")
    with pytest.raises(AttnkitError, match=r"p.tsv:1: no column 'source' in the header \(found: en, target\); name it"):
        Seq2SeqTask.read(DataConfig(), path)
