"""The token cache of `attnkit train`: items as the task encodes them, reused while the file is unchanged, rebuilt
when it changes, and never left half-written (a bad row, a killed tokenization)."""

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from attnkit import RunConfig
from attnkit.config import TokenizerConfig
from attnkit.data.batching import batches_by_tokens
from attnkit.data.item_files import Items
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.inference.checkpoint import read_trained
from attnkit.tasks import TASKS, make_task
from attnkit.training.cache import MANIFEST_FILE, _remove_killed_builds, held_out_indices
from attnkit.training.loop import train
from attnkit.training.prepare import hold_out
from tests.conftest import run_config, sentiment_rows, write_tsv


def cached_items(out: Path) -> Items:
    return Items(Path(f"{out}.corpus") / "train")


@pytest.mark.parametrize("task", ["classify", "tag", "seq2seq", "pair", "regress"])
def test_cached_items_are_what_the_task_encodes(task, tmp_path, request):
    fixture = {"classify": "sentiment_files", "tag": "tagging_files", "seq2seq": "copy_files"}.get(task)
    files = request.getfixturevalue(fixture or {"pair": "pair_files", "regress": "score_files"}[task])
    out = tmp_path / "run"
    run = run_config(files, out, task, "train.max_steps=1")
    train(run, quiet=True)
    trained = read_trained(out)
    made = make_task(run.task, run.data, Tokenizer.load(out), trained.model, trained.state)
    expected = made.encode(TASKS[task].read(run.data, files["train"]), training=True)
    items = cached_items(out)
    assert len(items) == len(expected)
    assert [items[i] for i in range(len(items))] == expected
    sizes = np.asarray(made.sizes(expected))
    assert np.array_equal(items.sizes, sizes)


def test_the_cache_is_reused_while_the_file_is_unchanged_and_rebuilt_when_it_changes(sentiment_files, tmp_path):
    out = tmp_path / "run"
    train(run_config(sentiment_files, out, "classify", "train.max_steps=2"), quiet=True)
    manifest = Path(f"{out}.corpus") / MANIFEST_FILE
    made = manifest.stat().st_mtime_ns
    first = len(cached_items(out))
    train(run_config(sentiment_files, out, "classify", "train.max_steps=2"), overwrite=True, quiet=True)
    assert manifest.stat().st_mtime_ns == made  # reused
    train(run_config(sentiment_files, out, "classify", "train.max_steps=3"), resume=True, quiet=True)
    assert manifest.stat().st_mtime_ns == made  # and by --resume, whose tokenizer and labels are the run's
    with open(sentiment_files["train"], "a") as f:
        f.write("pos\tone more good review\n")
    train(run_config(sentiment_files, out, "classify", "train.max_steps=2"), overwrite=True, quiet=True)
    assert manifest.stat().st_mtime_ns != made
    assert len(cached_items(out)) == first + 1
    made = manifest.stat().st_mtime_ns
    # another setting that changes the tokens rebuilds it too
    train(
        run_config(sentiment_files, out, "classify", "train.max_steps=2", "data.max_length=8"),
        overwrite=True,
        quiet=True,
    )
    assert manifest.stat().st_mtime_ns != made
    assert max(cached_items(out).sizes) == 8


