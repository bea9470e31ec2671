"""GGUF files (llama.cpp's and Ollama's format) in: a Llama-family checkpoint read with the `gguf` package
(ggml-org's reader, the gguf extra), its tensors dequantized to float32 once, its tokenizer built from the file's
tokenizer.ggml.* metadata, with its chat template, special tokens and sampling defaults.

The metadata becomes the config.json of the family it names (general.architecture: llama, which holds Mistral too;
qwen2; gemma), and each tensor the Hugging Face tensor of that family, so that the family's own table (its settings
and weight rules) reads the file: import from a GGUF and from a Hugging Face folder cannot drift apart. What
llama.cpp's converter changed is undone on the way: Llama's Q and K rows are permuted back to the halves layout
of rotary positions (llama.cpp rotates interleaved pairs), and Gemma's norms, which it stores as 1 + w, lose the 1.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import torch
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, processors
from tokenizers import Tokenizer as Backend
from torch import Tensor, nn

from attnkit.config import ModelConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError, install
from attnkit.files import CONFIG_FILE
from attnkit.interop.hf import build_from
from attnkit.interop.hf.families import FAMILIES
from attnkit.interop.hf.family import Family

SUFFIX = ".gguf"
ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2", "gemma": "gemma"}  # general.architecture -> family
PERMUTED = {"llama"}  # architectures whose Q and K rows llama.cpp's converter permuted
NORMS_PLUS_ONE = {"gemma"}  # architectures whose norm weights llama.cpp's converter stored as 1 + w
STACK = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}
LAYER = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
# Llama 3.1 and 3.2 files hold their rotary scaling as a tensor of divisors (rope_freqs) rather than settings: the
# ones these settings make are recognized
LLAMA3_SCALINGS = [(factor, 1.0, 4.0, 8192) for factor in (8.0, 32.0, 16.0, 4.0, 2.0)]
# how the text is cut into words before the merges, by tokenizer.ggml.pre (llama.cpp's llama-vocab.cpp)
LLAMA3_WORDS = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_WORDS = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
WORD_SPLITS = {
    **dict.fromkeys(("llama3", "llama-v3", "llama-bpe", "smaug-bpe", "dbrx", "falcon3"), LLAMA3_WORDS),
    **dict.fromkeys(("qwen2", "deepseek-r1-qwen"), QWEN2_WORDS),
}
DIGITS_APART = {"smollm", "starcoder", "refact", "codeshell", "exaone", "minerva"}  # each digit a word of its own
GPT2_WORDS = {"default", "gpt2", "gpt-2"}
CONTROL, USER_DEFINED = 3, 4  # tokenizer.ggml.token_type


def find_gguf(path: str | os.PathLike) -> Path | None:
    """The GGUF file `path` is, or the one in the folder `path` (a folder with a Hugging Face config.json is read as
    that); None if neither."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() == SUFFIX or _magic(path) else None
    if not path.is_dir() or (path / CONFIG_FILE).is_file():
        return None
    found = sorted(p for p in path.glob(f"*{SUFFIX}") if p.is_file())
    if len(found) > 1:
        names = ", ".join(p.name for p in found[:4])
        raise AttnkitError(f"{path}: holds {len(found)} GGUF files ({names}); name the one to read")
    return found[0] if found else None


