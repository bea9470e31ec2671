"""Hugging Face checkpoints read from files: attnkit's outputs match transformers' for every family (encoder
states, decoder logits, greedy generation), and attnkit's exports load back into transformers unchanged."""

import json
import re
from pathlib import Path

import pytest
import torch

from attnkit.errors import AttnkitError
from attnkit.interop.hf import TaskExport, export_hf, load_hf_model
from attnkit.nn import Decoder, EncoderDecoder
from attnkit.nn.decoding import generate
from tests.hf_models import DECODER_LMS, VOCAB, decoder_lm, saved, write_word_tokenizer
from tests.numerics import assert_close

transformers = pytest.importorskip("transformers")


def tiny(family: str, variant: str = ""):
    """A small random transformers model of `family`."""
    torch.manual_seed(0)
    t = transformers
    if family == "bert":
        config = t.BertConfig(
            vocab_size=VOCAB,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=37,
            max_position_embeddings=64,
            hidden_act=variant or "gelu",
        )
        return t.BertModel(config)
    encoder = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        max_position_embeddings=66,
    )
    if family in ("roberta", "xlm-roberta"):  # positions from padding_idx + 1, one token type
        config_class = t.RobertaConfig if family == "roberta" else t.XLMRobertaConfig
        model_class = t.RobertaModel if family == "roberta" else t.XLMRobertaModel
        return model_class(config_class(**encoder, pad_token_id=1, type_vocab_size=1))
    if family == "distilbert":
        config = t.DistilBertConfig(
            vocab_size=VOCAB, dim=32, n_layers=2, n_heads=4, hidden_dim=37, max_position_embeddings=64
        )
        return t.DistilBertModel(config)
    if family == "mpnet":  # learned positions and relative buckets
        return t.MPNetModel(t.MPNetConfig(**encoder))
    if family == "electra":  # embeddings narrower than the layers, projected up
        return t.ElectraModel(t.ElectraConfig(**encoder, embedding_size=variant or 16))
    if family == "gpt2":
        config = t.GPT2Config(
            vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1, eos_token_id=2
        )
        return t.GPT2LMHeadModel(config)
    if family == "bart":
        config = t.BartConfig(
            vocab_size=VOCAB,
            d_model=32,
            encoder_layers=2,
            decoder_layers=3,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=64,
            scale_embedding=variant == "scaled",
            forced_bos_token_id=None,
            forced_eos_token_id=None,
        )
        return t.BartForConditionalGeneration(config)
    if family == "marian":
        config = t.MarianConfig(
            vocab_size=VOCAB,
            d_model=32,
            encoder_layers=2,
            decoder_layers=2,
            encoder_attention_heads=4,
            decoder_attention_heads=4,
            encoder_ffn_dim=37,
            decoder_ffn_dim=37,
            max_position_embeddings=64,
            pad_token_id=VOCAB - 1,
            decoder_start_token_id=VOCAB - 1,
            eos_token_id=0,
            forced_eos_token_id=None,
        )
        return t.MarianMTModel(config)
    if family in DECODER_LMS:
        return decoder_lm(family, variant)
    # equal depths: transformers' own T5 generate fails in its cache when the decoder is deeper
    config = t.T5Config(
        vocab_size=VOCAB,
        d_model=32,
        d_kv=8,
        num_heads=4,
        d_ff=37,
        num_layers=2,
        num_decoder_layers=2,
        relative_attention_num_buckets=8,
        relative_attention_max_distance=20,
        feed_forward_proj=variant or "relu",
        tie_word_embeddings=variant != "gated-gelu",
        decoder_start_token_id=0,
        pad_token_id=0,
        eos_token_id=1,
    )
    return t.T5ForConditionalGeneration(config)


