"""A model's facts (its data, figures and settings) as `attnkit info` prints them and `attnkit export` writes them,
in the Hugging Face folder's README.md, whose code loads the model with transformers."""

import contextlib
import io
import json
import re
from pathlib import Path

import pytest

from attnkit.apps.card import model_card, read_facts
from attnkit.apps.cli import main
from attnkit.apps.export import export
from attnkit.interop.hf import TaskExport
from tests.conftest import summary_of, trained, trained_on

transformers = pytest.importorskip("transformers")


def card_code_prints(folder: Path) -> str:
    """What the card's Python block prints when it runs (it loads the folder by the path export was given)."""
    card = (folder / "README.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", card, re.S)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})  # noqa: S102 - the card's own example, written by attnkit
    return printed.getvalue()


def test_a_classifiers_card_gives_its_data_figures_and_settings_and_its_code_runs(sentiment_files, tmp_path):
    model = trained_on(sentiment_files, tmp_path, "classify", 20, "train.eval_every=20", "model.preset=bert")
    summary = summary_of(model)
    out = tmp_path / "hf"
    export(model, out)
    card = (out / "README.md").read_text()
    examples = len(sentiment_files["train"].read_text().splitlines()) - 1  # less the header
    size = sentiment_files["train"].stat().st_size
    assert f"| train | `{sentiment_files['train']}` | {examples:,} | {size:,} bytes |" in card
    dev = summary["dev"]
    assert f"| dev | {dev['accuracy']:.4f} | {dev['macro_f1']:.4f} |" in card
    assert "- `model.dim`: 32" in card and "- `train.lr`: " in card
    assert card_code_prints(out).strip() in ("good", "bad")  # the card's example classifies a text


def test_a_translators_card_shows_how_to_generate_and_its_code_runs(copy_files, tmp_path):
    model = trained_on(copy_files, tmp_path, "seq2seq", 30, "model.preset=bart", "train.eval_every=30")
    out = tmp_path / "hf"
    export(model, out)
    card = (out / "README.md").read_text()
    assert "AutoModelForSeq2SeqLM" in card and "| dev | " in card
    card_code_prints(out)  # generates without an error


def test_info_prints_the_cards_facts(sentiment_files, tmp_path, capsys):
    model = trained(tmp_path, "classify", sentiment_files["train"], (), 5, dev=sentiment_files["dev"])
    assert main(["info", str(model)]) == 0
    printed = {line[:11].strip(): line[12:] for line in capsys.readouterr().out.splitlines()}  # "key<11> value"
    examples = len(sentiment_files["train"].read_text().splitlines()) - 1
    size = sentiment_files["train"].stat().st_size
    assert printed["train"] == f"{sentiment_files['train']} ({examples:,} examples, {size:,} bytes)"
    dev = summary_of(model)["dev"]
    assert printed["dev score"] == f"accuracy {dev['accuracy']:.4f}  macro_f1 {dev['macro_f1']:.4f}"
    assert printed["trained"].startswith("5 steps in ") and "train.seed=" in printed["settings"]


def test_an_imported_models_card_says_only_what_is_known(tmp_path):
    assert read_facts(tmp_path) is None  # no config.json: nothing is known
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))  # a Hugging Face checkpoint's
    assert read_facts(tmp_path) is None
    card = model_card(None, "bert", TaskExport(None), "encoder", "out")
    assert (
        "A model (imported: its training is unknown)" in card
        and "## Results" not in card
        and "AutoModel.from_pretrained" in card
    )
