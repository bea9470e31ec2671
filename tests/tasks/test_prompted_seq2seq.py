"""seq2seq on a decoder-only language model: the source a prompt, the target its continuation, the loss on the
target's tokens alone; through the chat template with task.chat; exported as the family's language model that
transformers continues the same way, and with LoRA as a PEFT adapter that peft generates the same with."""

import json
from pathlib import Path

import pytest
import torch

import attnkit
from attnkit.apps.cli import main
from attnkit.config import DataConfig, TaskConfig
from attnkit.data.readers import Pair
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.interop.hf import read_hf_config
from attnkit.tasks import make_task
from attnkit.tasks.seq2seq import PromptedSeq2SeqTask
from tests.conftest import write_tsv
from tests.hf_models import decoder_lm, saved, write_word_tokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def language_model(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = saved(decoder_lm("llama").eval(), tmp_path_factory.mktemp("lm") / "llama")
    write_word_tokenizer(path, start=True)  # <s> before a text, as Llama's
    return path


def copies(path: Path, n: int, seed: int) -> Path:
    """Sources of 2-6 random words; the target is one of two sentences, as w10 is in the source or not."""
    rng = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        words = [f"w{int(w)}" for w in torch.randint(11, 40, (int(torch.randint(2, 6, (1,), generator=rng)),))]
        target = "w50 w51 w52 w53" if i % 2 else "w60 w61 w62 w63"
        rows.append((" ".join(words + ["w10"] * (i % 2)), target))
    return write_tsv(path, ("source", "target"), rows)


def task_of(path: Path, **settings: object) -> PromptedSeq2SeqTask:
    _, model_config = read_hf_config(path)
    return make_task(TaskConfig(name="seq2seq", **settings), DataConfig(), Tokenizer.load(path), model_config)


def test_the_prompt_is_the_source_and_the_end_token_and_the_loss_counts_the_target_alone(language_model):
    task = task_of(language_model, beam_size=1)
    assert isinstance(task, PromptedSeq2SeqTask) and task.verbs == {"generate", "attention"}
    (item,) = task.encode([Pair("w5 w6 w7", "w8 w9", 1)], training=True)
    assert item == {"prompt": [1, 5, 6, 7, 2], "target": [8, 9, 2]}  # <s> source </s>, then target </s>
    items = task.encode([Pair("w5 w6 w7", "w8 w9", 1), Pair("w5", "w8 w9 w10 w11", 2)], training=True)
    batch = task.collate(items)
    # each position that predicts a target token: from the prompt's last token to the target's last but one
    expected = torch.tensor([[0, 0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(batch["chosen"], expected)
    model = task.build_model()
    total, count = task.loss(model, batch, label_smoothing=0.0)
    assert count == 3 + 5  # each target's tokens and its end token, nothing of the prompts
    logits = task.forward(model, batch)
    labels = batch["ids"][:, 1:][expected]
    reference = torch.nn.functional.cross_entropy(logits[expected], labels, reduction="sum")
    torch.testing.assert_close(total, reference)


def test_with_task_chat_the_source_is_the_users_message_through_the_chat_template(language_model, tmp_path):
    import shutil

    path = shutil.copytree(language_model, tmp_path / "chat")
    settings = json.loads((path / "tokenizer_config.json").read_text())
    template = "{{ bos_token }} {% for m in messages %}w4 {{ m['content'] }} {% endfor %}{{ eos_token }}"
    (path / "tokenizer_config.json").write_text(json.dumps({**settings, "chat_template": template}))
    task = task_of(path, chat=True)
    assert task.prompt("w5 w6") == [1, 4, 5, 6, 2]  # the template's words around the message, as it renders them
    with pytest.raises(AttnkitError, match="task.chat: this model's tokenizer has no chat template"):
        task_of(language_model, chat=True).prompt("w5 w6")


def test_a_language_model_learns_seq2seq_and_exports_as_its_family_that_continues_the_same(
    language_model, tmp_path, capsys
):
    train, dev = copies(tmp_path / "train.tsv", 300, 1), copies(tmp_path / "dev.tsv", 20, 2)
    out = tmp_path / "run"
    args = ["train", "--task", "seq2seq", "--train", str(train), "--dev", str(dev), "--init", str(language_model)]
    settings = ["--set", "train.lr=1e-2", "--set", "task.beam_size=1", "--set", "data.max_new_tokens=8"]
    assert main([*args, "--out", str(out), "--max-steps", "80", *settings, "--device", "cpu"]) == 0
    summary = capsys.readouterr().out
    bleu = float(summary.split("dev: bleu ")[1].split()[0])
    assert bleu > 90  # read from the prompt: a language model that did not learn the task writes anything
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "decoder" and config["task"]["name"] == "seq2seq"
    ours = attnkit.load(out, device="cpu")
    prompts = ["w5 w17 w9", "w30 w8"]
    found = ours.generate(prompts)
    assert main(["export", str(out), "--out", str(tmp_path / "hf")]) == 0
    theirs = transformers.LlamaForCausalLM.from_pretrained(tmp_path / "hf").eval()
    for prompt, text in zip(prompts, found):
        ids = torch.tensor([[1, *(int(w[1:]) for w in prompt.split()), 2]])  # the prompt as the task frames it
        with torch.no_grad():
            output = theirs.generate(ids, max_new_tokens=8, do_sample=False, num_beams=1)[0, ids.shape[1] :]
        words = [f"w{int(i)}" for i in output if int(i) != 2]
        assert " ".join(words) == text


def test_a_lora_run_of_a_language_model_exports_a_peft_adapter_that_generates_the_same(language_model, tmp_path):
    peft = pytest.importorskip("peft")
    train = copies(tmp_path / "train.tsv", 200, 1)
    out = tmp_path / "run"
    args = ["train", "--task", "seq2seq", "--train", str(train), "--init", str(language_model), "--out", str(out)]
    settings = ["--set", "train.lr=2e-2", "--set", "task.beam_size=1", "--set", "data.max_new_tokens=6"]
    assert main([*args, "--lora", "4", "--max-steps", "30", *settings, "--device", "cpu"]) == 0
    found = attnkit.load(out, device="cpu").generate(["w5 w17 w9"])
    assert main(["export", str(out), "--peft", "--out", str(tmp_path / "adapter")]) == 0
    adapter = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert adapter["task_type"] == "CAUSAL_LM"
    assert {"model.layers.0.self_attn.q_proj", "model.layers.1.mlp.up_proj"} <= set(adapter["target_modules"])
    base = transformers.LlamaForCausalLM.from_pretrained(language_model).eval()
    adapted = peft.PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    ids = torch.tensor([[1, 5, 17, 9, 2]])
    with torch.no_grad():
        output = adapted.generate(input_ids=ids, max_new_tokens=6, do_sample=False, num_beams=1)[0, 5:]
    assert " ".join(f"w{int(i)}" for i in output if int(i) != 2) == found[0]
