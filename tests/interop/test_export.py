"""`attnkit export` of trained task models: transformers, loading the exported directory with its Auto classes,
predicts what attnkit predicts (labels, tags, generated texts) from the same logits; an architecture or a head
that no Hugging Face class holds is refused with one line that says how to train one that exports."""

import json
from pathlib import Path

import pytest
import torch

from attnkit import RunConfig
from attnkit.apps.cli import main
from attnkit.apps.export import export
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.training.corpus import pretrain
from tests import numerics
from tests.conftest import TINY, corpus, pretrain_config, trained_on

transformers = pytest.importorskip("transformers")


def assert_close(found: torch.Tensor, expected: torch.Tensor) -> None:
    numerics.assert_close(found, expected, tolerance=1e-4)


def column(path: Path, index: int) -> list[str]:
    return [line.split("\t")[index] for line in path.read_text().splitlines()[1:]]


def attnkit_batch(pipeline: Pipeline, examples: list) -> dict:
    """The tensors attnkit's model reads for `examples` (one batch, padded)."""
    task = pipeline.task
    return task.collate(task.encode(examples, training=False))


# each encoder family, the settings that exercise what is its own (ELECTRA's embeddings narrower than its layers),
# and its task classes
ENCODER_FAMILIES = {
    "bert": ([], "Bert"),
    "roberta": ([], "Roberta"),
    "xlm-roberta": ([], "XLMRoberta"),
    "distilbert": ([], "DistilBert"),
    "mpnet": ([], "MPNet"),
    "electra": (["model.embedding_dim=16"], "Electra"),
}


@pytest.mark.parametrize("preset", ENCODER_FAMILIES)
def test_classifier_exports_as_its_familys_sequence_classifier(sentiment_files, tmp_path, preset):
    settings, prefix = ENCODER_FAMILIES[preset]
    model = trained_on(
        sentiment_files, tmp_path, "classify", 20, "train.eval_every=20", f"model.preset={preset}", *settings
    )
    assert_transformers_classifies_alike(model, sentiment_files["dev"], tmp_path / "hf", preset, prefix)


def assert_transformers_classifies_alike(model: Path, dev: Path, out: Path, family: str, prefix: str) -> None:
    """`model` exports to `out` as `family`'s sequence classifier, whose tokenizer gives attnkit's ids and whose
    logits and labels are attnkit's on the texts of `dev`."""
    assert export(model, out) == family
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == family and config["architectures"] == [f"{prefix}ForSequenceClassification"]
    assert config["problem_type"] == "single_label_classification"
    assert config["id2label"] == {"0": "bad", "1": "good"} and config["label2id"] == {"bad": 0, "good": 1}

    pipeline = Pipeline.load(model)
    texts = column(dev, 1)
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    theirs = transformers.AutoModelForSequenceClassification.from_pretrained(out).eval()
    inputs = tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
    ours = attnkit_batch(pipeline, pipeline.task.inputs(texts))
    assert torch.equal(inputs["input_ids"], ours["ids"])  # the tokenizer adds <s> and </s> as attnkit does
    with torch.no_grad():
        logits = theirs(**inputs).logits
        assert_close(logits, pipeline.model(ours["ids"], ours["mask"]))
    labels = [theirs.config.id2label[int(i)] for i in logits.argmax(-1)]
    assert labels == [p["label"] for p in pipeline.predict(texts)]
    read_back = Pipeline.load(out)  # the folder is a classifier to attnkit too: its head and its labels
    assert read_back.task.name == "classify" and read_back.task.labels == ["bad", "good"]
    assert [p["label"] for p in read_back.predict(texts)] == labels


