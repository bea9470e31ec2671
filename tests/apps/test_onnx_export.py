"""`attnkit export --onnx`: each kind of model as ONNX graphs that onnxruntime runs with attnkit's outputs (within
1e-4 of their scale) on text the tokenizer.json it writes encodes; int8 graphs; the export's own check; the CLI."""

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from attnkit.apps import onnx_export
from attnkit.apps.cli import main
from attnkit.apps.onnx_export import export_onnx
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.training.corpus import pretrain
from tests import numerics
from tests.conftest import copy_pairs, corpus, pretrain_config, sentiment_rows, tagging_sentences, trained, trained_on

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")
TEXTS = ["a fine and moving film", "dull", "the plot is thin but the acting is great and the music fine"]


def run(folder: Path, graph: str, **inputs: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(str(folder / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)[0]


def encoded(folder: Path, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Ids and mask of `texts` as a user of the export makes them: tokenizer.json (which adds the special tokens
    the model reads) and onnx.json's padding id."""
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    rows = [e.ids for e in tokenizer.encode_batch(texts)]
    longest = max(map(len, rows))
    ids = np.full((len(rows), longest), json.loads((folder / "onnx.json").read_text())["pad_id"], dtype=np.int64)
    mask = np.zeros((len(rows), longest), dtype=np.int64)
    for i, row in enumerate(rows):
        ids[i, : len(row)], mask[i, : len(row)] = row, 1
    return ids, mask


def assert_close(found: np.ndarray, expected: torch.Tensor, real: np.ndarray | None = None) -> None:
    found_tensor = torch.from_numpy(found)
    if real is not None:
        found_tensor, expected = found_tensor[torch.from_numpy(real).bool()], expected[torch.from_numpy(real).bool()]
    numerics.assert_close(found_tensor, expected, tolerance=1e-4)


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return trained(
        tmp_path_factory.mktemp("onnx-classifier"), "classify", sentiment_rows(200, 1), ("label", "text"), 60
    )


def test_classifier_graph_gives_attnkits_logits_and_labels(classifier_dir, tmp_path):
    manifest = export_onnx(classifier_dir, tmp_path / "onnx")
    assert manifest["task"] == "classify" and manifest["int8"] is False
    assert manifest["max_difference"]["model"] <= 1e-4
    ids, mask = encoded(tmp_path / "onnx", TEXTS)
    logits = run(tmp_path / "onnx", "model", input_ids=ids, attention_mask=mask)
    pipeline = Pipeline.load(classifier_dir, device="cpu")
    with torch.no_grad():
        expected = pipeline.model(torch.from_numpy(ids), torch.from_numpy(mask).bool())
    assert_close(logits, expected)
    labels = [manifest["labels"][i] for i in logits.argmax(-1)]
    assert labels == [p["label"] for p in pipeline.predict(TEXTS)]


@pytest.mark.parametrize(
    "settings",
    [["model.preset=mpnet"], ["model.preset=electra", "model.embedding_dim=16"]],
    ids=["mpnet: learned and relative positions", "electra: narrower embeddings"],
)
def test_the_new_families_classifiers_export_to_onnx(sentiment_files, tmp_path, settings):
    model = trained_on(sentiment_files, tmp_path, "classify", 2, *settings)
    manifest = export_onnx(model, tmp_path / "onnx")
    assert manifest["max_difference"]["model"] <= 1e-4  # onnxruntime gives attnkit's logits on two batches


def test_int8_graph_multiplies_in_int8_and_keeps_the_labels(classifier_dir, tmp_path, caplog):
    export_onnx(classifier_dir, tmp_path / "f32")
    handlers = list(logging.getLogger().handlers)
    manifest = export_onnx(classifier_dir, tmp_path / "int8", int8=True)
    notes = [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]
    assert notes == []  # not onnxruntime's "consider pre-processing" note, nor the exporter's
    assert logging.getLogger().handlers == handlers
    assert manifest["int8"] is True and 0 < manifest["max_difference"]["model"] < 0.1
    operators = {node.op_type for node in onnx.load(str(tmp_path / "int8" / "model.onnx")).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= operators  # the matrix products run in int8
    assert "MatMulInteger" not in {node.op_type for node in onnx.load(str(tmp_path / "f32" / "model.onnx")).graph.node}
    texts = [text for _, text in sentiment_rows(40, 7)]
    ids, mask = encoded(tmp_path / "f32", texts)
    full = run(tmp_path / "f32", "model", input_ids=ids, attention_mask=mask).argmax(-1)
    quantized = run(tmp_path / "int8", "model", input_ids=ids, attention_mask=mask).argmax(-1)
    assert (full == quantized).mean() >= 0.9


def test_tagger_graph_with_learned_positions_gives_attnkits_logits_per_token(tmp_path):
    learned = ("model.positions=learned", "model.max_positions=32", "data.max_length=32")
    model = trained(tmp_path, "tag", tagging_sentences(100, 1), (), 20, *learned)
    manifest = export_onnx(model, tmp_path / "onnx")
    assert manifest["task"] == "tag" and manifest["tags"]
    ids, mask = encoded(tmp_path / "onnx", ["the cat sat", "a dog ran to the red house"])
    with torch.no_grad():
        expected = Pipeline.load(model, device="cpu").model(torch.from_numpy(ids), torch.from_numpy(mask).bool())
    assert_close(run(tmp_path / "onnx", "model", input_ids=ids, attention_mask=mask), expected, mask)


def run_all(folder: Path, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
    session = onnxruntime.InferenceSession(str(folder / f"{graph}.onnx"), providers=["CPUExecutionProvider"])
    return session.run(None, inputs)


def empty_cache(manifest: dict, batch: int) -> dict[str, np.ndarray]:
    """The past of a first step: no keys or values yet, in the shape onnx.json gives."""
    layers, heads, head_dim = manifest["cache"]["layers"], manifest["cache"]["heads"], manifest["cache"]["head_dim"]
    empty = np.zeros((layers, batch, heads, 0, head_dim), dtype=np.float32)
    return {"past_keys": empty, "past_values": empty}


def test_seq2seq_graphs_decode_greedily_with_their_cache_as_attnkit_does(tmp_path):
    model = trained(tmp_path, "seq2seq", copy_pairs(200, 1), ("source", "target"), 30)
    manifest = export_onnx(model, tmp_path / "onnx")
    assert set(manifest["graphs"]) == {"encoder", "decoder"}
    folder, sources = tmp_path / "onnx", [source for source, _ in copy_pairs(3, 9)]
    ids, mask = encoded(folder, sources)
    assert all(row[length - 1] == manifest["eos_id"] for row, length in zip(ids, mask.sum(1)))  # text </s>
    memory, cross_keys, cross_values = run_all(folder, "encoder", input_ids=ids, attention_mask=mask)
    pipeline = Pipeline.load(model, device="cpu")
    with torch.no_grad():
        assert_close(memory, pipeline.model.encode(torch.from_numpy(ids), torch.from_numpy(mask).bool()), mask)
    # greedy decoding, one new token per step with the cache: the same tokens attnkit's greedy search chooses
    target = np.full((len(ids), 1), manifest["decoder_start_id"], dtype=np.int64)
    cache = empty_cache(manifest, len(ids))
    for _ in range(12):
        logits, past_keys, past_values = run_all(
            folder,
            "decoder",
            decoder_input_ids=target[:, -1:],
            encoder_attention_mask=mask,
            cross_keys=cross_keys,
            cross_values=cross_values,
            **cache,
        )
        cache = {"past_keys": past_keys, "past_values": past_values}
        target = np.concatenate([target, logits[:, -1].argmax(-1)[:, None]], 1)
    assert past_keys.shape[3] == 12
    with torch.no_grad():  # the last step's logits, as attnkit's decoder gives them for the whole prefix
        expected = pipeline.model.decode(
            torch.from_numpy(target[:, :-1]), torch.from_numpy(memory), torch.from_numpy(mask).bool()
        )
    assert_close(logits[:, -1], expected[:, -1])
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    outputs = [
        tokenizer.decode(list(row[1 : list(row).index(manifest["eos_id"])] if manifest["eos_id"] in row else row[1:]))
        for row in target
    ]
    assert outputs == pipeline.with_decoding(1).predict(sources)
    # attention multiplies by the keys' transpose directly, which onnxruntime fuses into its product: a Transpose
    # into anything else (scaled_dot_product_attention's decomposition scales it) copies the whole cache each step
    graph = onnx.load(folder / "decoder.onnx").graph
    consumers = {name: node.op_type for node in graph.node for name in node.input}
    key_transposes = [node for node in graph.node if node.op_type == "Transpose" and last_two_swapped(node)]
    assert len(key_transposes) == 2 * manifest["cache"]["layers"]  # self- and cross-attention in each layer
    assert {consumers[node.output[0]] for node in key_transposes} == {"MatMul"}


def last_two_swapped(node) -> bool:
    (perm,) = [list(attribute.ints) for attribute in node.attribute if attribute.name == "perm"]
    return perm[-2:] == [len(perm) - 1, len(perm) - 2]


@pytest.mark.parametrize("arch", ["encoder", "decoder"])
def test_pretrained_models_export_their_hidden_states_or_next_token_logits(tmp_path, arch):
    pretrain(pretrain_config(corpus(tmp_path / "text"), tmp_path / "model", arch, "train.max_steps=5"), quiet=True)
    manifest = export_onnx(tmp_path / "model", tmp_path / "onnx")
    ids, mask = encoded(tmp_path / "onnx", ["the cat sat on the mat", "the dog"])
    cache = empty_cache(manifest, len(ids)) if arch == "decoder" else {}
    output, *present = run_all(tmp_path / "onnx", "model", input_ids=ids, attention_mask=mask, **cache)
    model = Pipeline.load(tmp_path / "model", device="cpu").model
    with torch.no_grad():
        inputs = torch.from_numpy(ids), torch.from_numpy(mask).bool()
        expected = model(*inputs) if arch == "decoder" else model.encoder(*inputs)
    assert manifest["graphs"]["model"]["output"].startswith("logits" if arch == "decoder" else "last_hidden_state")
    assert_close(output, expected, mask)
    if arch == "decoder":  # one more token through the cache: the logits of the whole sequence's last position
        longer, longer_mask = np.concatenate([ids, ids[:, :1]], 1), np.concatenate([mask, mask[:, :1]], 1)
        step = run_all(tmp_path / "onnx", "model", input_ids=ids[:, :1], attention_mask=longer_mask,
                       past_keys=present[0], past_values=present[1])  # fmt: skip
        with torch.no_grad():
            whole = model(torch.from_numpy(longer), torch.from_numpy(longer_mask).bool())
        assert_close(step[0][:, -1], whole[:, -1])


def test_a_graph_that_differs_from_attnkit_is_refused_and_nothing_is_written(classifier_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(onnx_export, "TOLERANCE", 0.0)  # float32 in another order always differs a little
    with pytest.raises(AttnkitError, match=r"model.onnx differs from attnkit by .* nothing was written"):
        export_onnx(classifier_dir, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".onnx")]  # no temporary directory left


def test_cli_exports_replaces_its_own_export_and_refuses_other_folders(classifier_dir, tmp_path, capsys):
    out = tmp_path / "onnx"
    assert main(["export", str(classifier_dir), "--onnx", "--int8", "--out", str(out)]) == 0
    assert main(["export", str(classifier_dir), "--onnx", "--int8", "--out", str(out)]) == 2  # without --overwrite
    assert f"attnkit: error: {out}: already exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert main(["export", str(classifier_dir), "--onnx", "--int8", "--out", str(out), "--overwrite"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out} (model.onnx, tokenizer.json, onnx.json); largest difference from float32")
    assert sorted(p.name for p in out.iterdir()) == ["model.onnx", "onnx.json", "tokenizer.json"]
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    assert main(["export", str(classifier_dir), "--onnx", "--out", str(other), "--overwrite"]) == 2
    assert "refusing to overwrite it" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep me"
    for kind in (["--onnx"], ["--ct2"], []):  # the checkpoint itself as --out: never replaced by its export
        assert main(["export", str(classifier_dir), *kind, "--out", str(classifier_dir), "--overwrite"]) == 2
        assert f"{classifier_dir}: is the model to export" in capsys.readouterr().err
    assert (classifier_dir / "trainer_state").is_dir()
    assert main(["export", str(classifier_dir), "--int8", "--out", str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (
        "attnkit: error: --int8 quantizes an ONNX or CTranslate2 export: add --onnx or --ct2 (a Hugging Face "
        "directory stays float32)"
    )


def test_an_exporter_failure_is_one_line_and_nothing_is_written(classifier_dir, tmp_path, monkeypatch):
    def fails(*args, **kwargs):
        raise RuntimeError("Unsupported: aten::mystery_op\n  (a long trace follows)")

    monkeypatch.setattr(torch.onnx, "export", fails)
    with pytest.raises(AttnkitError) as raised:
        export_onnx(classifier_dir, tmp_path / "onnx")
    assert (
        str(raised.value) == f"{classifier_dir}: torch.onnx could not export model.onnx: Unsupported: aten::mystery_op"
    )
    assert not (tmp_path / "onnx").exists()


def test_a_llama_with_grouped_heads_decodes_greedily_with_its_cache_as_attnkit_does(tmp_path):
    from attnkit.nn.decoding import generate
    from tests.ggufs import tiny_llama, write_gguf

    gguf = write_gguf(tmp_path / "llama.gguf", tiny_llama(num_key_value_heads=1), "gpt2", quantization="F32")
    manifest = export_onnx(gguf, tmp_path / "onnx")
    assert manifest["cache"]["heads"] == 1  # the key/value heads only: the cache of multi-query attention
    model = Pipeline.load(gguf, device="cpu").model
    prompt = torch.randint(3, 320, (2, 7), generator=torch.Generator().manual_seed(3))
    ids, mask = prompt.numpy(), np.ones((2, 7), dtype=np.int64)
    cache, chosen = empty_cache(manifest, 2), []
    for _ in range(10):
        logits, past_keys, past_values = run_all(
            tmp_path / "onnx", "model", input_ids=ids, attention_mask=mask, **cache
        )
        cache = {"past_keys": past_keys, "past_values": past_values}
        ids = logits[:, -1].argmax(-1)[:, None]
        mask = np.ones((2, mask.shape[1] + 1), dtype=np.int64)
        chosen.append(ids[:, 0].tolist())
    assert [list(row) for row in zip(*chosen)] == generate(model, prompt, eos_id=-1, max_new_tokens=10)
