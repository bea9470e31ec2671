"""GGUF files in: a file holds the model it was written from (Llama's permuted Q and K, Gemma's 1 + w norms undone),
a quantized one reads as transformers reads it (logits, greedy tokens and the tokenizer, byte-level and
SentencePiece), SmolLM2's published file answers as transformers does, and a bad file is one line."""

import json

import pytest
import torch

import attnkit
from attnkit.apps.cli import main
from attnkit.nn.decoding import generate
from tests.ggufs import TEXTS, smollm2, tiny_llama, transformers, write_gguf
from tests.numerics import assert_close

LLAMA31 = {"rope_type": "llama3", "factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
           "original_max_position_embeddings": 8192}  # fmt: skip
WORDS = [*TEXTS[:3], "  two leading spaces", "digits 1234567 and symbols #$%", "<|im_start|>user\nhi<|im_end|>"]


def ids(seed: int = 1, vocab: int = 320) -> torch.Tensor:
    return torch.randint(3, vocab, (2, 24), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    ("family", "settings"),
    [
        ("llama", {}),
        ("llama", {"num_key_value_heads": 1}),
        ("llama", {"rope_theta": 500000.0, "rope_scaling": LLAMA31}),  # its scaling read from rope_freqs
        ("qwen2", {}),
        ("gemma", {"head_dim": 32}),
    ],
)
def test_a_gguf_file_holds_the_model_it_was_written_from(tmp_path, family, settings):
    source = tiny_llama(family, **settings)
    ours = attnkit.load(write_gguf(tmp_path / "model.gguf", source, quantization="F32"), device="cpu")
    assert ours.origin == f"GGUF {family} (model.gguf)"
    scaled = ("llama3", 32.0) if "rope_scaling" in settings else ("none", 1.0)
    assert (ours.model.config.rotary_scaling, ours.model.config.rotary_factor) == scaled
    tokens = ids()
    with torch.no_grad():
        assert_close(ours.model(tokens), source(input_ids=tokens).logits, tolerance=1e-4)
        expected = source.generate(tokens[:1], max_new_tokens=10, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert generate(ours.model, tokens[:1], eos_id=-1, max_new_tokens=10)[0] == expected[0, 24:].tolist()


@pytest.mark.parametrize("tokenizer", ["gpt2", "llama"])
def test_a_quantized_gguf_reads_as_transformers_reads_it(tmp_path, tokenizer):
    write_gguf(tmp_path / "model.gguf", tiny_llama(), tokenizer)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, gguf_file="model.gguf").eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path, gguf_file="model.gguf")
    ours = attnkit.load(tmp_path, device="cpu")  # the folder that holds it
    for text in WORDS:
        assert ours.tokenizer.encode(text) == their_tokenizer(text, add_special_tokens=False).input_ids, text
        assert ours.tokenizer.decode(ours.tokenizer.encode(text)) == their_tokenizer.decode(
            their_tokenizer(text, add_special_tokens=False).input_ids, skip_special_tokens=True
        )
    starts = their_tokenizer("a").input_ids[:1] == [their_tokenizer.bos_token_id]
    assert ours.tokenizer.prompt_start == ([1] if starts else [])  # SentencePiece's files add <s>, byte-level not
    tokens = ids()
    with torch.no_grad():
        assert_close(ours.model(tokens), theirs(input_ids=tokens).logits, tolerance=1e-4)


def test_smollm2_answers_as_transformers_does():
    file = smollm2()
    ours = attnkit.load(file, device="cpu")
    theirs = transformers.AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name).eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
    assert ours.model.config.kv_heads == 3 and ours.model.config.num_heads == 9 and ours.model.config.tie_output
    for text in WORDS:
        assert ours.tokenizer.encode(text) == their_tokenizer(text, add_special_tokens=False).input_ids, text
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    prompt = their_tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    tokens = torch.tensor([their_tokenizer(prompt, add_special_tokens=False).input_ids])
    with torch.no_grad():
        assert_close(ours.model(tokens), theirs(input_ids=tokens).logits, tolerance=1e-4)
    answer = generate(ours.model, tokens, eos_id=ours.tokenizer.eos_id, max_new_tokens=20)[0]
    assert ours.tokenizer.decode(answer) == "The capital of France is Paris."
    assert "<|im_start|>" in ours.tokenizer.chat_template


