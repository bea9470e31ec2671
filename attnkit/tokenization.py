"""Subword tokenizers from the `tokenizers` library: trained on the training data or loaded from a
tokenizer.json, saved in every checkpoint. Words map to subwords so that word-level tags can be aligned."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from attnkit.config import TokenizerConfig
from attnkit.errors import AttnkitError

TOKENIZER_FILE = "tokenizer.json"
PAD, UNK, BOS, EOS, MASK = "<pad>", "<unk>", "<s>", "</s>", "<mask>"
SPECIALS = [PAD, UNK, BOS, EOS, MASK]  # ids 0..4 in every tokenizer attnkit trains


class Tokenizer:
    """A `tokenizers.Tokenizer` with attnkit's special tokens; encodes without adding any of them."""

    def __init__(self, backend: Backend, where: str = "tokenizer") -> None:
        self.backend = backend
        self.backend.no_truncation()
        self.backend.no_padding()
        ids = {token: backend.token_to_id(token) for token in SPECIALS}
        missing = [token for token in (PAD, UNK, BOS, EOS) if ids[token] is None]
        if missing:
            raise AttnkitError(f"{where}: no special token {', '.join(missing)} in the vocabulary")
        self.pad_id, self.unk_id, self.bos_id, self.eos_id = ids[PAD], ids[UNK], ids[BOS], ids[EOS]
        self.mask_id = ids[MASK]
        self.special_ids = {i for i in ids.values() if i is not None}

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig) -> Tokenizer:
        """Learn a vocabulary of `config.kind` from `texts` (sentencepiece-style word boundaries for BPE and
        Unigram, so decoding restores the spacing; BERT-style for WordPiece)."""
        if config.kind == "wordpiece":
            backend = Backend(models.WordPiece(unk_token=UNK))
            backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            backend.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(
                vocab_size=config.vocab_size, min_frequency=config.min_frequency, special_tokens=SPECIALS,
                show_progress=False,
            )
        elif config.kind == "unigram":
            backend = Backend(models.Unigram())
            backend.pre_tokenizer = pre_tokenizers.Metaspace()
            backend.decoder = decoders.Metaspace()
            trainer = trainers.UnigramTrainer(
                vocab_size=config.vocab_size, special_tokens=SPECIALS, unk_token=UNK, show_progress=False
            )
        else:
            backend = Backend(models.BPE(unk_token=UNK))
            backend.pre_tokenizer = pre_tokenizers.Metaspace()
            backend.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(
                vocab_size=config.vocab_size, min_frequency=config.min_frequency, special_tokens=SPECIALS,
                show_progress=False,
            )
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if config.lowercase else [])
        backend.normalizer = normalizers.Sequence(steps)
        try:
            backend.train_from_iterator(texts, trainer=trainer)
        except Exception as error:  # tokenizers raises bare Exceptions, e.g. for a vocabulary under the alphabet
            raise AttnkitError(f"tokenizer: cannot train a {config.kind} vocabulary of {config.vocab_size} ({error})") from None
        return cls(backend)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """From a tokenizer.json, or a directory holding one."""
        path = Path(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise AttnkitError(f"{file}: missing (a tokenizer.json is needed)")
        try:
            backend = Backend.from_file(str(file))
        except Exception as error:  # tokenizers raises a bare Exception for malformed files
            raise AttnkitError(f"{file}: not a valid tokenizer.json ({str(error).splitlines()[0]})") from None
        return cls(backend, str(file))

    def save(self, path: str | os.PathLike) -> None:
        self.backend.save(str(path))

    @property
    def vocab_size(self) -> int:
        return self.backend.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def encode_words(self, words: list[str]) -> tuple[list[int], list[int]]:
        """Subword ids of a pre-split sentence, and the position of each word's first subword. A word that
        yields no subword at all (nothing left after normalization) gets <unk>, so that every word has one."""
        return self.encode_words_batch([words])[0]

    def encode_words_batch(self, sentences: list[list[str]]) -> list[tuple[list[int], list[int]]]:
        results = []
        for words, encoding in zip(
            sentences, self.backend.encode_batch(sentences, is_pretokenized=True, add_special_tokens=False)
        ):
            ids: list[int] = []
            starts: list[int] = []
            word_ids = encoding.word_ids
            position = 0
            for word in range(len(words)):
                starts.append(len(ids))
                while position < len(word_ids) and word_ids[position] == word:
                    ids.append(encoding.ids[position])
                    position += 1
                if starts[-1] == len(ids):
                    ids.append(self.unk_id)
            results.append((ids, starts))
        return results

    def decode(self, ids: list[int]) -> str:
        return self.backend.decode([i for i in ids if i not in self.special_ids], skip_special_tokens=True)