@pytest.mark.parametrize("tokenizer", ["trained", "given"])
def test_a_bad_row_leaves_no_cache_and_is_said_as_the_reader_says_it(tmp_path, tokenizer):
    rows = sentiment_rows(300, seed=1)
    (tmp_path / "data").mkdir()
    path = write_tsv(tmp_path / "data" / "train.tsv", ("label", "text"), rows)
    with open(path, "a") as f:
        f.write("pos\n")  # line 302: one field
    extra = []
    if tokenizer == "given":  # no tokenizer to train: the label set is the first reading of the file
        Tokenizer.train([text for _, text in rows], TokenizerConfig(vocab_size=300)).save(tmp_path / "tok.json")
        extra = [f"tokenizer.path={tmp_path / 'tok.json'}"]
    out = tmp_path / "runs" / "run"
    with pytest.raises(AttnkitError, match=r"^\S*train.tsv:302: expected 2 tab-separated fields"):
        train(run_config({"train": path, "dev": path}, out, "classify", *extra), quiet=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", *(["tok.json"] if extra else [])]


def test_a_cache_folder_holding_other_files_is_refused(sentiment_files, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    run = run_config(sentiment_files, tmp_path / "run", "classify", f"data.cache={other}")
    with pytest.raises(AttnkitError, match="data.cache names a folder that holds other files"):
        train(run, quiet=True)
    assert (other / "notes.txt").read_text() == "keep me"


KILLED = """
import sys
import attnkit
run = attnkit.RunConfig.from_values({}, "test", sys.argv[1:])
attnkit.train(run, quiet=True)
"""


def test_a_killed_tokenization_leaves_no_half_cache_and_the_next_run_builds_it(tmp_path):
    rows = sentiment_rows(1000, seed=2) * 150  # long enough to tokenize that a kill lands during it
    path = write_tsv(tmp_path / "train.tsv", ("label", "text"), rows)
    out = tmp_path / "run"
    settings = [f"data.train={path}", f"out={out}", "task.name=classify", "train.max_steps=1", "model.dim=16"]
    settings += ["model.num_layers=1", "model.num_heads=2", "model.ff_dim=32", "tokenizer.vocab_size=300"]
    process = subprocess.Popen([sys.executable, "-c", KILLED, *settings], stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("run.corpus.partial-*/train")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()[-2000:]  # still tokenizing
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert not Path(f"{out}.corpus").exists()  # no cache, half or whole
    train(RunConfig.from_values({}, "test", settings), overwrite=True, quiet=True)
    assert len(cached_items(out)) == len(rows)
    assert not list(tmp_path.glob("run.corpus.partial-*"))  # the killed build's folder is gone


def test_held_out_examples_are_those_random_shuffle_holds_out():
    for count, seed in ((10, 0), (997, 3)):
        shuffled = list(range(count))
        random.Random(seed).shuffle(shuffled)
        held = held_out_indices(count, 0.1, 0.2, seed)
        dev, test = round(count * 0.1), round(count * 0.2)
        assert held["dev"].tolist() == shuffled[:dev]
        assert held["test"].tolist() == shuffled[dev : dev + test]
        assert held["train"].tolist() == shuffled[dev + test :]
    assert held_out_indices(5, None, None, 0) == {"dev": None, "test": None, "train": None}
    assert hold_out(["a", "b"], None, None, 0) == {"dev": None, "test": None, "train": ["a", "b"]}


def test_batches_of_an_array_of_sizes_are_those_of_the_list():
    rng = random.Random(0)
    sizes = [rng.randint(1, 60) for _ in range(500)]
    pairs = [(rng.randint(1, 30), rng.randint(1, 30)) for _ in range(500)]
    for given in (sizes, pairs):
        for shuffle in (True, False):
            from_list = batches_by_tokens(given, 256, shuffle, seed=4)
            from_array = batches_by_tokens(np.asarray(given, np.int32), 256, shuffle, seed=4)
            assert [b.tolist() for b in from_list] == [b.tolist() for b in from_array]


def test_a_setting_that_does_not_change_the_tokens_and_another_name_for_the_file_reuse_it(
    sentiment_files, tmp_path, monkeypatch
):
    out = tmp_path / "run"
    train(run_config(sentiment_files, out, "classify", "train.max_steps=1"), quiet=True)
    manifest = Path(f"{out}.corpus") / MANIFEST_FILE
    made = manifest.stat().st_mtime_ns
    monkeypatch.chdir(sentiment_files["train"].parent)
    relative = {"train": Path(sentiment_files["train"].name), "dev": sentiment_files["dev"]}
    train(run_config(relative, out, "classify", "train.max_steps=1", "model.dropout=0.3"), overwrite=True, quiet=True)
    assert manifest.stat().st_mtime_ns == made


def test_a_damaged_cache_is_rebuilt(sentiment_files, tmp_path):
    out = tmp_path / "run"
    train(run_config(sentiment_files, out, "classify", "train.max_steps=1"), quiet=True)
    ids = Path(f"{out}.corpus") / "train" / "ids.i32"
    whole = ids.read_bytes()
    os.truncate(ids, 1000)  # cut short: read as it is, its ids would be garbage
    train(run_config(sentiment_files, out, "classify", "train.max_steps=1"), overwrite=True, quiet=True)
    assert ids.read_bytes() == whole


def test_a_cache_in_the_output_and_a_dev_label_never_seen_are_refused_before_anything_is_written(
    sentiment_files, tmp_path
):
    out = tmp_path / "runs" / "run"
    with pytest.raises(AttnkitError, match="data.cache must lie outside the output directory"):
        train(run_config(sentiment_files, out, "classify", f"data.cache={out / 'tokens'}"), quiet=True)
    unseen = write_tsv(tmp_path / "dev.tsv", ("label", "text"), [("good", "fine"), ("meh", "so so")])
    with pytest.raises(AttnkitError, match=r"dev.tsv:3: label 'meh' never seen in training"):
        train(run_config({**sentiment_files, "dev": unseen}, out, "classify"), quiet=True)
    assert not (tmp_path / "runs").exists()


def test_a_build_under_way_is_left_alone_and_a_killed_ones_removed(tmp_path):
    cache = tmp_path / "x[1].corpus"  # a name with glob characters matches only itself
    alive = tmp_path / f"x[1].corpus.partial-{os.getpid()}"
    dead = tmp_path / "x[1].corpus.partial-4194999"  # above Linux's largest process id
    other = tmp_path / "x1.corpus.partial-4194999"
    for folder in (alive, dead, other):
        folder.mkdir()
    _remove_killed_builds(cache)
    assert alive.exists() and not dead.exists() and other.exists()


def test_ctrl_c_during_tokenization_ends_at_once_and_removes_the_build(tmp_path):
    rows = sentiment_rows(1000, seed=3) * 300
    path = write_tsv(tmp_path / "train.tsv", ("label", "text"), rows)
    out = tmp_path / "runs" / "run"
    command = [sys.executable, "-m", "attnkit", "train", "--task", "classify", "--train", str(path), "--out", str(out)]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list((tmp_path / "runs").glob("run.corpus.partial-*")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.5)  # training the tokenizer, inside tokenizers' Rust
    interrupted = time.monotonic()
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=60)[1]
    assert process.returncode == 130 and err.strip().splitlines()[-1] == "attnkit: interrupted", err[-2000:]
    assert time.monotonic() - interrupted < 2
    assert not (tmp_path / "runs").exists()
