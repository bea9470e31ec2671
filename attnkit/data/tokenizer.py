"""Subword tokenizers from the `tokenizers` library: trained on the training data or loaded from a
tokenizer.json, saved in every checkpoint. Words map to subwords so that word-level tags can be aligned."""

from __future__ import annotations

import functools
import json
import os
import re
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from tokenizers import Tokenizer as Backend
from tokenizers import decoders, models, normalizers, pre_tokenizers, processors, trainers

from attnkit.config import TokenizerConfig
from attnkit.errors import AttnkitError
from attnkit.files import write_json

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"  # the special tokens by name and the chat template (transformers')
PAD, UNK, BOS, EOS, MASK = "<pad>", "<unk>", "<s>", "</s>", "<mask>"
SPECIALS = [PAD, UNK, BOS, EOS, MASK]  # ids 0..4 in every tokenizer attnkit trains
# The trainers of `tokenizers` take time growing with the square of a word's length (BPE: 160,000 characters
# without a space, 1.2 s; two million, many minutes), and the Unigram trainer once died of a segmentation fault on
# a word of 160,000; no subword is that long, so while the vocabulary is learned, longer runs of non-spaces are cut
# into pieces of this length.
LONGEST_TRAINING_WORD = 100
_LONG_RUN = re.compile(rf"\S{{{LONGEST_TRAINING_WORD}}}(?=\S)")


# what each role is called in the tokenizers people publish: attnkit's own, BERT's, GPT-2's
ROLE_NAMES = {
    "pad": ["<pad>", "[PAD]"],
    "unk": ["<unk>", "[UNK]", "<|endoftext|>"],
    "bos": ["<s>", "[CLS]", "<|endoftext|>"],
    "eos": ["</s>", "[SEP]", "<|endoftext|>"],
    "mask": ["<mask>", "[MASK]"],
}