def _magic(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


@dataclass
class GGUFCheckpoint:
    """What a GGUF file holds, read: the family, its settings, the tokenizer, and the generation defaults (sampling
    settings, the tokens that end a turn); the tensors are read by `model()`."""

    file: Path
    family: Family
    config: ModelConfig
    tokenizer: Tokenizer
    generation: dict = field(default_factory=dict)  # as generation_config.json: temperature, top_k, eos_token_id...
    reader: object = None

    def model(self) -> nn.Module:
        """The attnkit model, its tensors dequantized to float32 one at a time into it (memory holds the model, the
        file's mapped pages and one tensor)."""
        tensors = GGUFTensors(self.reader, self.config, self.family.model_type, str(self.file))
        return build_from(self.family, self.config, tensors, self.file)


def read_gguf(path: str | os.PathLike) -> GGUFCheckpoint:
    """The GGUF file at `path` read as a checkpoint (its tensors are read by `.model()`), or one line on why not."""
    file = Path(path)
    reader = _reader(file)
    meta = Metadata(reader, str(file))
    architecture = meta.get("general.architecture")
    if architecture not in ARCHITECTURES:
        raise AttnkitError(
            f"{file}: architecture {architecture!r} is not one attnkit reads (it reads {', '.join(ARCHITECTURES)})"
        )
    family = FAMILIES[ARCHITECTURES[architecture]]
    tokenizer, generation = gguf_tokenizer(meta, architecture), generation_defaults(meta)
    hf = hf_config(meta, architecture, {t.name for t in reader.tensors}, reader)
    try:
        config = family.config(hf)
    except AttnkitError as error:
        raise AttnkitError(f"{file}: {error}") from None
    except (KeyError, TypeError, ValueError) as error:
        raise AttnkitError(
            f"{file}: metadata {error} missing or of the wrong type for a {architecture} model"
        ) from None
    for key in [key for key in reader.fields if key.startswith("tokenizer.ggml.")]:
        del reader.fields[key]  # read: the reader's objects for each token (0.3x a small model) go before the model
    return GGUFCheckpoint(file, family, config, tokenizer, generation, reader)


def _reader(file: Path):  # noqa: ANN202 - gguf.GGUFReader, imported on first use
    try:
        import gguf
    except ImportError:
        raise AttnkitError(f"{file}: reading a GGUF file needs the gguf extra: {install('gguf')}") from None
    try:
        return gguf.GGUFReader(str(file))
    except OSError as error:
        raise AttnkitError(f"{file}: unreadable ({error.strerror or error})") from None
    except Exception as error:  # the reader's checks are ValueError, IndexError, ... whichever part is short
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise AttnkitError(f"{file}: not a whole GGUF file (truncated or damaged: {reason})") from None


class Metadata:
    """A GGUF file's key-value metadata, read on demand."""

    def __init__(self, reader: object, where: str) -> None:
        self.fields, self.where = reader.fields, where

    def get(self, key: str, default: object = None) -> object:
        found = self.fields.get(key)
        if found is None:
            return default
        try:
            return found.contents()
        except Exception as error:  # a value whose bytes the reader cannot decode
            raise AttnkitError(f"{self.where}: metadata {key} is damaged ({error})") from None

    def __contains__(self, key: str) -> bool:
        return key in self.fields


REQUIRED = ("embedding_length", "feed_forward_length", "block_count", "attention.head_count")


def hf_config(meta: Metadata, architecture: str, tensors: set[str], reader: object) -> dict:
    """The config.json of the family that the metadata of a `architecture` file describes."""
    key = f"{architecture}.{{}}".format
    absent = [key(name) for name in REQUIRED if key(name) not in meta]
    if absent:
        raise AttnkitError(f"{meta.where}: no {absent[0]} in its metadata (a {architecture} model needs it)")
    heads = meta.get(key("attention.head_count"))
    vocabulary = meta.get("tokenizer.ggml.tokens")
    hf = {
        "model_type": ARCHITECTURES[architecture],
        "vocab_size": meta.get(key("vocab_size")) or (len(vocabulary) if vocabulary else None),
        "hidden_size": meta.get(key("embedding_length")),
        "intermediate_size": meta.get(key("feed_forward_length")),
        "num_hidden_layers": meta.get(key("block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": meta.get(key("attention.head_count_kv"), heads),
        "head_dim": meta.get(key("attention.key_length")),
        "rms_norm_eps": meta.get(key("attention.layer_norm_rms_epsilon"), 1e-6),
        "max_position_embeddings": meta.get(key("context_length"), 2048),
        "rope_theta": meta.get(key("rope.freq_base"), 10000.0),
        "tie_word_embeddings": "output.weight" not in tensors,
        "rope_scaling": _rope_scaling(meta, architecture, tensors, reader),
    }
    if hf["head_dim"] is None:
        hf.pop("head_dim")  # the family's default: Gemma's 256, the others' dim / heads
    if architecture == "gemma":
        hf["hidden_activation"] = "gelu_pytorch_tanh"
    return hf


def _rope_scaling(meta: Metadata, architecture: str, tensors: set[str], reader: object) -> dict | None:
    kind = meta.get(f"{architecture}.rope.scaling.type", "none")
    factor = meta.get(f"{architecture}.rope.scaling.factor", 1.0)
    if "rope_freqs.weight" in tensors:
        return _llama3_scaling(meta, architecture, reader)
    if kind in ("none", None) or factor == 1.0:
        return None
    if kind == "linear":
        return {"rope_type": "linear", "factor": factor}
    raise AttnkitError(f"{meta.where}: {architecture}.rope.scaling.type {kind!r} is not supported (supported: linear)")


def _llama3_scaling(meta: Metadata, architecture: str, reader: object) -> dict:
    """Llama 3.1's scaling settings whose frequency divisors are the file's rope_freqs tensor."""
    from attnkit.nn.positions import rotary_frequencies

    divisors = torch.from_numpy(_dequantized(_tensor(reader, "rope_freqs.weight"), meta.where))
    head = divisors.shape[0] * 2
    base = float(meta.get(f"{architecture}.rope.freq_base", 10000.0))
    plain = rotary_frequencies(head, base)
    for factor, low, high, original in LLAMA3_SCALINGS:
        settings = dict(rotary_scaling="llama3", rotary_factor=factor, rotary_low_freq_factor=low,
                        rotary_high_freq_factor=high, rotary_original_positions=original)  # fmt: skip
        config = ModelConfig(arch="decoder", positions="rotary", dim=head, num_heads=1, rotary_base=base, **settings)
        if torch.allclose(plain / rotary_frequencies(head, base, config), divisors, rtol=1e-3):
            return {"rope_type": "llama3", "factor": factor, "low_freq_factor": low, "high_freq_factor": high,
                    "original_max_position_embeddings": original}  # fmt: skip
    raise AttnkitError(
        f"{meta.where}: rope_freqs.weight holds rotary divisors that no Llama 3 scaling attnkit knows makes"
    )


def _tensor(reader: object, name: str):  # noqa: ANN202
    return next(t for t in reader.tensors if t.name == name)


def _dequantized(tensor: object, where: str, rows: int = 4096) -> np.ndarray:
    """One tensor in float32, as the gguf package dequantizes its type (one line if it cannot), `rows` at a time
    into the result, so that the package's own temporaries stay small beside it."""
    import gguf

    data = tensor.data
    try:
        if data.ndim < 2 or data.shape[0] <= rows:
            values = gguf.quants.dequantize(data, tensor.tensor_type).astype(np.float32, copy=False)
            # float32 comes back as a view of the mapped file, which torch must not write into; others as new arrays
            return values if values.flags.writeable and values.flags.owndata else values.copy()
        first = gguf.quants.dequantize(data[:rows], tensor.tensor_type)
        values = np.empty((data.shape[0], *first.shape[1:]), dtype=np.float32)
        values[:rows] = first
        for start in range(rows, data.shape[0], rows):
            values[start : start + rows] = gguf.quants.dequantize(data[start : start + rows], tensor.tensor_type)
        return values
    except NotImplementedError:
        raise AttnkitError(
            f"{where}: tensor {tensor.name!r} is stored as {tensor.tensor_type.name}, which the gguf package cannot "
            "dequantize; convert the model to another quantization (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K to Q6_K, F16)"
        ) from None


class GGUFTensors(Mapping):
    """A GGUF file's tensors under the Hugging Face names of its family, dequantized when asked for."""

    def __init__(self, reader: object, config: ModelConfig, architecture: str, where: str) -> None:
        self.reader, self.config, self.architecture, self.where = reader, config, architecture, where

    @cached_property
    def names(self) -> dict[str, object]:
        """Hugging Face name -> the file's tensor."""
        names = {}
        for tensor in self.reader.tensors:
            stem, _, kind = tensor.name.rpartition(".")
            layer = re.fullmatch(r"blk\.(\d+)\.(\w+)", stem)
            if layer and layer.group(2) in LAYER:
                names[f"model.layers.{layer.group(1)}.{LAYER[layer.group(2)]}.{kind}"] = tensor
            elif stem in STACK:
                names[f"{STACK[stem]}.{kind}"] = tensor
        return names

    def __getitem__(self, name: str) -> Tensor:
        tensor = self.names[name]
        values = torch.from_numpy(_dequantized(tensor, self.where))
        _release(self.reader, tensor)
        shape = tuple(int(n) for n in reversed(tensor.shape))  # GGUF lists the fastest-varying axis first
        if values.numel() != int(np.prod(shape)):
            raise AttnkitError(f"{self.where}: tensor {tensor.name!r} holds {values.numel()} values, not {shape}")
        values = values.reshape(shape)
        if self.architecture in PERMUTED and ".self_attn.q_proj." in name:
            values = _unpermuted(values, self.config.num_heads)
        elif self.architecture in PERMUTED and ".self_attn.k_proj." in name:
            values = _unpermuted(values, self.config.kv_heads)
        if self.architecture in NORMS_PLUS_ONE and name.endswith("norm.weight"):
            values = values - 1
        return values

    def __contains__(self, name: object) -> bool:  # without reading the tensor (Mapping's would)
        return name in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _release(reader: object, tensor: object) -> None:
    """Drop the file's pages of a tensor read into float32 from this process's memory (they stay in the system's
    cache): mapped pages count in a process's resident memory, 0.2x a float32 model for a Q4 file, 0.5x for F16."""
    mapped = getattr(reader.data, "_mmap", None)
    if mapped is None or not hasattr(mmap, "MADV_DONTNEED"):
        return
    page = mmap.PAGESIZE
    start = tensor.data_offset // page * page
    end = -(-(tensor.data_offset + tensor.n_bytes) // page) * page
    with contextlib.suppress(OSError, ValueError):
        mapped.madvise(mmap.MADV_DONTNEED, start, min(end, len(mapped)) - start)


def _unpermuted(weights: Tensor, heads: int) -> Tensor:
    """llama.cpp's Q or K rows (each head's pairs interleaved) back to the halves that rotary positions rotate."""
    return weights.unflatten(0, (heads, -1, 2)).transpose(1, 2).reshape(weights.shape)


def generation_defaults(meta: Metadata) -> dict:
    """What generation_config.json would say: the file's sampling settings (general.sampling.*) and its end
    tokens (the end of text, of a turn, of a message)."""
    ends = [meta.get(f"tokenizer.ggml.{name}_token_id") for name in ("eos", "eot", "eom")]
    defaults: dict = {"eos_token_id": list(dict.fromkeys(i for i in ends if i is not None))}
    sampling = {"temp": "temperature", "top_k": "top_k", "top_p": "top_p", "penalty_repeat": "repetition_penalty"}
    for key, name in sampling.items():
        value = meta.get(f"general.sampling.{key}")
        if value is not None:
            defaults[name] = value
    if defaults.get("temperature", 0) > 0:
        defaults["do_sample"] = True
    return defaults


def gguf_tokenizer(meta: Metadata, architecture: str) -> Tokenizer:
    """The tokenizer the file's tokenizer.ggml.* metadata describes (byte-level BPE, "gpt2"; or SentencePiece's
    BPE with byte fallback, "llama"), with its control tokens kept whole, its special tokens and chat template."""
    kind, tokens = meta.get("tokenizer.ggml.model"), meta.get("tokenizer.ggml.tokens")
    if kind is None or not tokens:
        raise AttnkitError(
            f"{meta.where}: no tokenizer in its metadata (tokenizer.ggml.model and tokenizer.ggml.tokens); attnkit "
            "reads and writes text with the file's own"
        )
    types = meta.get("tokenizer.ggml.token_type") or [1] * len(tokens)
    ids = {role: meta.get(f"tokenizer.ggml.{key}_token_id") for role, key in ROLE_KEYS.items()}
    if kind == "gpt2":
        backend = _byte_level(tokens, meta.get("tokenizer.ggml.merges") or [], meta.get("tokenizer.ggml.pre"))
        start = meta.get("tokenizer.ggml.add_bos_token", False)
    elif kind == "llama":
        spaced = meta.get("tokenizer.ggml.add_space_prefix", True)
        backend = _sentencepiece(tokens, meta.get("tokenizer.ggml.scores"), ids.get("unk"), spaced, architecture)
        start = meta.get("tokenizer.ggml.add_bos_token", True)
    else:
        raise AttnkitError(
            f"{meta.where}: tokenizer.ggml.model {kind!r} is not one attnkit builds (it builds gpt2, llama)"
        )
    byte_level = kind == "gpt2"
    control = [t for t, kind_ in zip(tokens, types) if kind_ == CONTROL and (not byte_level or _spelled(t))]
    backend.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    backend.add_tokens([AddedToken(t, normalized=False) for t, kind_ in zip(tokens, types) if kind_ == USER_DEFINED])
    roles = {role: tokens[i] for role, i in ids.items() if isinstance(i, int) and 0 <= i < len(tokens)}
    bos = roles.get("bos")
    if bos is not None:  # a prompt starts with the start token where the file says so, and tokenizer.json says it too
        single = f"{bos} $A" if start else "$A"
        backend.post_processor = processors.TemplateProcessing(single=single, special_tokens=[(bos, ids["bos"])])
    return Tokenizer(backend, meta.where, roles, meta.get("tokenizer.chat_template"))


ROLE_KEYS = {"bos": "bos", "eos": "eos", "unk": "unknown", "pad": "padding"}


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's printable stand-in for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + n) for n, b in enumerate(extra)}}


BYTES = _byte_to_unicode()
ALPHABET = set(BYTES.values())


def _spelled(token: str) -> bool:
    """Whether a byte-level token is written in the byte alphabet (a control token outside it is mislabelled)."""
    return set(token) <= ALPHABET


def _byte_level(tokens: list[str], merges: list[str], pre: str | None) -> Backend:
    vocab = {t if _spelled(t) else "".join(BYTES[b] for b in t.encode("utf-8")): i for i, t in enumerate(tokens)}
    pairs = [tuple(merge.split(" ", 1)) for merge in merges]
    words = WORD_SPLITS.get(pre or "")
    backend = Backend(models.BPE(vocab, pairs, ignore_merges=words is LLAMA3_WORDS))
    if words is not None:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(words), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])  # fmt: skip
    elif pre in DIGITS_APART:
        backend.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False),
        ])  # fmt: skip
    else:  # GPT-2's words (an unknown pre-tokenizer too: its merges were most likely learned on them)
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    return backend