def checkpoint_of(family: str, folder: Path, texts: list[str]) -> Path:
    """A tiny random checkpoint of `family` as transformers writes it, with the tokenizer files that family's
    published checkpoints ship: RoBERTa a byte-level vocab.json and merges.txt, DistilBERT and ELECTRA a WordPiece
    vocab.txt, MPNet and XLM-R a tokenizer.json (XLM-R's SentencePiece vocabulary: a Unigram one)."""
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer, SentencePieceUnigramTokenizer

    fairseq = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    if family == "roberta":
        tokenizer = ByteLevelBPETokenizer()
        tokenizer.train_from_iterator(texts, vocab_size=300, special_tokens=fairseq)
    elif family == "xlm-roberta":
        tokenizer = SentencePieceUnigramTokenizer()
        tokenizer.train_from_iterator(texts, vocab_size=120, special_tokens=fairseq, unk_token="<unk>")
    elif family == "mpnet":
        tokenizer = BertWordPieceTokenizer(unk_token="<unk>")
        tokenizer.train_from_iterator(texts, vocab_size=120, special_tokens=fairseq)
    else:
        tokenizer = BertWordPieceTokenizer()
        tokenizer.train_from_iterator(
            texts, vocab_size=120, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
        )
    t, vocab = transformers, tokenizer.get_vocab_size()
    sizes = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37)
    model = {
        "roberta": lambda: t.RobertaModel(t.RobertaConfig(**sizes, pad_token_id=1, type_vocab_size=1)),
        "xlm-roberta": lambda: t.XLMRobertaModel(t.XLMRobertaConfig(**sizes, pad_token_id=1, type_vocab_size=1)),
        "distilbert": lambda: t.DistilBertModel(
            t.DistilBertConfig(vocab_size=vocab, dim=32, n_layers=2, n_heads=4, hidden_dim=37)
        ),
        "mpnet": lambda: t.MPNetModel(t.MPNetConfig(**sizes)),
        "electra": lambda: t.ElectraModel(t.ElectraConfig(**sizes, embedding_size=16)),
    }[family]()
    model.save_pretrained(folder)
    if family in ("mpnet", "xlm-roberta"):
        tokenizer.save(str(folder / "tokenizer.json"))
    else:
        tokenizer.save_model(str(folder))
    return folder


@pytest.mark.parametrize("family", ["roberta", "xlm-roberta", "distilbert", "mpnet", "electra"])
def test_a_checkpoint_of_each_family_fine_tunes_and_exports_as_its_family(sentiment_files, tmp_path, family):
    texts = column(sentiment_files["train"], 1)
    start = checkpoint_of(family, tmp_path / "start", texts)
    settings = [f"train.init={start}", "train.eval_every=20", "train.lr=1e-3"]
    model = trained_on(sentiment_files, tmp_path, "classify", 20, *settings, base=["model.dropout=0.0"])
    assert json.loads((model / "config.json").read_text())["model"]["preset"] == family  # read as its family
    assert_transformers_classifies_alike(
        model, sentiment_files["dev"], tmp_path / "hf", family, ENCODER_FAMILIES[family][1]
    )


@pytest.mark.parametrize("preset", ENCODER_FAMILIES)
def test_tagger_exports_as_its_familys_token_classifier(tagging_files, tmp_path, preset):
    settings, prefix = ENCODER_FAMILIES[preset]
    model = trained_on(tagging_files, tmp_path, "tag", 20, "train.eval_every=20", f"model.preset={preset}", *settings)
    assert export(model, tmp_path / "hf") == preset
    pipeline = Pipeline.load(model)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["architectures"] == [f"{prefix}ForTokenClassification"]
    assert config["label2id"] == {tag: i for i, tag in enumerate(pipeline.task.tags)}

    sentences = [e.words for e in pipeline.task.read(pipeline.task.data, tagging_files["dev"])]
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    theirs = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "hf").eval()
    inputs = tokenizer(sentences, is_split_into_words=True, padding=True, return_tensors="pt")
    ours = attnkit_batch(pipeline, pipeline.task.inputs([" ".join(words) for words in sentences]))
    assert torch.equal(inputs["input_ids"], ours["ids"])  # the words' subwords alone, as attnkit's tagger reads them
    with torch.no_grad():
        logits = theirs(**inputs).logits
        assert_close(logits[ours["mask"]], pipeline.model(ours["ids"], ours["mask"])[ours["mask"]])
    tags = []
    for row, best in enumerate(logits.argmax(-1)):
        words = inputs.word_ids(row)
        firsts = [i for i, word in enumerate(words) if word is not None and (i == 0 or words[i - 1] != word)]
        tags.append([theirs.config.id2label[int(best[i])] for i in firsts])
    assert tags == pipeline.predict([" ".join(words) for words in sentences])
    read_back = Pipeline.load(tmp_path / "hf")  # a tagger to attnkit too
    assert read_back.task.name == "tag" and read_back.predict([" ".join(words) for words in sentences]) == tags