class Tokenizer:
    """A `tokenizers.Tokenizer` and the ids of its special tokens; encodes without adding any of them.
    A tokenizer without a padding token pads with its end token; one without a start token (T5) has bos_id None.
    Each role's token is the one `roles` names (tokenizer_config.json's bos_token, eos_token, ...; a role named
    None has no token), else the first of ROLE_NAMES in the vocabulary. `chat_template` is the Jinja template that
    turns a conversation into a prompt (a chat model's), if any."""

    def __init__(
        self,
        backend: Backend,
        where: str = "tokenizer",
        roles: dict[str, str | None] | None = None,
        chat_template: str | None = None,
    ) -> None:
        self.backend = backend
        self.backend.no_truncation()
        self.backend.no_padding()
        self.roles = {role: name for role, name in (roles or {}).items() if role in ROLE_NAMES}
        ids = {role: self._role_id(role) for role in ROLE_NAMES}
        if ids["eos"] is None:
            raise AttnkitError(f"{where}: no end-of-sequence token ({', '.join(ROLE_NAMES['eos'])}) in the vocabulary")
        self.eos_id: int = ids["eos"]
        self.pad_id: int = ids["pad"] if ids["pad"] is not None else self.eos_id
        self.unk_id: int | None = ids["unk"]
        self.bos_id: int | None = ids["bos"]
        self.mask_id: int | None = ids["mask"]
        self.special_ids = {i for i in ids.values() if i is not None}
        self.chat_template = chat_template
        # a prompt to continue starts with the start token where the tokenizer's own template puts one (attnkit's,
        # Llama's, Gemma's), and with nothing where it does not (GPT-2's, Qwen2's, SmolLM2's)
        added = self.backend.encode("", add_special_tokens=True).ids
        self.prompt_start: list[int] = [self.bos_id] if self.bos_id is not None and added[:1] == [self.bos_id] else []

    def _role_id(self, role: str) -> int | None:
        if role in self.roles:
            name = self.roles[role]
            found = None if name is None else self.backend.token_to_id(name)
            if name is None or found is not None:
                return found
        return _first_id(self.backend, ROLE_NAMES[role])

    @classmethod
    def train(cls, texts: Iterable[str], config: TokenizerConfig, specials: list[str] = SPECIALS) -> Tokenizer:
        """Learn a vocabulary of `config.kind` from `texts` (sentencepiece-style word boundaries for BPE and
        Unigram, so decoding restores the spacing; BERT-style for WordPiece; whole words for word). The `specials`
        (SPECIALS in another order, where a family's code expects one) take the first ids."""
        if config.kind == "wordpiece":
            backend = Backend(models.WordPiece(unk_token=UNK))
            backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
            backend.decoder = decoders.WordPiece()
            trainer = trainers.WordPieceTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=specials,
                show_progress=False,
            )
        elif config.kind == "word":
            backend = Backend(models.WordLevel(unk_token=UNK))
            backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
            backend.decoder = decoders.WordPiece(prefix="\x00")  # joins words with spaces
            trainer = trainers.WordLevelTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=specials,
                show_progress=False,
            )
        elif config.kind == "unigram":
            backend = Backend(models.Unigram())
            backend.pre_tokenizer = pre_tokenizers.Metaspace()
            backend.decoder = decoders.Metaspace()
            trainer = trainers.UnigramTrainer(
                vocab_size=config.vocab_size, special_tokens=specials, unk_token=UNK, show_progress=False
            )
        else:
            backend = Backend(models.BPE(unk_token=UNK))
            backend.pre_tokenizer = pre_tokenizers.Metaspace()
            backend.decoder = decoders.Metaspace()
            trainer = trainers.BpeTrainer(
                vocab_size=config.vocab_size,
                min_frequency=config.min_frequency,
                special_tokens=specials,
                show_progress=False,
            )
        steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if config.lowercase else [])
        backend.normalizer = normalizers.Sequence(steps)
        # attnkit adds <s> and </s> itself; the template tells other libraries reading tokenizer.json to do so too
        backend.post_processor = processors.TemplateProcessing(
            single=f"{BOS} $A {EOS}",
            pair=f"{BOS} $A {EOS} $B {EOS}",
            special_tokens=[(BOS, specials.index(BOS)), (EOS, specials.index(EOS))],
        )
        failed: list[Exception] = []

        def learn() -> None:
            try:
                backend.train_from_iterator((_LONG_RUN.sub(r"\g<0> ", text) for text in texts), trainer=trainer)
            except Exception as error:  # tokenizers raises bare Exceptions, e.g. for a vocabulary under the alphabet
                failed.append(error)

        # while tokenizers learns, the thread that called it is inside Rust, where Python answers no Ctrl-C until the
        # whole file is read (12 s at a million rows): it learns in a thread of its own while this one waits here
        learning = threading.Thread(target=learn, daemon=True)
        learning.start()
        while learning.is_alive():
            learning.join(0.1)
        if failed:
            if isinstance(failed[0], AttnkitError):  # met reading the texts (a bad row): said as its reader said it
                raise failed[0]
            raise AttnkitError(
                f"tokenizer: cannot train a {config.kind} vocabulary of {config.vocab_size} ({failed[0]})"
            ) from None
        return cls(backend)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Tokenizer:
        """From a tokenizer.json, or a directory holding one (or, as published checkpoints may instead ship,
        a WordPiece vocab.txt or a byte-level BPE vocab.json + merges.txt), with the special tokens and chat template
        of the tokenizer_config.json (and chat_template.jinja) beside it, if there is one."""
        path = Path(path)
        if path.is_dir() and not (path / TOKENIZER_FILE).is_file():
            return cls._from_vocabulary_files(path)
        file = path / TOKENIZER_FILE if path.is_dir() else path
        if not file.is_file():
            raise AttnkitError(f"{file}: missing (a tokenizer.json is needed)")
        try:
            backend = Backend.from_file(str(file))
        except Exception as error:  # tokenizers raises a bare Exception for malformed files
            raise AttnkitError(f"{file}: not a valid tokenizer.json ({str(error).splitlines()[0]})") from None
        return cls(backend, str(file), *_settings(file.parent))

    def save(self, path: str | os.PathLike) -> None:
        """tokenizer.json at `path`, and beside it a tokenizer_config.json naming the special tokens and holding the
        chat template, where the vocabulary's names alone would not say them."""
        self.backend.save(str(path))
        config = Path(path).parent / TOKENIZER_CONFIG_FILE
        if self.roles or self.chat_template:
            write_json(config, self.settings())

    def settings(self) -> dict:
        """tokenizer_config.json's special tokens (by name) and chat template: what transformers reads too."""
        names = {
            f"{role}_token": self.backend.id_to_token(getattr(self, f"{role}_id"))
            for role in ROLE_NAMES
            if getattr(self, f"{role}_id") is not None
        }
        names.update({f"{role}_token": None for role, name in self.roles.items() if name is None})
        return {**names, **({"chat_template": self.chat_template} if self.chat_template else {})}

    @classmethod
    def _from_vocabulary_files(cls, directory: Path) -> Tokenizer:
        from tokenizers.implementations import BertWordPieceTokenizer, ByteLevelBPETokenizer

        settings = _json_or_empty(directory / "tokenizer_config.json")
        vocab, merges = directory / "vocab.json", directory / "merges.txt"
        if (directory / "vocab.txt").is_file():
            files = str(directory / "vocab.txt")
            lowercase = bool(settings.get("do_lower_case", True))
            build = functools.partial(BertWordPieceTokenizer, files, lowercase=lowercase)
        elif vocab.is_file() and merges.is_file():
            files = f"{vocab} with merges.txt"
            build = functools.partial(ByteLevelBPETokenizer, str(vocab), str(merges))
        elif sentencepiece := sorted(directory.glob("*.model")):
            raise AttnkitError(
                f"{sentencepiece[0]}: a SentencePiece model alone is not read (each family numbers its pieces its "
                "own way); write its tokenizer.json with transformers: "
                f"AutoTokenizer.from_pretrained('{directory}').save_pretrained('{directory}')"
            )
        else:
            raise AttnkitError(
                f"{directory}: no tokenizer (needs tokenizer.json, vocab.txt, or vocab.json with merges.txt)"
            )
        try:
            built = build()
        except Exception as error:  # tokenizers raises bare Exceptions (bad UTF-8), TypeError for a vocab without [SEP]
            raise AttnkitError(f"{files}: not a valid vocabulary ({str(error).splitlines()[0]})") from None
        return cls(built._tokenizer, str(directory), *_settings(directory))

    @property
    def vocab_size(self) -> int:
        """One more than the largest id (a vocabulary can have holes, e.g. when a corpus word is also a special
        token, so its entry count is not enough for an embedding table)."""
        return max(self.backend.get_vocab(with_added_tokens=True).values()) + 1

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def add_specials(self, ids: list[int]) -> list[int]:
        """<s> ids </s> (BERT's [CLS] ids [SEP]; T5 has no start token)."""
        return ([self.bos_id] if self.bos_id is not None else []) + ids + [self.eos_id]

    def add_pair_specials(self, first: list[int], second: list[int]) -> tuple[list[int], list[int]]:
        """<s> first </s> second </s> (BERT's [CLS] a [SEP] b [SEP]), and each token's segment: 0 up to the first
        </s>, 1 after it (BERT's token types)."""
        ids = [*self.add_specials(first), *second, self.eos_id]
        return ids, [0] * (len(ids) - len(second) - 1) + [1] * (len(second) + 1)

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