def test_export_of_a_gguf_writes_a_folder_that_transformers_predicts_the_same_with(tmp_path):
    write_gguf(tmp_path / "model.gguf", tiny_llama(), "gpt2")
    assert main(["export", str(tmp_path / "model.gguf"), "--out", str(tmp_path / "hf")]) == 0
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    ours = attnkit.load(tmp_path / "model.gguf", device="cpu")
    tokens = ids()
    with torch.no_grad():
        assert_close(theirs(input_ids=tokens).logits, ours.model(tokens), tolerance=1e-4)
    for text in WORDS:
        assert their_tokenizer(text).input_ids == ours.tokenizer.encode(text)  # no <s>: the file says so
    settings = json.loads((tmp_path / "hf" / "tokenizer_config.json").read_text())
    assert settings["eos_token"] == "<|im_end|>" and "<|im_start|>" in settings["chat_template"]
    assert their_tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False) == (
        "<|im_start|>user\nhi<|im_end|>\n"
    )


def bad_files(tmp_path):
    """Each bad GGUF file and the line that refuses it."""
    good = write_gguf(tmp_path / "good.gguf", tiny_llama(), "gpt2")
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    model = tiny_llama()
    yield truncated, r"truncated.gguf: not a whole GGUF file \(truncated or damaged"
    (tmp_path / "other").mkdir()
    write_gguf(tmp_path / "other" / "model.gguf", model, "gpt2", named="phi3")
    yield (
        tmp_path / "other",
        r"model.gguf: architecture 'phi3' is not one attnkit reads \(it reads llama, qwen2, gemma\)",
    )
    no_tokenizer = write_gguf(tmp_path / "untokenized.gguf", model, "gpt2", **{"tokenizer.ggml.tokens": None})
    yield no_tokenizer, r"untokenized.gguf: no tokenizer in its metadata \(tokenizer.ggml.model and tokenizer.ggml"
    odd = write_gguf(tmp_path / "q81.gguf", model, "gpt2", quantization="Q8_1")
    yield odd, r"q81.gguf: tensor 'token_embd.weight' is stored as Q8_1, which the gguf package cannot dequantize"


def test_a_bad_gguf_file_is_one_line_and_nothing_is_written(tmp_path, capsys):
    import gguf

    try:
        found = list(bad_files(tmp_path))
    except Exception as error:  # this gguf package cannot write one of them
        pytest.skip(f"gguf {gguf.__version__} cannot write the bad files: {error}")
    for file, message in found:
        for command in (["info", str(file)], ["export", str(file), "--out", str(tmp_path / "out")]):
            capsys.readouterr()
            assert main(command) == 2, file
            error = capsys.readouterr().err
            assert error.count("\n") == 1 and "Traceback" not in error, error
            assert __import__("re").search(message, error), error
            assert not (tmp_path / "out").exists()


def test_pretraining_goes_on_from_a_gguf_file_in_its_own_architecture(tmp_path, capsys):
    gguf = write_gguf(tmp_path / "model.gguf", tiny_llama(), "gpt2", quantization="F32")
    (tmp_path / "text.txt").write_text("".join(f"{text}\n" for text in TEXTS))
    out = tmp_path / "lm"
    settings = ["--set", f"train.init={gguf}", "--set", "train.lr=0", "--max-steps", "2"]
    assert main(["pretrain", "--text", str(tmp_path / "text.txt"), "--out", str(out), *settings]) == 0
    started, went_on = attnkit.load(gguf, device="cpu"), attnkit.load(out, device="cpu")
    assert went_on.model.config.preset == "llama" and went_on.tokenizer.chat_template == started.tokenizer.chat_template
    tokens = ids()
    with torch.no_grad():  # a rate of 0: the weights it started from, whole
        assert torch.equal(went_on.model(tokens), started.model(tokens))
