"""Small random transformers models and tokenizers that tests write to disk and read back: the Llama family's
language models, and a tokenizer of whole words."""

import json
from pathlib import Path

import torch

VOCAB = 99


DECODER_LMS = ("llama", "mistral", "qwen2", "gemma")
LM_VARIANTS = {  # config.json settings that each family's readers must take
    "": {},
    "tied": {"tie_word_embeddings": True},
    "multi-query": {"num_key_value_heads": 1},
    "linear": {"rope_scaling": {"rope_type": "linear", "factor": 2.0}},
    "llama3": {  # Llama 3.1's scaling; an original length of 16 puts frequencies in each of its three bands
        "rope_theta": 500.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    },  # fmt: skip
    "biases": {"attention_bias": True, "mlp_bias": True},
    "head_dim": {"head_dim": 12},  # heads of a width other than hidden_size / heads
}


def decoder_lm(family: str, variant: str = ""):
    """A small random Llama-family language model: 6 query heads sharing 2 key/value heads."""
    import transformers as t

    config_class, model_class = {
        "llama": (t.LlamaConfig, t.LlamaForCausalLM),
        "mistral": (t.MistralConfig, t.MistralForCausalLM),
        "qwen2": (t.Qwen2Config, t.Qwen2ForCausalLM),
        "gemma": (t.GemmaConfig, t.GemmaForCausalLM),
    }[family]
    settings = dict(
        vocab_size=VOCAB, hidden_size=48, intermediate_size=37, num_hidden_layers=2, num_attention_heads=6,
        num_key_value_heads=2, max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
        rope_theta=100.0,
    )  # fmt: skip
    if family == "gemma":
        settings["head_dim"] = 8  # transformers' default is 256
    if family == "mistral":
        settings["sliding_window"] = None
    return model_class(config_class(**{**settings, **LM_VARIANTS[variant]}))


def saved(model, path: Path) -> Path:
    with torch.no_grad():  # random biases and norms, so that a weight mapped to the wrong place shows
        for p in model.parameters():
            if p.dim() == 1:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(path)
    return path


def write_word_tokenizer(path: Path, start: bool) -> None:
    """A tokenizer of <pad>, <s>, </s>, <unk> and the words w4 ... w98 that puts <s> before a text where `start`
    (as Llama's does) and nothing where not (as GPT-2's)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    words = {**{token: i for i, token in enumerate(specials)}, **{f"w{i}": i for i in range(len(specials), VOCAB)}}
    backend = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    if start:
        backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    backend.save(str(path / "tokenizer.json"))
    roles = {f"{role}_token": token for role, token in zip(("pad", "bos", "eos", "unk"), specials)}
    (path / "tokenizer_config.json").write_text(json.dumps({**roles, "tokenizer_class": "PreTrainedTokenizerFast"}))