def _settings(directory: Path) -> tuple[dict[str, str | None], str | None]:
    """The special tokens' names by role, and the chat template, of the tokenizer_config.json in `directory` (and
    its chat_template.jinja, where transformers 4.43 and later keep the template): a role the file sets (to null
    too) is what it says; BERT's cls_token and sep_token are its start and end."""
    settings = _json_or_empty(directory / TOKENIZER_CONFIG_FILE)
    roles: dict[str, str | None] = {}
    for role, keys in {"bos": ("bos_token", "cls_token"), "eos": ("eos_token", "sep_token")}.items():
        key = next((key for key in keys if key in settings), None)
        if key is not None:
            roles[role] = _token_name(settings[key])
    for role in ("pad", "unk", "mask"):
        if f"{role}_token" in settings:
            roles[role] = _token_name(settings[f"{role}_token"])
    template = settings.get("chat_template")
    if isinstance(template, list):  # several named templates: the default one
        template = next(
            (t.get("template") for t in template if isinstance(t, dict) and t.get("name") == "default"), None
        )
    jinja = directory / "chat_template.jinja"
    if jinja.is_file():
        template = jinja.read_text(encoding="utf-8")
    return roles, template if isinstance(template, str) else None


def _token_name(value: object) -> str | None:
    """A token as tokenizer_config.json writes it: a string, or an AddedToken's {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _json_or_empty(file: Path) -> dict:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _first_id(backend: Backend, names: list[str]) -> int | None:
    for name in names:
        token_id = backend.token_to_id(name)
        if token_id is not None:
            return token_id
    return None


class TextStream:
    """Token ids of one output in, text pieces out: `emit` receives each new piece once the text decoded so far
    extends what was shown (a subword can change how earlier ones read, a multi-byte character may be half there).
    Tokens from an end token on (the tokenizer's </s>, or any of `ends`) are ignored, and text from the first of the
    `stops` strings on (`stopped` says it came): the text that might begin one is held back until it cannot. `finish`
    shows whatever is left."""

    def __init__(
        self, tokenizer: Tokenizer, emit: Callable[[str], None], ends: Iterable[int] = (), stops: Iterable[str] = ()
    ) -> None:
        self.tokenizer, self.emit = tokenizer, emit
        self.ends = {tokenizer.eos_id, *ends}
        self.stops = [stop for stop in stops if stop]
        self.ids: list[int] = []
        self.shown = ""
        self.ended = False
        self.stopped = False

    def __call__(self, token: int) -> None:
        if self.ended or token in self.ends:
            self.ended = True
            return
        self.ids.append(token)
        text, self.stopped = cut_at_stop(self.tokenizer.decode(self.ids), self.stops)
        self.ended = self.stopped
        self._show(text if self.stopped else text[: len(text) - _held(text, self.stops)])

    def finish(self) -> None:
        """Show the rest: the end came, so a character still half there stays so (as the whole output has it)."""
        self._show(cut_at_stop(self.tokenizer.decode(self.ids), self.stops)[0], final=True)

    def _show(self, text: str, final: bool = False) -> None:
        whole = final or not text.endswith("\ufffd")
        if text.startswith(self.shown) and whole and len(text) > len(self.shown):
            self.emit(text[len(self.shown) :])
            self.shown = text


def cut_at_stop(text: str, stops: Iterable[str]) -> tuple[str, bool]:
    """`text` before the first of the `stops` strings in it, and whether one was there."""
    found = [i for i in (text.find(stop) for stop in stops if stop) if i >= 0]
    return (text[: min(found)], True) if found else (text, False)


def _held(text: str, stops: list[str]) -> int:
    """How many characters at the end of `text` could begin a stop string (shown only once they cannot)."""
    return max((n for stop in stops for n in range(1, len(stop)) if text.endswith(stop[:n])), default=0)