@pytest.mark.parametrize(
    ("preset", "auto", "decoding"),
    [
        ("bart", "Bart", {"beam_size": 3}),
        ("marian", "Marian", {"beam_size": 1}),
        ("t5", "T5", {"beam_size": 4, "length_penalty": 1.2, "no_repeat_ngram": 3}),
    ],
)
def test_seq2seq_exports_with_attnkits_decoding(copy_files, tmp_path, preset, auto, decoding):
    settings = ["data.max_new_tokens=12", "train.label_smoothing=0.0", "train.lr=5e-3"]
    settings += [f"task.{key}={value}" for key, value in decoding.items()]
    model = trained_on(
        copy_files, tmp_path, "seq2seq", 300, "train.eval_every=300", f"model.preset={preset}", *settings
    )
    assert export(model, tmp_path / "hf") == preset
    generation = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert generation["num_beams"] == decoding["beam_size"] and generation["max_length"] == 13

    pipeline = Pipeline.load(model)
    sources = column(copy_files["dev"], 0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    theirs = transformers.AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "hf").eval()
    assert type(theirs).__name__.startswith(auto)
    inputs = tokenizer(sources, padding=True, truncation=True, return_tensors="pt")
    ours = attnkit_batch(pipeline, pipeline.task.read(pipeline.task.data, copy_files["dev"]))
    assert torch.equal(inputs["input_ids"], ours["source"])  # the text and </s>, as attnkit's encoder reads it
    with torch.no_grad():
        logits = theirs(**inputs, decoder_input_ids=ours["target"]).logits
        expected = pipeline.model(ours["source"], ours["target"], ours["source_mask"])
        assert_close(logits[ours["target_mask"]], expected[ours["target_mask"]])
        outputs = theirs.generate(**inputs)
        reloaded = Pipeline.load(tmp_path / "hf").model  # attnkit reads its own export back
        assert_close(reloaded(ours["source"], ours["target"], ours["source_mask"]), expected)
    assert tokenizer.batch_decode(outputs, skip_special_tokens=True) == pipeline.predict(sources)


@pytest.mark.parametrize(
    ("preset", "settings"),
    [("bert", []), ("mpnet", []), ("electra", ["model.embedding_dim=16"])],  # ELECTRA: narrower embeddings
)
def test_a_pretrained_encoder_with_a_preset_exports_as_its_familys_model(tmp_path, preset, settings):
    text = corpus(tmp_path / "text")
    pretrain(
        pretrain_config(text, tmp_path / "model", "encoder", "train.max_steps=2", f"model.preset={preset}", *settings)
    )
    assert export(tmp_path / "model", tmp_path / "hf") == preset
    texts = ["the cat sat on the mat", "the dog"]
    inputs = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")(texts, padding=True, return_tensors="pt")
    hidden, mask = Pipeline.load(tmp_path / "model").encode(texts)
    assert torch.equal(inputs["attention_mask"].bool(), mask)
    with torch.no_grad():
        expected = transformers.AutoModel.from_pretrained(tmp_path / "hf").eval()(**inputs).last_hidden_state
    assert_close(hidden[mask], expected[mask])


