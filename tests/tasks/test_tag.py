"""Tagging: word-level tags through subwords, for any sentence length at prediction time."""

import pytest

from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig
from attnkit.data.readers import Tagged
from attnkit.errors import AttnkitError
from attnkit.pipeline import Pipeline
from attnkit.tasks import IGNORE_INDEX
from attnkit.tasks.tag import TagTask, windows
from attnkit.tokenization import Tokenizer
from attnkit.train import train
from tests.conftest import TAG_OF, WORDS, run_config, tagging_sentences, write_conll


def tag_task(text: str, data: DataConfig, state: dict | None = None) -> TagTask:
    """A tagger's task, with a subword tokenizer that learned only `text` (other words split into pieces)."""
    tokenizer = Tokenizer.train([text] * 10, TokenizerConfig(vocab_size=60, min_frequency=1))
    return TagTask(TaskConfig(name="tag"), data, tokenizer, ModelConfig(vocab_size=tokenizer.vocab_size), state)


def test_first_subword_carries_the_tag():
    task = tag_task("tall", DataConfig(max_length=6))
    sentences = [Tagged(["unbelievably", "tall", "giraffes"], ["ADV", "ADJ", "NOUN"], 1)]
    task.fit(sentences)
    (item,) = task.encode(sentences, training=False)
    tagged = [i for i, label in enumerate(item["labels"]) if label != IGNORE_INDEX]
    assert tagged == item["starts"] and len(item["ids"]) > 6  # long words split; evaluation keeps all
    (truncated,) = task.encode(sentences, training=True)
    assert len(truncated["ids"]) == 6


def test_tagger_learns_and_predicts_every_word(tagging_files, tmp_path):
    # relative positions extrapolate to the long sentence below; absolute ones would not have seen its end
    summary = train(
        run_config(
            tagging_files, tmp_path / "out", "tag", "train.epochs=8", "data.max_length=8", "model.positions=relative"
        )
    )
    assert summary["dev"]["accuracy"] > 0.95
    pipeline = Pipeline.load(tmp_path / "out")
    words = ["red", "blue", "sad", "green"] * 10  # longer than the training max_length
    (tags,) = pipeline.predict([" ".join(words)])
    assert tags == [TAG_OF[w] for w in words]


def test_unknown_dev_tag_is_refused(tagging_files):
    task = tag_task("x", DataConfig())
    task.fit(TagTask.read(DataConfig(), tagging_files["train"]))
    with pytest.raises(AttnkitError, match=r"dev.conll:1: tag 'ADV' never seen in training"):
        task.check([Tagged(["x"], ["ADV"], 1)], tagging_files["dev"])


def test_a_tag_the_model_never_saw_encodes_as_ignored():
    task = tag_task("cats run", DataConfig(), {"tags": ["NN", "VB"]})
    (item,) = task.encode([Tagged(["cats", "-", "run"], ["NN", "HYPH", "VB"], 1)], training=False)
    assert [item["labels"][start] for start in item["starts"]] == [0, IGNORE_INDEX, 1]


def test_unseen_tags_are_counted_per_token():
    task = tag_task("x", DataConfig(), {"tags": ["NN", "VB"]})
    sentences = [Tagged(["a", "-", "b"], ["NN", "HYPH", "''"], 1), Tagged(["-"], ["HYPH"], 5)]
    assert task.unseen(sentences) == {"HYPH": 2, "''": 1}


def test_windows_hold_whole_words_and_cut_only_a_word_longer_than_a_window():
    # words of 1, 1, 20, 1 and 1 subwords, windows of at most 16
    spans = windows([0, 1, 2, 22, 23], 24, 16)
    assert spans == [(0, 2, 0, 2), (2, 3, 2, 18), (3, 5, 22, 24)]


@pytest.fixture(scope="module")
def windowed(tmp_path_factory) -> Pipeline:
    """A tagger with 16 learned positions: a sentence of more subwords must be read in windows."""
    folder = tmp_path_factory.mktemp("windowed")
    files = {
        "train": write_conll(folder / "train.conll", tagging_sentences(200, 1)),
        "dev": write_conll(folder / "dev.conll", tagging_sentences(40, 2)),
    }
    learned = ["train.epochs=8", "data.max_length=16", "model.positions=learned", "model.max_positions=16"]
    train(run_config(files, folder / "out", "tag", *learned))
    return Pipeline.load(folder / "out", device="cpu")


def test_a_sentence_longer_than_the_learned_positions_gets_a_tag_per_word(windowed):
    words = [WORDS[i % len(WORDS)] for i in range(40)]
    words[20] = "kqwpyfhkqwpyfhkqwpyfhkqwpyfh"  # more subwords than a window: cut, and still one tag
    assert len(windowed.tokenizer.encode_words(words[20:21])[0]) > 16
    (tags,) = windowed.predict([" ".join(words)])
    assert len(tags) == 40


def test_windows_are_tagged_as_if_each_were_alone(windowed):
    words = [WORDS[(7 * i) % len(WORDS)] for i in range(40)]
    fit = max(n for n in range(1, 41) if len(windowed.tokenizer.encode_words(words[:n])[0]) <= 16)
    (tags,) = windowed.predict([" ".join(words)])
    first, rest = windowed.predict([" ".join(words[:fit]), " ".join(words[fit:])])
    assert fit < 40 and tags == first + rest


def test_evaluate_reads_a_long_sentence_in_windows(windowed, tmp_path):
    sentence = [(w, TAG_OF[w]) for w in (WORDS * 3)[:40]]
    result, _, (tags,) = windowed.evaluate(write_conll(tmp_path / "long.conll", [sentence]))
    assert len(tags) == 40 and 0 <= result["accuracy"] <= 1
