"""Config validation: the one place that checks what a user wrote, naming the field and what is allowed."""

import pytest

from attnkit import RunConfig
from attnkit.apps.cli import main
from attnkit.config import ModelConfig, TaskConfig, from_dict, to_dict
from attnkit.errors import AttnkitError, AttnkitWarning


def test_round_trip_through_a_dict():
    config = ModelConfig(arch="decoder", positions="rotary", attention_scale=1.0)
    assert from_dict(ModelConfig, to_dict(config), "x") == config


def test_json_integers_are_accepted_for_float_fields():
    assert from_dict(ModelConfig, {"dropout": 0}, "x").dropout == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"heads": 4}, r"x: unknown setting: heads \(did you mean num_heads\?\)$"),
        ({"num_heads": 2.5}, "x: num_heads: expected int, got 2.5"),
        ({"num_layers": True}, "x: num_layers: expected int, got True"),
        ({"positions": "absolute"}, "x: positions: expected one of 'none', 'sinusoidal'"),
        ({"attention_scale": "1"}, "x: attention_scale: expected a finite float or null"),
        ({"dim": 30, "num_heads": 4}, "x: model.dim \\(30\\) must be divisible by model.num_heads \\(4\\)"),
        ({"dropout": 1.5}, "x: model.dropout must be in \\[0, 1\\)"),
        ([1, 2], "x: config: expected a mapping of fields, got list"),
    ],
)
def test_bad_values_name_the_field(values, message):
    with pytest.raises(AttnkitError, match=f"^{message}"):
        from_dict(ModelConfig, values, "x")


def test_a_mask_fraction_outside_0_1_is_refused():
    with pytest.raises(AttnkitError, match="^x: task.mask_fraction must be in \\(0, 1\\), not 1.5"):
        from_dict(TaskConfig, {"name": "pretrain", "mask_fraction": 1.5}, "x")


def test_run_config_leaves_the_callers_values_alone():

    model = {"dim": 64, "num_heads": 4}
    values = {"task": {"name": "classify"}, "model": model}
    RunConfig.from_values(values, "x", ["model.num_layers=3"])
    assert values == {"task": {"name": "classify"}, "model": {"dim": 64, "num_heads": 4}}


def test_paths_from_python_are_accepted_where_text_is(tmp_path):

    run = RunConfig.from_values({"task": {"name": "classify"}, "out": tmp_path, "train": {"init": tmp_path / "m"}}, "x")
    assert (run.out, run.train.init) == (str(tmp_path), str(tmp_path / "m"))
    with pytest.raises(AttnkitError, match="^x: train.lr: expected a finite float, got PosixPath"):
        RunConfig.from_values({"task": {"name": "classify"}, "train": {"lr": tmp_path}}, "x")


def test_yaml_floats_without_a_dot_and_overrides(tmp_path):

    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 3e-4\n  warmup_steps: 10\n")
    run = RunConfig.from_yaml(path, ["train.clip_norm=null", "task.name=tag"])
    assert run.train.lr == 3e-4 and run.train.clip_norm is None and run.model.arch == "encoder"
    path.write_text("train:\n  lr: [3e-4\n")
    with pytest.raises(AttnkitError, match=r"run.yaml:\d+: invalid YAML"):
        RunConfig.from_yaml(path)


def test_every_unknown_key_is_reported_with_a_did_you_mean(tmp_path):

    path = tmp_path / "run.yaml"
    path.write_text("train:\n  learning_rate: 0.1\nmodel:\n  layers: 2\n")
    message = (
        r"run.yaml:2: unknown settings: train.learning_rate \(did you mean train.lr\?\), "
        r"model.layers \(did you mean model.num_layers\?\)$"
    )
    with pytest.raises(AttnkitError, match=message):
        RunConfig.from_yaml(path)


def test_an_unknown_section_gets_a_did_you_mean():

    with pytest.raises(AttnkitError, match=r"^x: unknown setting: trian \(did you mean train\?\)$"):
        RunConfig.from_values({"trian": {"lr": 0.1}}, "x")


def test_an_unknown_key_without_a_close_match_points_to_the_reference():
    with pytest.raises(AttnkitError, match=r"^x: unknown setting: wibble; docs/configuration.md lists every setting$"):
        from_dict(ModelConfig, {"wibble": 1}, "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("train:\n  epochs: 3\n  lr: fast\n", r":3: train.lr: expected a finite float, got 'fast'"),
        ("train:\n  lr: .nan\n", r":2: train.lr: expected a finite float, got nan"),
        ("train:\n  seed: -1\n", r":2: train.seed must be in \[0, 4294967295\], got -1"),
        (
            "task: {name: classify}\nmodel:\n  dim: 64\n  num_heads: 0\n",
            r":4: model.num_heads must be at least 1, got 0",
        ),
        (
            "train:\n  epochs: 3\n  lerning_rate: 1\n",
            r":3: unknown setting: train.lerning_rate \(did you mean train.lr\?\)",
        ),
        ("train:\n  lr: 1.0e-3\ntrain:\n  lr: 2.0e-3\n", r":3: invalid YAML \('train' is given twice\)"),
    ],
)
def test_a_mistake_in_a_yaml_file_names_its_line(tmp_path, text, message):

    config = tmp_path / "run.yaml"
    config.write_text(text)
    with pytest.raises(AttnkitError, match=f"^{config}{message}"):
        RunConfig.from_yaml(config)


def test_an_old_setting_name_loads_with_a_warning_naming_the_new_one(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("task: {name: seq2seq}\ndata:\n  max_target_length: 12\n")
    with pytest.warns(AttnkitWarning, match=r"run.yaml:3: data.max_target_length is now called data.max_new_tokens"):
        run = RunConfig.from_yaml(config)
    assert run.data.max_new_tokens == 12


def test_an_old_and_a_new_name_together_are_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("data:\n  max_target_length: 12\n  max_new_tokens: 8\n")
    with pytest.raises(AttnkitError, match=r"run.yaml:2: data.max_target_length is the old name of data.max_new_"):
        RunConfig.from_yaml(config)


def test_the_command_says_the_warning_in_one_line(tmp_path, capsys):
    config = tmp_path / "run.yaml"
    config.write_text("task: {name: seq2seq}\ndata:\n  max_target_length: 12\n")
    assert main(["train", str(config)]) == 2  # no training file: the run stops after reading the config
    warning, error = capsys.readouterr().err.splitlines()
    assert (
        warning
        == f"attnkit: warning: {config}:3: data.max_target_length is now called data.max_new_tokens; read as that"
    )
    assert error == "attnkit: error: data.train: no training file given"


def test_segments_are_an_encoders_alone():
    with pytest.raises(AttnkitError, match=r"model.segments \(2\): only an encoder reads segments, not 'decoder'"):
        ModelConfig(arch="decoder", segments=2)