def test_fine_tuning_from_an_exported_classifier_starts_from_its_pooler(sentiment_files, tmp_path):
    model = trained_on(sentiment_files, tmp_path, "classify", 5, "train.eval_every=5", "model.preset=bert")
    export(model, tmp_path / "hf")
    init = [f"train.init={tmp_path / 'hf'}", "train.lr=0"]
    tuned = trained_on(
        sentiment_files,
        tmp_path / "tuned",
        "classify",
        1,
        "train.eval_every=1",
        *init,
        base=[s for s in TINY if "model." not in s],
    )
    source, found = Pipeline.load(model).model, Pipeline.load(tuned).model
    assert found.pooling == "pooler"  # an imported BERT is BERT-shaped: its own pooling is the default
    assert torch.equal(found.pooler.weight, source.pooler.weight) and torch.equal(found.pooler.bias, source.pooler.bias)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            ["model.preset=bert", "model.norm_first=true"],
            "test: model.norm_first: True contradicts model.preset bert, which needs False",
        ),
        (
            ["task.name=seq2seq", "model.preset=t5", "model.activation=silu"],
            "test: model.activation: 'silu' contradicts model.preset t5, "
            "which needs one of 'relu', 'geglu_tanh', 'swiglu', 'gelu'",
        ),
        (
            ["model.preset=bart"],
            "test: model.preset: bart is an encoder-decoder and task classify needs an encoder (presets for it: bert, "
            "roberta, xlm-roberta, distilbert, mpnet, electra)",
        ),
        (
            ["task.name=pretrain", "model.preset=gpt2", "model.arch=encoder"],
            "test: model.arch: 'encoder' contradicts model.preset gpt2, which needs 'decoder'",
        ),
        (
            ["model.preset=falcon"],
            "test: model.preset: 'falcon' is not one of bert, roberta, xlm-roberta, distilbert, mpnet, electra, bart, "
            "marian, t5, gpt2, llama, mistral, qwen2, gemma",
        ),
        (
            ["model.preset=llama"],
            "test: model.preset: llama is a decoder and task classify needs an encoder (presets for it: bert, "
            "roberta, xlm-roberta, distilbert, mpnet, electra)",
        ),
    ],
)
def test_preset_conflicts_are_one_line_errors(settings, message):
    with pytest.raises(AttnkitError) as error:
        RunConfig.from_values({}, "test", settings)
    assert str(error.value) == message


def test_preset_fills_the_familys_settings():
    model = RunConfig.from_values({}, "test", ["task.name=seq2seq", "model.preset=marian", "model.dim=64"]).model
    found = {key: getattr(model, key) for key in ("preset", "positions", "norm_first", "activation", "dim")}
    assert found == {
        "preset": "marian",
        "positions": "sinusoidal",
        "norm_first": False,
        "activation": "silu",
        "dim": 64,
    }


def test_default_architecture_export_says_how_to_train_one_that_exports(sentiment_files, tmp_path, capsys):
    model = trained_on(sentiment_files, tmp_path, "classify", 1, "train.eval_every=1")
    capsys.readouterr()  # what training said
    assert main(["export", str(model), "--out", str(tmp_path / "hf")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and not (tmp_path / "hf").exists()
    assert error.startswith(f"attnkit: error: {model}: no Hugging Face family holds this architecture (closest: bert, ")
    assert "norm_first=False, positions='learned'" in error
    assert error.endswith("train with --preset bert (model.preset: bert) to get one that exports\n")


def test_mean_pooled_classifier_export_names_task_pooling(sentiment_files, tmp_path, capsys):
    flags = ["--task", "classify", "--train", sentiment_files["train"], "--out", tmp_path / "model", "--max-steps", "1"]
    settings = [arg for setting in [*TINY, "task.pooling=mean"] for arg in ("--set", setting)]
    assert main([str(a) for a in ["train", *flags, "--preset", "bert", *settings]]) == 0
    capsys.readouterr()
    with pytest.raises(
        AttnkitError,
        match=r"model: a classifier with task.pooling=mean cannot become "
        r"BertForSequenceClassification, .*train with task.pooling: pooler",
    ):
        export(tmp_path / "model", tmp_path / "hf")


def test_a_tokenizer_that_mpnet_cannot_read_is_refused_before_training(sentiment_files, tmp_path, capsys):
    bert = trained_on(sentiment_files, tmp_path / "bert", "classify", 1, "model.preset=bert")  # <pad> is id 0
    out = tmp_path / "mpnet"
    flags = ["--train", sentiment_files["train"], "--out", out, "--preset", "mpnet", "--set", f"tokenizer.path={bert}"]
    capsys.readouterr()
    assert main(["train", "--task", "classify", *map(str, flags)]) == 2
    assert capsys.readouterr().err == (
        "attnkit: error: tokenizer: model.preset mpnet needs pad_id=1, and this tokenizer pads with id 0; leave "
        "tokenizer.path unset to train one for it\n"
    )
    assert not out.exists()
