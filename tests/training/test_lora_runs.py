"""LoRA: a run with --lora trains its adapters and the task's head alone, saves them alone with its base named, and
predicts, resumes, averages and exports (merged, and as a PEFT adapter that peft loads) as any run; a PEFT adapter
folder starts a run from the adapted model."""

import json
from pathlib import Path

import pytest
import safetensors.torch
import torch

import attnkit
from attnkit.apps.cli import main
from attnkit.errors import AttnkitError
from attnkit.inference.checkpoint import read_model
from attnkit.nn.lora import adapted_layers
from tests.conftest import write_conll, write_tsv

transformers = pytest.importorskip("transformers")
VOCAB = 99
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # MPNet's ids 0-4


def mpnet(path: Path, labels: int = 0) -> Path:
    """A small random MPNet (MPNetModel, or with `labels` MPNetForSequenceClassification) and a tokenizer of whole
    words w5 ... w98 that frames a text as <s> text </s>."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    torch.manual_seed(0)
    settings = dict(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=66,
    )  # fmt: skip
    if labels:
        names = {i: f"name{i}" for i in range(labels)}
        config = transformers.MPNetConfig(**settings, num_labels=labels, id2label=names)
        model = transformers.MPNetForSequenceClassification(config)
    else:
        model = transformers.MPNetModel(transformers.MPNetConfig(**settings))
    model.save_pretrained(path)
    words = {**{token: i for i, token in enumerate(SPECIALS)}, **{f"w{i}": i for i in range(len(SPECIALS), VOCAB)}}
    backend = Tokenizer(models.WordLevel(words, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 0), ("</s>", 2)]
    )
    backend.save(str(path / "tokenizer.json"))
    roles = dict(zip(("bos_token", "pad_token", "eos_token", "unk_token", "mask_token"), SPECIALS))
    (path / "tokenizer_config.json").write_text(json.dumps({**roles, "tokenizer_class": "PreTrainedTokenizerFast"}))
    return path


def labelled(path: Path, n: int = 160, seed: int = 0) -> Path:
    """Texts of random words labelled by whether w10 is in them."""
    rng = torch.Generator().manual_seed(seed)
    rows = []
    for i in range(n):
        words = [f"w{int(w)}" for w in torch.randint(11, VOCAB, (int(torch.randint(2, 9, (1,), generator=rng)),))]
        rows.append(("yes" if i % 2 else "no", " ".join(words + ["w10"] * (i % 2))))
    return write_tsv(path, ("label", "text"), rows)


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory) -> dict[str, Path]:
    """A tiny MPNet, and a LoRA run of rank 4 on it that learned its task."""
    root = tmp_path_factory.mktemp("lora")
    base, data = mpnet(root / "base"), labelled(root / "train.tsv")
    out = root / "run"
    run_lora(base, data, out, "--max-steps", "80")
    return {"base": base, "data": data, "run": out, "root": root}


def run_lora(base: Path, data: Path, out: Path, *extra: str, code: int = 0) -> None:
    args = ["train", "--task", "classify", "--train", str(data), "--dev", str(data), "--init", str(base)]
    args += ["--out", str(out), "--lora", "4", "--set", "train.lr=2e-2", "--device", "cpu", *extra]
    assert main(args) == code


def test_a_lora_run_saves_its_adapters_and_head_alone_and_names_its_base(lora_run, capsys):
    run, base = lora_run["run"], lora_run["base"]
    saved = safetensors.torch.load_file(str(run / "model.safetensors"))
    adapters = [name for name in saved if name.endswith((".lora_a", ".lora_b"))]
    others = sorted(set(saved) - set(adapters))
    # two layers: the attention's fused Q/K/V and output projections, the feed-forward's two, an A and a B each
    assert len(adapters) == 2 * 4 * 2
    assert others == ["head.bias", "head.weight", "pooler.bias", "pooler.weight"]  # MPNet's classifier head
    config = json.loads((run / "config.json").read_text())
    assert config["lora_base"]["path"] == str(base.resolve())
    assert config["lora_base"]["fingerprint"].startswith("sha256:")
    assert config["train"]["lora"]["rank"] == 4
    whole = (base / "model.safetensors").stat().st_size
    assert (run / "model.safetensors").stat().st_size < 0.3 * whole  # the embeddings are most of this tiny base
    pipeline = attnkit.load(run, device="cpu")
    assert pipeline.predict(["w5 w10 w40", "w5 w17 w40"]) == [
        {"label": "yes", "probability": pytest.approx(pipeline.predict(["w5 w10 w40"])[0]["probability"])},
        {"label": "no", "probability": pytest.approx(pipeline.predict(["w5 w17 w40"])[0]["probability"])},
    ]


def test_the_frozen_weights_are_the_bases_and_merging_changes_no_output(lora_run):
    run, base = lora_run["run"], lora_run["base"]
    unmerged = read_model(run, merged=False)
    merged = read_model(run)
    pretrained = read_model(base).model
    layers = adapted_layers(unmerged.model)
    assert len(layers) == 8 and not adapted_layers(merged.model)
    state = pretrained.state_dict()
    for name, layer in layers.items():
        original = state[name.removeprefix("encoder.") + ".weight"]
        assert torch.equal(layer.weight, original)  # frozen: the base's own weights
        assert (layer.lora_b != 0).any()  # trained: B starts at zero
        merged_weight = merged.model.get_submodule(name).weight
        torch.testing.assert_close(merged_weight, original + layer.delta(), rtol=0, atol=1e-6)
    items = unmerged.task.encode(unmerged.task.inputs(["w5 w10 w40 w7", "w8 w9"]), training=False)
    batch = unmerged.task.collate(items)
    with torch.no_grad():
        a, b = unmerged.task.forward(unmerged.model, batch), merged.task.forward(merged.model, batch)
    assert (a - b).abs().max() <= 1e-5


def test_a_changed_or_missing_base_is_one_line(lora_run, tmp_path, capsys):
    import shutil

    base = shutil.copytree(lora_run["base"], tmp_path / "base")
    out = tmp_path / "run"
    run_lora(base, lora_run["data"], out, "--max-steps", "2")
    weights = safetensors.torch.load_file(str(base / "model.safetensors"))
    name = next(name for name in weights if "intermediate.dense.weight" in name)
    weights[name] = weights[name] + 1e-3
    safetensors.torch.save_file(weights, str(base / "model.safetensors"), metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data", str(lora_run["data"]), "--device", "cpu"]) == 2
    (line,) = capsys.readouterr().err.splitlines()  # one line, no traceback
    assert "has changed since the run" in line
    with pytest.raises(AttnkitError, match=r"its base .* has changed since the run \(its weights' fingerprint"):
        attnkit.load(out, device="cpu")
    shutil.rmtree(base)
    with pytest.raises(AttnkitError, match=r"its base .* is gone; this LoRA run holds adapters for it alone"):
        attnkit.load(out, device="cpu")


def test_lora_needs_a_checkpoint_to_adapt(tmp_path, capsys):
    data = labelled(tmp_path / "train.tsv")
    assert main(["train", "--task", "classify", "--train", str(data), "--lora", "4", "--out", str(tmp_path / "o")]) == 2
    assert "train.lora: LoRA adapts a pretrained checkpoint; give it with --init" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_lora_run_resumes_exactly(lora_run, tmp_path, monkeypatch):
    from attnkit.tasks.classify import ClassifyTask

    settings = ("--max-steps", "12", "--set", "train.eval_every=4", "--set", "train.lora.dropout=0.1")
    run_lora(lora_run["base"], lora_run["data"], tmp_path / "whole", *settings)
    real_loss, calls = ClassifyTask.loss, {"n": 0}

    def interrupted(self, *args):
        calls["n"] += 1
        if calls["n"] == 7:  # in step 7: the state of step 6 is saved
            raise KeyboardInterrupt
        return real_loss(self, *args)

    monkeypatch.setattr(ClassifyTask, "loss", interrupted)
    run_lora(lora_run["base"], lora_run["data"], tmp_path / "split", *settings, code=130)  # as a Ctrl-C ends it
    monkeypatch.setattr(ClassifyTask, "loss", real_loss)
    run_lora(lora_run["base"], lora_run["data"], tmp_path / "split", *settings, "--resume")
    whole, split = (safetensors.torch.load_file(str(tmp_path / d / "model.safetensors")) for d in ("whole", "split"))
    assert whole.keys() == split.keys() and all(torch.equal(whole[k], split[k]) for k in whole)


def test_lora_runs_of_one_base_average_and_ensemble(lora_run, tmp_path):
    other = tmp_path / "other"
    run_lora(lora_run["base"], lora_run["data"], other, "--max-steps", "30", "--set", "train.seed=2")
    runs = [lora_run["run"], other]
    assert main(["average", *map(str, runs), "--out", str(tmp_path / "soup")]) == 0
    soup = attnkit.load(tmp_path / "soup", device="cpu")
    merged = [read_model(run).model.state_dict() for run in runs]
    for name, tensor in soup.model.state_dict().items():
        torch.testing.assert_close(tensor, (merged[0][name] + merged[1][name]) / 2, rtol=0, atol=1e-6)
    config = json.loads((tmp_path / "soup" / "config.json").read_text())
    assert "lora_base" not in config  # the average holds every weight: it needs no base
    assert main(["ensemble", *map(str, runs), "--out", str(tmp_path / "ensemble")]) == 0
    predictions = attnkit.load(tmp_path / "ensemble", device="cpu").predict(["w5 w10 w40"])
    assert predictions[0]["label"] == "yes"


def test_a_lora_run_exports_merged_and_as_a_peft_adapter_that_peft_predicts_with(lora_run, tmp_path, capsys):
    peft = pytest.importorskip("peft")
    run, base = lora_run["run"], lora_run["base"]
    ours = attnkit.load(run, device="cpu")
    texts = ["w5 w10 w40 w7", "w8 w9 w33"]
    expected = ours.predict(texts)
    ids = [[0, *(int(w[1:]) for w in text.split()), 2] for text in texts]  # <s> words </s>
    assert main(["export", str(run), "--out", str(tmp_path / "merged")]) == 0
    assert main(["export", str(run), "--peft", "--out", str(tmp_path / "adapter")]) == 0
    assert "PEFT LoRA adapter, SEQ_CLS" in capsys.readouterr().out
    merged = transformers.MPNetForSequenceClassification.from_pretrained(tmp_path / "merged").eval()
    labels = merged.config.id2label
    plain = transformers.MPNetForSequenceClassification.from_pretrained(base, num_labels=len(labels)).eval()
    adapted = peft.PeftModel.from_pretrained(plain, tmp_path / "adapter").eval()
    for model in (merged, adapted):
        for sequence, prediction in zip(ids, expected):
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([sequence])).logits[0]
            assert labels[int(logits.argmax())] == prediction["label"]
            assert float(logits.softmax(-1).max()) == pytest.approx(prediction["probability"], abs=1e-5)


def test_a_peft_adapter_folder_starts_a_run_from_the_adapted_model(lora_run, tmp_path):
    peft = pytest.importorskip("peft")
    base = lora_run["base"]
    torch.manual_seed(3)
    plain = transformers.MPNetModel.from_pretrained(base)
    config = peft.LoraConfig(r=2, lora_alpha=6, target_modules=["q", "v", "o", "intermediate.dense"], use_rslora=True)
    adapted = peft.get_peft_model(plain, config)
    with torch.no_grad():  # B starts at zero: an adapter that changes nothing would show nothing
        for name, parameter in adapted.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.1)
    adapted.save_pretrained(tmp_path / "adapter")
    reference = adapted.merge_and_unload().eval()
    out = tmp_path / "run"
    args = ["train", "--task", "classify", "--train", str(lora_run["data"]), "--init", str(base), "--out", str(out)]
    assert main([*args, "--adapter", str(tmp_path / "adapter"), "--max-steps", "1", "--set", "train.lr=0"]) == 0
    ours = attnkit.load(out, device="cpu")
    ids = torch.tensor([[0, 5, 10, 40, 2]])
    with torch.no_grad():
        theirs = reference(input_ids=ids).last_hidden_state
        states = ours.model.encoder(ids, torch.ones_like(ids, dtype=torch.bool))
    assert (states - theirs).abs().max() < 1e-4
    # LoRA on the adapted model: the run names the base and the adapter merged into it, and reads both again
    lora = tmp_path / "lora"
    assert main([*args[:-1], str(lora), "--adapter", str(tmp_path / "adapter"), "--lora", "2", "--max-steps", "2"]) == 0
    assert json.loads((lora / "config.json").read_text())["lora_base"]["adapter"] == str(tmp_path / "adapter")
    assert attnkit.load(lora, device="cpu").predict(["w5 w10"])[0]["label"] in ("yes", "no")


def test_what_has_no_peft_form_is_one_line(lora_run, tmp_path, capsys):
    full = tmp_path / "full"
    args = ["train", "--task", "classify", "--train", str(lora_run["data"]), "--init", str(lora_run["base"])]
    assert main([*args, "--out", str(full), "--max-steps", "1"]) == 0
    capsys.readouterr()
    assert main(["export", str(full), "--peft", "--out", str(tmp_path / "adapter")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "not a LoRA run (attnkit train --lora RANK)" in line and not (tmp_path / "adapter").exists()


def test_a_lora_run_of_an_attnkit_checkpoint_exports_to_onnx_and_ctranslate2_merged(sentiment_files, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("ctranslate2")
    from attnkit.training.loop import train
    from tests.conftest import run_config

    train(run_config(sentiment_files, tmp_path / "base", "classify", "train.max_steps=20"))
    run = tmp_path / "run"
    args = ["train", "--task", "tag", "--train", str(tmp_path / "tags.conll"), "--init", str(tmp_path / "base")]
    write_conll(tmp_path / "tags.conll", [[(w, "AB"[len(w) % 2]) for w in line.split()] for line in TEXTS * 20])
    assert main([*args, "--out", str(run), "--lora", "2", "--max-steps", "20", "--set", "train.lr=1e-2"]) == 0
    expected = attnkit.load(run, device="cpu").predict(TEXTS)
    assert main(["export", str(run), "--onnx", "--out", str(tmp_path / "onnx")]) == 0
    assert main(["export", str(run), "--ct2", "--out", str(tmp_path / "ct2")]) == 0
    config = json.loads((tmp_path / "ct2" / "config.json").read_text())
    assert "lora_base" not in config and config["task"]["name"] == "tag"  # merged: it needs no base
    assert attnkit.load(tmp_path / "ct2", device="cpu").predict(TEXTS) == expected


TEXTS = ["the happy cat sat", "a sad dog ran far away"]


def test_a_lora_run_serves_as_any_model(lora_run):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from attnkit.apps.serve import create_app

    pipeline = attnkit.load(lora_run["run"], device="cpu")
    texts = ["w5 w10 w40", "w5 w17 w40"]
    with TestClient(create_app(pipeline)) as client:
        reply = client.post("/predict", json={"texts": texts})
    assert reply.status_code == 200 and reply.json()["predictions"] == pipeline.predict(texts)
    assert [p["label"] for p in reply.json()["predictions"]] == ["yes", "no"]
