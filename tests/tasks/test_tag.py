"""Tagging: word-level tags through subwords, for any sentence length at prediction time."""

import pytest
import torch

from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig
from attnkit.data.readers import Tagged
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.tasks import IGNORE_INDEX
from attnkit.tasks.tag import SHAPES, Tagger, TagTask, windows, word_shape
from attnkit.training.loop import train
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


def test_a_sentence_is_read_between_start_and_end_tokens():
    task = tag_task("tall", DataConfig())
    sentences = [Tagged(["unbelievably", "tall"], ["ADV", "ADJ"], 1)]
    task.fit(sentences)
    (item,) = task.encode(sentences, training=False)
    tokenizer = task.tokenizer
    assert item["ids"][0] == tokenizer.bos_id and item["ids"][-1] == tokenizer.eos_id
    assert item["starts"][0] == 1 and item["labels"][0] == item["labels"][-1] == IGNORE_INDEX
    assert item["ids"][1:-1] == tokenizer.encode_words(sentences[0].words)[0]


def test_a_model_saved_before_special_tokens_reads_the_words_alone():
    task = tag_task("tall", DataConfig(), {"tags": ["ADV", "ADJ"]})  # a saved state without "specials"
    (item,) = task.encode([Tagged(["unbelievably", "tall"], ["ADV", "ADJ"], 1)], training=False)
    assert item["starts"][0] == 0 and item["ids"] == task.tokenizer.encode_words(["unbelievably", "tall"])[0]
    assert task.state()["specials"] == "none"


@pytest.mark.parametrize(
    "word, shape",
    [
        ("cat", "lower"),
        ("Cat", "title"),
        ("I", "title"),
        ("NASA", "upper"),
        ("iPhone", "mixed"),
        ("1998", "digits"),
        ("U.S.", "upper"),
        ("人民", "uncased"),
        (",", "symbol"),
        ("l'Été", "mixed"),
    ],
)
def test_word_shapes(word, shape):
    assert SHAPES[word_shape(word)] == shape


def test_word_shapes_reach_every_subword_of_their_word_and_start_at_zero():
    task = tag_task("tall", DataConfig())
    task.config = TaskConfig(name="tag", word_shapes=True)
    sentences = [Tagged(["Unbelievably", "tall", "NASA"], ["ADV", "ADJ", "NOUN"], 1)]
    task.fit(sentences)
    (item,) = task.encode(sentences, training=False)
    first, second, third = item["starts"]
    shapes = [SHAPES[s] for s in item["shapes"]]
    assert shapes[0] == shapes[-1] == "none" and set(shapes[first:second]) == {"title"}
    assert shapes[second:third] == ["lower"] and set(shapes[third:-1]) == {"upper"}
    (unlabelled,) = task.encode(task.inputs(["Unbelievably tall NASA"]), training=False)  # as predict reads
    assert unlabelled["shapes"] == item["shapes"]
    model = task.build_model().eval()
    assert isinstance(model, Tagger) and model.shapes is not None
    batch = task.collate([item])
    plain = Tagger(task.model_config, len(task.tags)).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("shapes.")})
    # a checkpoint fine-tuned with word shapes starts as it was: their embedding is zero
    assert torch.equal(task.forward(model, batch), plain(batch["ids"], batch["mask"]))


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
    # a window's 16 positions hold <s> and </s> too
    fit = max(n for n in range(1, 41) if len(windowed.tokenizer.encode_words(words[:n])[0]) <= 14)
    (tags,) = windowed.predict([" ".join(words)])
    first, rest = windowed.predict([" ".join(words[:fit]), " ".join(words[fit:])])
    assert fit < 40 and tags == first + rest


def test_evaluate_reads_a_long_sentence_in_windows(windowed, tmp_path):
    sentence = [(w, TAG_OF[w]) for w in (WORDS * 3)[:40]]
    result, _, (tags,) = windowed.evaluate(write_conll(tmp_path / "long.conll", [sentence]))
    assert len(tags) == 40 and 0 <= result["accuracy"] <= 1
