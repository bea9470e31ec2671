"""Tokenizers: trained from data, saved and loaded, and word-to-subword alignment in three scripts."""

import _thread
import random
import signal
import subprocess
import sys
import threading
import time
import unicodedata

import pytest

from attnkit.config import TokenizerConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError

SENTENCES = {
    "en": [["The", "unbelievably", "tall", "giraffes", "walked", "."], ["It", "rains", "."]],
    "zh": [["桂林", "市委", "、", "市政府", "规定", "："], ["个人", "连片", "开发"]],
    "tr": [["Açıklanmayan", "soruların", "müfredata", "uygun", "olup", "olmadığını"], ["Burda", "da", "?"]],
}
CORPUS = [" ".join(words) for sentences in SENTENCES.values() for words in sentences] * 20


@pytest.mark.parametrize("kind", ["bpe", "wordpiece", "unigram"])
def test_every_word_gets_its_first_subword(kind):
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(kind=kind, vocab_size=120, min_frequency=1))
    for language, sentences in SENTENCES.items():
        for words in sentences:
            ids, starts = tokenizer.encode_words(words)
            assert len(starts) == len(words), language
            assert starts == sorted(set(starts)) and starts[0] == 0 and starts[-1] < len(ids)
            for i, word in enumerate(words):  # the subwords of word i decode back to it
                end = starts[i + 1] if i + 1 < len(words) else len(ids)
                decoded = tokenizer.decode(ids[starts[i] : end]).replace(" ", "").replace("##", "")
                assert decoded == unicodedata.normalize("NFKC", word)


def test_specials_have_fixed_ids_and_decode_skips_them():
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100, min_frequency=1))
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id, tokenizer.eos_id, tokenizer.mask_id) == (
        0,
        1,
        2,
        3,
        4,
    )
    ids = tokenizer.encode("It rains .")
    assert tokenizer.decode([tokenizer.bos_id, *ids, tokenizer.eos_id, tokenizer.pad_id]) == "It rains ."


def test_word_that_normalizes_to_nothing_still_gets_a_position():
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100, min_frequency=1))
    ids, starts = tokenizer.encode_words(["It", "\u200b", "rains"])
    assert len(starts) == 3 and len(set(starts)) == 3


def test_save_and_load_round_trip(tmp_path):
    tokenizer = Tokenizer.train(CORPUS, TokenizerConfig(vocab_size=100, lowercase=True, min_frequency=1))
    tokenizer.save(tmp_path / "tokenizer.json")
    loaded = Tokenizer.load(tmp_path)
    assert loaded.encode("THE Giraffes") == tokenizer.encode("the giraffes")


def test_broken_tokenizer_file_names_the_file(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(AttnkitError, match=r"tokenizer.json: not a valid tokenizer.json"):
        Tokenizer.load(tmp_path)
    with pytest.raises(AttnkitError, match=r"nowhere: missing \(a tokenizer.json is needed\)"):
        Tokenizer.load(tmp_path / "nowhere")


def test_vocabulary_smaller_than_the_alphabet_is_a_clear_error():
    with pytest.raises(AttnkitError, match="cannot train a unigram vocabulary of 10"):
        Tokenizer.train(CORPUS, TokenizerConfig(kind="unigram", vocab_size=10))


def test_vocabulary_size_covers_every_id_even_with_holes():
    # a corpus word that is also a special token (PTB writes "<unk>") leaves a hole in the word-level ids
    tokenizer = Tokenizer.train(["the <unk> cat", "the <unk> dog"] * 5, TokenizerConfig(kind="word", vocab_size=50))
    largest = max(tokenizer.backend.get_vocab().values())
    assert tokenizer.vocab_size == largest + 1
    assert max(tokenizer.encode("the <unk> cat dog")) < tokenizer.vocab_size


GIGANTIC_WORD = """
import random
from attnkit.config import TokenizerConfig
from attnkit.data.tokenizer import Tokenizer
word = "".join(random.Random(0).choice("abcdefghijklmnopqrstuvwxyz") for _ in range(2_000_000))
for kind in ("bpe", "wordpiece", "word"):
    tokenizer = Tokenizer.train(["the cat sat on the mat"] * 50 + [word], TokenizerConfig(kind=kind, vocab_size=200))
    assert len(tokenizer.encode(word)) >= 1
"""


def test_a_gigantic_word_does_not_stall_learning_the_vocabulary():
    # Learning BPE merges takes time growing with the square of a word's length: a word of two million letters
    # took minutes before words were cut for training, a few seconds after. The time limit only catches a stall.
    done = subprocess.run([sys.executable, "-c", GIGANTIC_WORD], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_ctrl_c_is_answered_while_a_vocabulary_is_learned():
    """tokenizers learns inside Rust, where Python runs no Ctrl-C handler until it returns (seconds for a large
    file): the calling thread waits outside it, so the interrupt comes at once."""
    words = [f"w{i}x{i * 7919 % 10007}" for i in range(60_000)]  # many words: seconds of learning
    rng = random.Random(0)
    texts = [" ".join(rng.choices(words, k=12)) for _ in range(100_000)]
    # Ctrl-C raises KeyboardInterrupt, as in a terminal or a notebook: a test run started in the background of a
    # script inherits SIGINT ignored, and interrupt_main then does nothing (the "did not raise" of two full runs)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            Tokenizer.train(texts, TokenizerConfig(vocab_size=30_000))
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, before)
    assert time.monotonic() - started < 1.0
