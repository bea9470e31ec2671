"""Checkpoint directories: exact round trip, atomic writes, and one clear line for each kind of broken file."""

import errno
import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

from attnkit.apps.cli import main
from attnkit.config import ModelConfig, TokenizerConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import CONFIG_FILE, WEIGHTS_FILE, atomic_directory, recover
from attnkit.inference.checkpoint import load_model, save_checkpoint
from attnkit.inference.pipeline import Pipeline
from attnkit.nn import build_model
from attnkit.training.corpus import pretrain
from tests.conftest import corpus, pretrain_config

SMALL = dict(vocab_size=40, dim=16, num_heads=2, ff_dim=32, num_layers=2)


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "model"
    tokenizer = Tokenizer.train(["a small text to learn a vocabulary from"], TokenizerConfig(vocab_size=40))
    save_checkpoint(path, build_model(ModelConfig(arch="encoder", **SMALL)), tokenizer)
    return path


@pytest.mark.parametrize("arch", ["encoder", "decoder", "encoder-decoder"])
def test_round_trip_gives_identical_outputs(tmp_path, arch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(arch=arch, positions="relative", **SMALL)).eval()
    save_checkpoint(tmp_path / "model", model)
    loaded = load_model(tmp_path / "model")
    x = torch.randint(1, 40, (2, 5))
    args = (x, x) if arch == "encoder-decoder" else (x,)
    assert torch.equal(loaded(*args), model(*args))
    assert loaded.config == model.config


def test_tied_weights_stay_tied_after_loading(tmp_path):
    save_checkpoint(tmp_path / "model", build_model(ModelConfig(arch="encoder-decoder", **SMALL)))
    loaded = load_model(tmp_path / "model")
    assert loaded.decoder.output.weight is loaded.encoder.embedding.weight


def test_saving_over_a_checkpoint_replaces_it(saved):
    save_checkpoint(saved, build_model(ModelConfig(arch="decoder", **SMALL)))
    assert load_model(saved).config.arch == "decoder"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]  # no temporary leftovers


def test_failed_save_leaves_no_directory(tmp_path):
    target = tmp_path / "model"
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_directory(target) as tmp:
            (tmp / CONFIG_FILE).write_text("{}")
            raise RuntimeError("disk full")
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_keeps_the_previous_checkpoint_and_says_so(saved, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_model", full)
    message = rf"^{saved}: could not be written \(No space left on device\); the previous one is unchanged$"
    with pytest.raises(AttnkitError, match=message):
        save_checkpoint(saved, build_model(ModelConfig(arch="decoder", **SMALL)))
    assert load_model(saved).config.arch == "encoder"
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]  # no temporary leftovers


def test_refuses_to_overwrite_a_directory_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "notes.txt").write_text("precious")
    with pytest.raises(AttnkitError, match="not an attnkit checkpoint; refusing to overwrite"):
        save_checkpoint(tmp_path, build_model(ModelConfig(**SMALL)))
    assert (tmp_path / "notes.txt").read_text() == "precious"


def test_truncated_weights_name_the_file(saved):
    weights = saved / WEIGHTS_FILE
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(AttnkitError, match=rf"^{weights}: unreadable, truncated or not safetensors"):
        load_model(saved)


def test_missing_weights_name_the_file(saved):
    (saved / WEIGHTS_FILE).unlink()
    with pytest.raises(AttnkitError, match=rf"^{saved / WEIGHTS_FILE}: missing"):
        load_model(saved)


def test_missing_tensor_is_named(saved):
    weights = safetensors.torch.load_file(saved / WEIGHTS_FILE)
    del weights["layers.1.ff.out_proj.bias"]
    safetensors.torch.save_file(weights, saved / WEIGHTS_FILE)
    with pytest.raises(
        AttnkitError, match=r"incomplete weights; Missing key\(s\) in state_dict: \"layers.1.ff.out_proj.bias\""
    ):
        load_model(saved)


def edit_config(path: Path, **changes) -> None:
    data = json.loads((path / CONFIG_FILE).read_text())
    data["model"].update(changes)
    (path / CONFIG_FILE).write_text(json.dumps(data))


