"""attnkit pretrain: raw text to token files once, every architecture trains, perplexity falls, bad corpora
are named."""

import os

import pytest

from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.training.corpus import pretrain
from tests.conftest import corpus, pretrain_config


@pytest.mark.parametrize("arch", ["encoder", "decoder", "encoder-decoder"])
def test_each_architecture_learns_its_objective(tmp_path, arch):
    text = corpus(tmp_path / "text")
    summary = pretrain(
        pretrain_config(text, tmp_path / "out", arch, "train.max_steps=60", "train.epochs=1", "train.eval_every=30")
    )
    assert summary["steps"] == 60  # max_steps wins over epochs
    assert summary["dev"]["perplexity"] < 8  # from ~100 (the vocabulary) at the start
    if arch != "decoder":
        hidden, mask = Pipeline.load(tmp_path / "out").encode(["the cat sat"])
        assert hidden.shape == (1, 5, 32) and mask.all()


def test_token_files_are_written_once_and_reused(tmp_path):
    text = corpus(tmp_path / "text")
    pretrain(pretrain_config(text, tmp_path / "a", "decoder", "train.max_steps=1", f"data.cache={tmp_path / 'cache'}"))
    written = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()}
    assert set(written) == {"tokenizer.json", "train.u16", "dev.u16", "manifest.json"}
    pretrain(pretrain_config(text, tmp_path / "b", "decoder", "train.max_steps=1", f"data.cache={tmp_path / 'cache'}"))
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cache").iterdir()} == written
    train_bytes, dev_bytes = (os.path.getsize(tmp_path / "cache" / f) for f in ("train.u16", "dev.u16"))
    assert 0 < dev_bytes < train_bytes / 50  # a 1% tail held out for perplexity


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", r"empty corpus"),
        (b"fine line\nbad \xff byte\n", r"part.txt:2: not valid UTF-8"),
    ],
)
def test_bad_corpora_are_named(tmp_path, content, message):
    folder = tmp_path / "text"
    folder.mkdir()
    (folder / "part.txt").write_bytes(content)
    with pytest.raises(AttnkitError, match=message):
        pretrain(pretrain_config(str(folder), tmp_path / "out", "encoder"))
    assert not (tmp_path / "out.corpus").exists() and not (tmp_path / "out").exists()  # nothing half-written
    (tmp_path / "nothing").mkdir()
    with pytest.raises(AttnkitError, match="nothing: no .txt files in this folder"):
        pretrain(pretrain_config(str(tmp_path / "nothing"), tmp_path / "out", "encoder"))


@pytest.mark.parametrize("where", ["a folder of the user's", "a file of the user's"])
def test_a_cache_path_naming_a_users_files_is_refused_and_they_are_untouched(tmp_path, where):
    text = corpus(tmp_path / "text")
    target = tmp_path / "home"
    if where.startswith("a folder"):
        target.mkdir()
        (target / "tokenizer.json").write_text("mine")  # a name attnkit would write, beside one it would not
        (target / "notes.txt").write_text("mine")
    else:
        target.write_text("mine")
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    with pytest.raises(AttnkitError, match=r"home: data.cache names a (folder that holds other files|file); attnkit"):
        pretrain(pretrain_config(text, tmp_path / "out", "decoder", f"data.cache={target}"))
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before and not (tmp_path / "out").exists()