def inputs(batch: int = 2, time: int = 9, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.randint(3, VOCAB - 2, (batch, time), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones(batch, time, dtype=torch.bool)
    mask[1, 6:] = False
    return ids, mask


@pytest.mark.parametrize(
    ("family", "variant"),
    [
        ("bert", "gelu"),
        ("bert", "relu"),
        ("roberta", ""),
        ("xlm-roberta", ""),
        ("distilbert", ""),
        ("mpnet", ""),
        ("electra", ""),
        ("electra", 32),  # as wide as the layers: no projection
    ],
)
def test_encoder_states_match(tmp_path, family, variant):
    theirs = tiny(family, variant).eval()
    ours = load_hf_model(saved(theirs, tmp_path / family))
    ids, mask = inputs()
    expected = theirs(input_ids=ids, attention_mask=mask.long()).last_hidden_state
    assert_close(ours(ids, mask)[mask], expected[mask], tolerance=1e-4)


def test_gpt2_logits_and_greedy_generation_match(tmp_path):
    theirs = tiny("gpt2").eval()
    ours = load_hf_model(saved(theirs, tmp_path / "gpt2"))
    assert isinstance(ours, Decoder)
    ids, _ = inputs()
    assert_close(ours(ids), theirs(input_ids=ids).logits, tolerance=1e-4)
    expected = theirs.generate(ids[:1], max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=2)
    assert generate(ours, ids[:1], eos_id=-1, max_new_tokens=12)[0] == expected[0, 9:].tolist()


@pytest.mark.parametrize(
    ("family", "variant"),
    [
        ("llama", ""),
        ("llama", "tied"),
        ("llama", "multi-query"),
        ("llama", "linear"),
        ("llama", "llama3"),
        ("llama", "biases"),
        ("mistral", ""),
        ("qwen2", ""),
        ("qwen2", "head_dim"),
        ("gemma", ""),
        ("gemma", "head_dim"),
    ],
)
def test_decoder_language_model_logits_and_greedy_generation_match(tmp_path, family, variant):
    theirs = tiny(family, variant).eval()
    ours = load_hf_model(saved(theirs, tmp_path / family))
    assert isinstance(ours, Decoder) and ours.config.preset == family
    ids = torch.randint(3, VOCAB - 2, (2, 40), generator=torch.Generator().manual_seed(1))  # past llama3's 16
    assert_close(ours(ids), theirs(input_ids=ids).logits, tolerance=1e-4)
    expected = theirs.generate(ids[:1, :9], max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0)
    assert generate(ours, ids[:1, :9], eos_id=-1, max_new_tokens=12)[0] == expected[0, 9:].tolist()


@pytest.mark.parametrize(
    ("family", "settings", "message"),
    [
        ("llama", {"rope_scaling": {"rope_type": "yarn", "factor": 2.0}}, r"rope_type 'yarn' is not supported"),
        ("llama", {"attention_bias": True}, r"attention_bias true with mlp_bias false: attnkit puts biases on every"),
        ("llama", {"hidden_act": "relu"}, r"hidden_act 'relu' is not supported"),
        ("llama", {"partial_rotary_factor": 0.5}, r"partial_rotary_factor 0.5: attnkit rotates every dimension"),
        ("mistral", {"sliding_window": 16}, r"sliding_window 16 .* is shorter than max_position_embeddings 64"),
        ("qwen2", {"use_sliding_window": True, "sliding_window": 16}, r"sliding_window 16"),
    ],
)
def test_a_setting_attnkit_does_not_hold_is_one_line_naming_it(tmp_path, family, settings, message):
    path = saved(tiny(family), tmp_path / family)
    config = json.loads((path / "config.json").read_text())
    config.pop("rope_parameters", None)
    (path / "config.json").write_text(json.dumps({**config, **settings}))
    with pytest.raises(AttnkitError, match=r"config.json: " + message):
        load_hf_model(path)
    config.pop("sliding_window", None)
    (path / "config.json").write_text(json.dumps({**config, "use_sliding_window": True}))  # no window: every token
    assert load_hf_model(path).config.preset == family


def seq2seq_parity(theirs, ours: EncoderDecoder, start: int, eos: int) -> None:
    ids, mask = inputs()
    target = torch.randint(3, VOCAB - 2, (2, 7), generator=torch.Generator().manual_seed(2))
    out = theirs(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=target)
    assert_close(ours.encode(ids, mask)[mask], out.encoder_last_hidden_state[mask], tolerance=1e-4)
    assert_close(ours(ids, target, mask), out.logits, tolerance=1e-4)
    expected = theirs.generate(
        input_ids=ids,
        attention_mask=mask.long(),
        max_new_tokens=10,
        do_sample=False,
        num_beams=1,
        min_length=0,
        no_repeat_ngram_size=0,
    )
    for row, found in enumerate(generate(ours, ids, mask, start_id=start, eos_id=eos, max_new_tokens=10)):
        want = expected[row, 1:].tolist()
        want = want[: want.index(eos)] if eos in want else want
        assert found == want


@pytest.mark.parametrize("variant", ["", "scaled"])
def test_bart_encoder_decoder_and_generation_match(tmp_path, variant):
    theirs = tiny("bart", variant).eval()
    ours = load_hf_model(saved(theirs, tmp_path / "bart"))
    seq2seq_parity(theirs, ours, theirs.config.decoder_start_token_id, theirs.config.eos_token_id)


def test_marian_encoder_decoder_and_generation_match(tmp_path):
    theirs = tiny("marian").eval()
    ours = load_hf_model(saved(theirs, tmp_path / "marian"))
    seq2seq_parity(theirs, ours, theirs.config.decoder_start_token_id, theirs.config.eos_token_id)


@pytest.mark.parametrize("variant", ["relu", "gated-gelu"])
def test_t5_encoder_decoder_and_generation_match(tmp_path, variant):
    theirs = tiny("t5", variant).eval()
    ours = load_hf_model(saved(theirs, tmp_path / "t5"))
    seq2seq_parity(theirs, ours, 0, 1)


class FakeTokenizer:
    """What export needs of a tokenizer: its special ids and a tokenizer.json."""

    bos_id, eos_id, pad_id, unk_id, mask_id = 1, 2, 0, 3, None

    def __init__(self) -> None:
        from tokenizers import Tokenizer, models

        self.backend = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t3"))

    def save(self, path: Path) -> None:
        self.backend.save(str(path))


@pytest.mark.parametrize(
    ("family", "auto"),
    [
        ("bert", "AutoModel"),
        ("roberta", "AutoModel"),
        ("xlm-roberta", "AutoModel"),
        ("distilbert", "AutoModel"),
        ("mpnet", "AutoModel"),
        ("electra", "AutoModel"),
        ("gpt2", "AutoModelForCausalLM"),
        ("bart", "AutoModelForSeq2SeqLM"),
        ("marian", "AutoModelForSeq2SeqLM"),
        ("t5", "AutoModelForSeq2SeqLM"),
        ("llama", "AutoModelForCausalLM"),
        ("llama/llama3", "AutoModelForCausalLM"),
        ("mistral", "AutoModelForCausalLM"),
        ("qwen2", "AutoModelForCausalLM"),
        ("gemma/head_dim", "AutoModelForCausalLM"),
    ],
)
def test_export_loads_in_transformers_with_the_same_outputs(tmp_path, family, auto):
    family, _, variant = family.partition("/")
    ours = load_hf_model(saved(tiny(family, variant), tmp_path / "original"))
    assert export_hf(TaskExport(ours), FakeTokenizer(), tmp_path / "exported") == family
    theirs = getattr(transformers, auto).from_pretrained(tmp_path / "exported").eval()
    ids, mask = inputs()
    if auto == "AutoModel":
        expected, found = (
            theirs(input_ids=ids, attention_mask=mask.long()).last_hidden_state[mask],
            ours(ids, mask)[mask],
        )
    elif isinstance(ours, Decoder):
        expected, found = theirs(input_ids=ids).logits, ours(ids)
    else:
        expected = theirs(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=ids[:, :5]).logits
        found = ours(ids, ids[:, :5], mask)
    assert_close(found, expected, tolerance=1e-4)


class RunsCode:
    """Unpickling this creates a file: the harmless stand-in for what a malicious checkpoint could do."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("trusted", [False, True])
def test_a_pickle_that_would_run_code_is_refused_even_when_trusted(tmp_path, capsys, trusted):
    from attnkit.apps.cli import main

    tiny("bert").save_pretrained(tmp_path / "planted")
    (tmp_path / "planted" / "model.safetensors").unlink()
    marker = tmp_path / "code-ran"
    torch.save({"embeddings.word_embeddings.weight": RunsCode(marker)}, tmp_path / "planted" / "pytorch_model.bin")
    flag = ["--trust-pickle"] if trusted else []
    capsys.readouterr()  # transformers' progress bar of save_pretrained
    assert main(["export", str(tmp_path / "planted"), "--out", str(tmp_path / "out"), *flag]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "Traceback" not in error
    if trusted:
        assert "holds io.open, not only tensors: loading it would run code; refused even with" in error
    else:
        assert "pytorch_model.bin: a pickle file, which can run code when loaded" in error
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_unsupported_family_and_pickles_are_refused(tmp_path):
    directory = tmp_path / "falcon"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "falcon"}')
    with pytest.raises(AttnkitError, match=r"config.json: model_type 'falcon' is not supported \(supported: bert"):
        load_hf_model(directory)
    bert = tiny("bert")
    bert.save_pretrained(tmp_path / "pickled")  # transformers 5 writes safetensors only: make the pickle by hand
    weights = __import__("safetensors.torch").torch.load_file(tmp_path / "pickled" / "model.safetensors")
    (tmp_path / "pickled" / "model.safetensors").unlink()
    torch.save(weights, tmp_path / "pickled" / "pytorch_model.bin")
    with pytest.raises(AttnkitError, match=r"pytorch_model.bin: a pickle file, which can run code"):
        load_hf_model(tmp_path / "pickled")
    ours = load_hf_model(tmp_path / "pickled", trust_pickle=True)
    ids, mask = inputs()
    assert_close(
        ours(ids, mask)[mask],
        bert.eval()(input_ids=ids, attention_mask=mask.long()).last_hidden_state[mask],
        tolerance=1e-4,
    )


def test_config_that_disagrees_with_the_weights_names_the_tensor(tmp_path):
    path = saved(tiny("bert"), tmp_path / "bert")
    config = (path / "config.json").read_text().replace('"intermediate_size": 37', '"intermediate_size": 40')
    (path / "config.json").write_text(config)
    with pytest.raises(
        AttnkitError,
        match=r"model.safetensors: tensor 'encoder.layer.0.intermediate.dense.weight' "
        r"has shape \[37, 32\], which disagrees with config.json",
    ):
        load_hf_model(path)


def test_missing_tokenizer_is_named(tmp_path):
    import attnkit

    path = saved(tiny("bert"), tmp_path / "bert")  # save_pretrained of a model alone writes no tokenizer
    with pytest.raises(AttnkitError, match=r"bert: no tokenizer \(needs tokenizer.json, vocab.txt, or vocab.json"):
        attnkit.load(path)
    (path / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world"]))
    hidden, mask = attnkit.load(path).encode(["hello world"])
    assert hidden.shape == (1, 4, 32) and mask.all()  # [CLS] hello world [SEP], from BERT's vocab.txt


def test_a_sentencepiece_model_alone_says_how_to_get_a_tokenizer_json(tmp_path):
    import attnkit

    path = saved(tiny("xlm-roberta"), tmp_path / "xlmr")
    (path / "sentencepiece.bpe.model").write_bytes(b"\x0a\x03")
    with pytest.raises(
        AttnkitError,
        match=r"sentencepiece.bpe.model: a SentencePiece model alone is not read .*"
        r"AutoTokenizer.from_pretrained\('.*xlmr'\).save_pretrained",
    ):
        attnkit.load(path)


@pytest.mark.parametrize(
    ("head", "labels", "task"),
    [("sequence", 3, "classify"), ("sequence", 1, "regress"), ("token", 4, "tag")],
)
def test_a_task_model_people_download_loads_as_that_task(tmp_path, head, labels, task):
    import attnkit

    torch.manual_seed(0)
    names = {i: f"name{i}" for i in range(labels)}
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
        max_position_embeddings=64, num_labels=labels, id2label=names, label2id={v: k for k, v in names.items()},
    )  # fmt: skip
    kind = transformers.BertForSequenceClassification if head == "sequence" else transformers.BertForTokenClassification
    theirs = kind(config).eval()
    path = saved(theirs, tmp_path / "bert")
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(5, VOCAB))]
    (path / "vocab.txt").write_text("\n".join(words))
    ours = attnkit.load(path, device="cpu")
    assert ours.task.name == task and ours.origin == f"Hugging Face bert ({kind.__name__})"
    text = "w5 w17 w40 w9"
    ids = torch.tensor([[2, 5, 17, 40, 9, 3]])  # [CLS] text [SEP], as transformers' tokenizer would give
    with torch.no_grad():
        logits = theirs(input_ids=ids).logits[0]
    (found,) = ours.predict([text])
    if task == "classify":
        assert ours.task.labels == list(names.values()) and found["label"] == names[int(logits.argmax())]
        assert found["probability"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-5)
    elif task == "regress":
        assert found == pytest.approx(float(logits[0]), abs=1e-4)
    else:
        assert found == [names[int(i)] for i in logits[1:-1].argmax(-1)]  # each word's one subword


def decoder_task_model(family: str, head: str, labels: int):
    """A small random transformers classifier on a decoder of `family`: a label per text (`head` "sequence") or
    per token ("token"), with its id2label; padding is token 0."""
    t, names = transformers, {i: f"name{i}" for i in range(labels)}
    task = dict(num_labels=labels, id2label=names, label2id={v: k for k, v in names.items()}, pad_token_id=0)
    kind = "Sequence" if head == "sequence" else "Token"
    if family == "gpt2":
        config = t.GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=1,
                              eos_token_id=2, **task)  # fmt: skip
        return getattr(t, f"GPT2For{kind}Classification")(config)
    lm = decoder_lm(family)
    return getattr(t, f"{type(lm).__name__.removesuffix('ForCausalLM')}For{kind}Classification")(
        type(lm.config)(**{**lm.config.to_dict(), **task})
    )


@pytest.mark.parametrize(
    ("family", "head", "labels", "task"),
    [
        ("gpt2", "sequence", 3, "classify"),
        ("llama", "sequence", 3, "classify"),
        ("qwen2", "sequence", 1, "regress"),
        ("gemma", "sequence", 2, "classify"),
        ("mistral", "token", 4, "tag"),
        ("gpt2", "token", 4, "tag"),
    ],
)
def test_a_decoder_task_model_people_download_loads_as_that_task_and_exports_back(
    tmp_path, capsys, family, head, labels, task
):
    import attnkit
    from attnkit.apps.cli import main

    torch.manual_seed(0)
    theirs = decoder_task_model(family, head, labels).eval()
    path = saved(theirs, tmp_path / "theirs")
    start = family != "gpt2"
    write_word_tokenizer(path, start)
    ours = attnkit.load(path, device="cpu")
    assert ours.task.name == task and ours.origin == f"Hugging Face {family} ({type(theirs).__name__})"
    texts = ["w5 w17 w40 w9", "w8 w22"]  # the second padded after its end, where the last real token is read
    ids = [[1] * start + [int(word[1:]) for word in text.split()] for text in texts]
    batch = torch.tensor([ids[0], ids[1] + [0] * (len(ids[0]) - len(ids[1]))])
    with torch.no_grad():
        logits = theirs(input_ids=batch, attention_mask=(batch != 0).long()).logits
    found = ours.predict(texts)
    if task == "classify":
        best = logits.softmax(-1).max(-1)
        assert [f["label"] for f in found] == [f"name{int(i)}" for i in best.indices]
        assert [f["probability"] for f in found] == pytest.approx(best.values.tolist(), abs=1e-5)
    elif task == "regress":
        assert found == pytest.approx(logits[:, 0].tolist(), abs=1e-4)
    else:
        words = [logits[row, start : len(ids[row])].argmax(-1) for row in range(2)]
        assert found == [[f"name{int(i)}" for i in row] for row in words]  # each word's one token

    assert main(["export", str(path), "--out", str(tmp_path / "exported")]) == 0
    config = json.loads((tmp_path / "exported" / "config.json").read_text())
    assert config["architectures"] == [type(theirs).__name__]
    assert list(config["id2label"].values()) == (
        ["score"] if task == "regress" else list(theirs.config.id2label.values())
    )
    again = type(theirs).from_pretrained(tmp_path / "exported").eval()
    with torch.no_grad():
        assert_close(again(input_ids=batch, attention_mask=(batch != 0).long()).logits, logits, tolerance=1e-5)
    tokenized = [
        transformers.AutoTokenizer.from_pretrained(folder)(texts)["input_ids"]
        for folder in (path, tmp_path / "exported")
    ]
    assert tokenized[0] == tokenized[1]  # the tokenizer as it came


def test_a_decoder_classifier_exports_to_onnx_and_ctranslate2_says_it_runs_decoders_for_their_next_tokens(
    tmp_path, capsys
):
    for extra in ("onnx", "onnxruntime", "ctranslate2"):
        pytest.importorskip(extra)
    from attnkit.apps.cli import main

    path = saved(decoder_task_model("llama", "sequence", 3).eval(), tmp_path / "theirs")
    write_word_tokenizer(path, start=True)
    assert main(["export", str(path), "--onnx", "--out", str(tmp_path / "onnx")]) == 0  # checked against attnkit
    assert "largest difference from attnkit" in capsys.readouterr().out
    assert main(["export", str(path), "--ct2", "--out", str(tmp_path / "ct2")]) == 2
    assert (
        capsys.readouterr()
        .err.strip()
        .endswith("CTranslate2 runs a decoder for its next tokens, not its states for a task's head")
    )
    assert not (tmp_path / "ct2").exists()


@pytest.mark.parametrize(("family", "task"), [("llama", "classify"), ("gpt2", "tag")])
def test_a_decoder_language_model_fine_tunes_for_a_task_and_exports_as_its_class(tmp_path, capsys, family, task):
    from attnkit.apps.cli import main
    from tests.conftest import write_conll, write_tsv

    torch.manual_seed(0)
    lm = tiny(family).eval()
    path = saved(lm, tmp_path / "lm")
    write_word_tokenizer(path, start=family != "gpt2")
    rng = torch.Generator().manual_seed(0)
    lengths = torch.randint(2, 9, (120,), generator=rng).tolist()
    sentences = [[f"w{int(i)}" for i in torch.randint(4, VOCAB, (n,), generator=rng)] for n in lengths]
    if task == "classify":  # the label: whether w10 is in the text
        rows = [("yes" if i % 2 else "no", " ".join(words + ["w10"] * (i % 2))) for i, words in enumerate(sentences)]
        data = write_tsv(tmp_path / "train.tsv", ("label", "text"), rows)
    else:  # each word's tag is its number modulo 3
        data = write_conll(tmp_path / "train.conll", [[(w, "ABC"[int(w[1:]) % 3]) for w in s] for s in sentences])
    out = tmp_path / "tuned"
    common = f"--train {data} --dev {data} --init {path} --out {out} --max-steps 40".split()
    # the classifier's embeddings frozen, so that they show where its decoder came from (base.initialize)
    frozen = ["--set", "train.freeze_embeddings=true"] if task == "classify" else []
    assert (
        main(
            [
                "train",
                "--task",
                task,
                *common,
                "--set",
                f"train.lr={3e-3 if task == 'classify' else 1e-2}",
                *frozen,
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    accuracy = float(re.search(r"^dev: accuracy ([0-9.]+)", capsys.readouterr().out, re.MULTILINE).group(1))
    assert accuracy >= 0.95  # learned from the decoder's states (a random start is near 0.5, or 0.33 for tags)
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "decoder" and config["model"]["preset"] == family

    import attnkit

    ours = attnkit.load(out, device="cpu")
    if frozen:
        assert torch.equal(ours.model.decoder.embedding.weight, lm.get_input_embeddings().weight)
    texts = ["w5 w17 w10 w9", "w8 w22"]
    found = ours.predict(texts)
    assert main(["export", str(out), "--out", str(tmp_path / "exported")]) == 0
    kind = "Sequence" if task == "classify" else "Token"
    name = {"llama": "Llama", "gpt2": "GPT2"}[family]
    theirs = getattr(transformers, f"{name}For{kind}Classification").from_pretrained(tmp_path / "exported").eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "exported")
    for text, prediction in zip(texts, found):
        with torch.no_grad():
            logits = theirs(**tokenizer(text, return_tensors="pt")).logits[0]
        if task == "classify":
            assert prediction["label"] == theirs.config.id2label[int(logits.argmax())]
            assert prediction["probability"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-5)
        else:
            assert prediction == [theirs.config.id2label[int(i)] for i in logits.argmax(-1)]  # a token per word


@pytest.mark.parametrize(
    ("task", "rows", "settings", "message"),
    [
        ("classify", ("label", "text"), ["--set", "task.pooling=pooler"], "a decoder's states pool as mean, max or"),
    ],
)
def test_what_a_decoder_does_not_read_for_a_task_is_one_line(tmp_path, capsys, task, rows, settings, message):
    from attnkit.apps.cli import main
    from tests.conftest import write_tsv

    path = saved(tiny("llama"), tmp_path / "lm")
    write_word_tokenizer(path, start=True)
    values = {"label": lambda i: str(i % 2), "text": lambda i: f"w{i + 5} w9", "text_a": lambda i: f"w{i + 5}",
              "text_b": lambda i: "w9"}  # fmt: skip
    data = write_tsv(tmp_path / "train.tsv", rows, [tuple(values[c](i) for c in rows) for i in range(8)])
    command = ["train", "--task", task, "--train", str(data), "--init", str(path), "--out", str(tmp_path / "out")]
    assert main([*command, *settings, "--max-steps", "1", "--device", "cpu"]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", ["pair", "regress"])
def test_a_decoder_reads_a_pair_as_its_tokenizer_frames_one_and_exports_as_its_class(tmp_path, capsys, task):
    import attnkit
    from attnkit.apps.cli import main
    from tests.conftest import write_tsv

    path = saved(tiny("llama"), tmp_path / "lm")
    write_word_tokenizer(path, start=True)
    rng = torch.Generator().manual_seed(0)
    rows = []
    for i in range(80):  # the label: whether the two texts share their first word
        a, b = (f"w{int(w)}" for w in torch.randint(5, 40, (2,), generator=rng))
        label = str(i % 2) if task == "pair" else str(2 * (i % 2) - 1)  # a regressor of mean 0: it exports
        rows.append((a + " w40", (a if i % 2 else b) + " w41", label))
    data = write_tsv(tmp_path / "train.tsv", ("text_a", "text_b", "label"), rows)
    out = tmp_path / "out"
    command = ["train", "--task", task, "--train", str(data), "--init", str(path), "--out", str(out)]
    assert main([*command, "--max-steps", "3", "--device", "cpu"]) == 0
    ours = attnkit.load(out, device="cpu")
    pair = ("w5 w40", "w5 w41")
    (item,) = ours.task.encode(ours.task.inputs([pair]), training=False)
    assert item["ids"] == [1, 5, 40, 1, 5, 41] and "segments" not in item  # <s> a <s> b, as Llama's tokenizer
    (found,) = ours.predict([pair])
    assert main(["export", str(out), "--out", str(tmp_path / "exported")]) == 0
    theirs = transformers.LlamaForSequenceClassification.from_pretrained(tmp_path / "exported").eval()
    with torch.no_grad():
        logits = theirs(input_ids=torch.tensor([item["ids"]])).logits[0]
    if task == "pair":
        assert found["label"] == theirs.config.id2label[int(logits.argmax())]
        assert found["probability"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-5)
    else:
        assert found == pytest.approx(float(logits[0]), abs=1e-4)