def _sentencepiece(tokens: list[str], scores: list[float] | None, unk: int | None, spaced: bool, arch: str) -> Backend:
    """SentencePiece's BPE as transformers' LlamaTokenizer (and GemmaTokenizer) build it: merges recovered from the
    vocabulary, ranked by the merged piece's score (Gemma: by its place in the vocabulary), bytes as <0xNN>."""
    if arch == "gemma":  # a run of spaces is stored as spaces, where the merges spell it with ▁
        tokens = ["▁" * len(t) if " " in t and not t.strip() else t for t in tokens]
        ranks = {t: -i for i, t in enumerate(tokens)}
    else:
        ranks = dict(zip(tokens, scores if scores is not None else [-i for i in range(len(tokens))]))
    vocab = {t: i for i, t in enumerate(tokens)}
    unk_token = tokens[unk] if unk is not None and 0 <= unk < len(tokens) else None
    backend = Backend(models.BPE(vocab, _merges(vocab, ranks), unk_token=unk_token, fuse_unk=True, byte_fallback=True))
    pieces = [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    if arch == "gemma":
        backend.normalizer = normalizers.Replace(" ", "▁")
        backend.pre_tokenizer = pre_tokenizers.Split(" ", behavior="merged_with_previous")
    else:
        scheme = "first" if spaced else "never"
        backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme=scheme, split=False)
        pieces += [decoders.Strip(content=" ", left=1)] if spaced else []
    backend.decoder = decoders.Sequence(pieces)
    return backend


def _merges(vocab: dict[str, int], ranks: dict[str, float]) -> list[tuple[str, str]]:
    """Every split of a piece into two pieces of the vocabulary, the splits of better-ranked pieces first, ordered
    as transformers' generate_merges orders them (so that both build the same tokenizer)."""
    found = []
    for piece, rank in ranks.items():
        splits = [(piece[:i], piece[i:]) for i in range(1, len(piece)) if piece[:i] in vocab and piece[i:] in vocab]
        found += [(left, right, rank) for left, right in sorted(splits, key=lambda s: (vocab[s[0]], vocab[s[1]]))]
    found.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in found]