def test_unknown_config_field_names_file_and_field(saved):
    edit_config(saved, num_layerz=3)
    with pytest.raises(AttnkitError, match=rf"^{saved / CONFIG_FILE}: unknown setting: model.num_layerz \(did you"):
        load_model(saved)


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("dim", "16", "expected int"),
        ("dropout", True, "expected a finite float"),
        ("norm", "batchnorm", "expected one of 'layernorm', 'rmsnorm'"),
    ],
)
def test_wrong_typed_config_field_names_file_and_field(saved, field, value, expected):
    edit_config(saved, **{field: value})
    with pytest.raises(AttnkitError, match=rf"^{saved / CONFIG_FILE}: model.{field}: {expected}"):
        load_model(saved)


def test_config_that_disagrees_with_the_weights_names_the_tensor(saved):
    edit_config(saved, ff_dim=48)
    with pytest.raises(AttnkitError, match=r"tensor 'layers.0.ff.in_proj.weight' has shape \[32, 16\]"):
        load_model(saved)


def test_invalid_json_names_the_line(saved):
    (saved / CONFIG_FILE).write_text('{\n  "format": "attnkit",\n  "model": {,}\n}')
    with pytest.raises(AttnkitError, match=rf"^{saved / CONFIG_FILE}:3: invalid JSON"):
        load_model(saved)


def test_cli_info_prints_architecture_and_parameters(saved, capsys):
    assert main(["info", str(saved)]) == 0
    out = capsys.readouterr().out
    parameters = sum(p.numel() for p in load_model(saved).parameters())
    assert "encoder, 2 layers" in out and f"parameters  {parameters:,}" in out


def test_cli_error_is_one_line_with_exit_code_2(saved, capsys):
    (saved / WEIGHTS_FILE).unlink()
    assert main(["info", str(saved)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("attnkit: error: ") and "Traceback" not in err


def test_recover_puts_back_what_a_kill_left_aside_and_touches_nothing_else(tmp_path):
    aside = tmp_path / ".state.abcd1234.old" / "state"
    aside.mkdir(parents=True)
    (aside / "state.json").write_text("{}")
    unfinished = tmp_path / ".state.wxyz5678.tmp"
    unfinished.mkdir()
    others = [tmp_path / ".state.b.abcd1234.tmp", tmp_path / ".statex.abcd1234.old", tmp_path / "notes"]
    for other in others:
        other.mkdir()
    recover(tmp_path / "state")
    assert (tmp_path / "state" / "state.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["state", *(p.name for p in others)])


BEFORE = Path(__file__).parents[1] / "fixtures" / "before-redesign"  # see its README: written by an earlier attnkit


@pytest.mark.parametrize("task", ["classify", "tag", "seq2seq"])
def test_a_checkpoint_written_before_the_redesign_loads_and_predicts_the_same(task, recwarn):
    expected = json.loads((BEFORE / "expected.json").read_text())[task]
    found = Pipeline.load(BEFORE / task, device="cpu").predict(expected["inputs"])
    assert len(recwarn) == 0  # its old setting names (data.max_target_length) load without a word
    for ours, theirs in zip(found, expected["predictions"]):
        if isinstance(theirs, dict):
            assert ours["label"] == theirs["label"] and ours["probability"] == pytest.approx(
                theirs["probability"], 1e-5
            )
        else:
            assert ours == theirs


def test_a_pretrained_model_refuses_to_evaluate_and_info_says_to_fine_tune_it(tmp_path, capsys):

    pretrain(pretrain_config(corpus(tmp_path / "text"), tmp_path / "model", "encoder", "train.max_steps=2"))
    (tmp_path / "dev.tsv").write_text("label\ttext\ngood\thappy\n")
    assert main(["evaluate", str(tmp_path / "model"), "--data", str(tmp_path / "dev.tsv")]) == 2
    assert "this model was not trained for a task; fine-tune it first" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "model")]) == 0
    assert "task        pretrain (fine-tune it with attnkit train --init)" in capsys.readouterr().out
