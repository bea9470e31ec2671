"""Malformed variants of every other thing a user hands attnkit: run configs, trained checkpoints and their
tokenizer and trainer state, Hugging Face directories, command-line flags and HTTP requests. A file or flag is
either accepted or refused with exit code 2 and one line naming it, never a traceback and never a partial output;
a request gets its 4xx with a one-line detail, never a 500, and the server goes on answering."""

import copy
import dataclasses
import json
import random
import re
import shutil
import typing
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from fastapi.testclient import TestClient
from safetensors.torch import load as tensors_from_bytes
from safetensors.torch import save as tensors_to_bytes

from attnkit import RunConfig
from attnkit.apps.cli import main
from attnkit.apps.limits import Limits
from attnkit.apps.serve import create_app
from attnkit.config import TokenizerConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.inference.pipeline import Pipeline
from tests.conftest import SETS, TINY, sentiment_rows, write_tsv

transformers = pytest.importorskip("transformers")

Mutation = Callable[[bytes, random.Random], bytes]


def _junk(draw: random.Random, size: int = 300) -> bytes:
    return bytes(draw.randrange(256) for _ in range(size))


BYTE_MUTATIONS: dict[str, Mutation] = {
    "truncated": lambda data, draw: data[: draw.randrange(1, max(len(data), 2))],
    "empty": lambda data, draw: b"",
    "binary junk": lambda data, draw: _junk(draw),
    "invalid UTF-8": lambda data, draw: data[: len(data) // 2] + b"\xff\xfe\xc3" + data[len(data) // 2 :],
    "NUL byte": lambda data, draw: data[:5] + b"\x00" + data[5:],
    "junk appended": lambda data, draw: data + _junk(draw, 100),
    "BOM": lambda data, draw: b"\xef\xbb\xbf" + data,
}


def run_cli(args: list, capsys) -> tuple[int, str]:
    try:
        code = main([str(a) for a in args])
    except SystemExit as exit:  # argparse's own refusals
        code = exit.code
    return code, capsys.readouterr().err


def assert_accepted_or_refused(code: int, err: str, names: str, before: set[Path], folder: Path) -> None:
    """Exit code 0, or 2 with one line naming `names` and no file left behind that was not there before."""
    assert code in (0, 2), err[-3000:]
    assert "Traceback" not in err, err[-3000:]
    if code == 2:
        lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
        assert len(lines) == 1 and lines[0].startswith("attnkit: error: "), err[-3000:]
        assert names in lines[0], lines[0]
        assert set(folder.rglob("*")) == before, sorted(set(folder.rglob("*")) - before)


# --- run configs: wrong types, out-of-range values and broken YAML for every setting -----------------------------

BASE = {
    "task": {"name": "classify"},
    "data": {"train": "train.tsv", "dev": "dev.tsv"},
    "out": "out",
    **{section: {} for section in ("tokenizer", "model", "train")},
}
for setting in [*TINY, "train.max_steps=2", "train.patience=null", "train.device=cpu"]:
    key, value = setting.split("=")
    section, name = key.split(".")
    BASE[section][name] = yaml.safe_load(value)

SECTIONS = {name: kind for name, kind in typing.get_type_hints(RunConfig).items() if dataclasses.is_dataclass(kind)}
SETTINGS = [(section, field.name) for section, kind in SECTIONS.items() for field in dataclasses.fields(kind)]
SETTINGS.append(("out", None))
WRONG_VALUES = ["abc", [1, 2], {"a": 1}, -7, 0, 1e300, float("nan"), True, None, "", "../../../etc"]
VALUE_CASES = [
    (section, name, value)
    for section, name in SETTINGS
    for value in random.Random(f"{section}.{name}").sample(WRONG_VALUES, 3)
]
YAML_MUTATIONS: dict[str, Mutation] = {
    **BYTE_MUTATIONS,
    "unbalanced bracket": lambda data, draw: data.replace(b"{", b"[", 1),
    "tab indentation": lambda data, draw: data.replace(b"  ", b"\t"),
    "a list, not a mapping": lambda data, draw: b"- " + data.replace(b"\n", b"\n  "),
    "a misspelt setting": lambda data, draw: data + b"train:\n  learning_rate: 0.1\n",
    "a duplicated section": lambda data, draw: data + b"model:\n  dim: 64\n",
}


@pytest.fixture
def run_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)  # relative paths in a config land here, and only here
    write_tsv(tmp_path / "train.tsv", ("label", "text"), sentiment_rows(30, 1))
    write_tsv(tmp_path / "dev.tsv", ("label", "text"), sentiment_rows(10, 2))
    return tmp_path


def _yaml(values: dict) -> bytes:
    return yaml.safe_dump(values, sort_keys=False, default_flow_style=None).encode()


@pytest.mark.parametrize(("section", "name", "value"), VALUE_CASES, ids=lambda v: str(v)[:20])
def test_every_setting_given_odd_values_trains_or_is_refused_in_one_line(run_folder, capsys, section, name, value):
    values = copy.deepcopy(BASE)
    if name is None:
        values[section] = value
    else:
        values[section][name] = value
    config = run_folder / "run.yaml"
    config.write_bytes(_yaml(values))
    before = set(run_folder.rglob("*"))
    code, err = run_cli(["train", config], capsys)
    assert_accepted_or_refused(code, err, "", before, run_folder)
    if code == 2:  # names the config file and setting, or the file or device the setting names
        named = ["run.yaml", str(name or section)] + ([value] if isinstance(value, str) and value else [])
        assert any(word in err for word in named), err
        unlocated = f"run.yaml: {section}.{name}" in err or f"run.yaml: {section}:" in err
        assert not unlocated, f"names the setting but not its line: {err}"


@pytest.mark.parametrize(("mutation", "seed"), [(m, s) for m in YAML_MUTATIONS for s in range(2)])
def test_a_broken_config_file_is_refused_in_one_line_naming_it(run_folder, capsys, mutation, seed):
    config = run_folder / "run.yaml"
    config.write_bytes(YAML_MUTATIONS[mutation](_yaml(BASE), random.Random(f"{mutation}{seed}")))
    before = set(run_folder.rglob("*"))
    code, err = run_cli(["train", config], capsys)
    assert_accepted_or_refused(code, err, "run.yaml", before, run_folder)


# --- trained checkpoints: their config, weights, tokenizer and trainer state ---------------------------------------

FLAGS = [*SETS, "--set", "train.patience=null"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny classifier trained for 2 steps, with its trainer state (for --resume) and its data."""
    folder = tmp_path_factory.mktemp("checkpoint")
    write_tsv(folder / "train.tsv", ("label", "text"), sentiment_rows(30, 1))
    write_tsv(folder / "dev.tsv", ("label", "text"), sentiment_rows(10, 2))
    args = ["train", "--task", "classify", "--train", folder / "train.tsv", "--dev", folder / "dev.tsv"]
    assert (
        main([str(a) for a in [*args, "--out", folder / "model", "--max-steps", "2", "--device", "cpu", *FLAGS]]) == 0
    )
    return folder


def _json_mutations() -> dict[str, Mutation]:
    def retyped(data: bytes, draw: random.Random) -> bytes:
        """One value somewhere in the JSON replaced by a value of another type."""
        document = json.loads(data)
        node = document
        while True:
            keys = list(node) if isinstance(node, dict) else list(range(len(node)))
            if not keys:
                return data
            key = draw.choice(keys)
            if not isinstance(node[key], (dict, list)) or not node[key] or draw.random() < 0.3:
                break
            node = node[key]
        node[key] = draw.choice(["abc", -1, [], {}, None, 1e30, True])
        return json.dumps(document).encode()

    return {"a value of another type": retyped, "not an object": lambda data, draw: b"[1, 2, 3]"}


def _safetensors_mutations() -> dict[str, Mutation]:
    def reshaped(data: bytes, draw: random.Random) -> bytes:
        tensors = load_file_bytes(data)
        name = draw.choice(sorted(tensors))
        tensors[name] = torch.zeros([size + 1 for size in tensors[name].shape] or [2])
        return save_file_bytes(tensors)

    def renamed(data: bytes, draw: random.Random) -> bytes:
        tensors = load_file_bytes(data)
        name = draw.choice(sorted(tensors))
        tensors[name + ".renamed"] = tensors.pop(name)
        return save_file_bytes(tensors)

    def poisoned(data: bytes, draw: random.Random) -> bytes:
        tensors = load_file_bytes(data)
        # not BERT's pooler, which only a classifier fine-tuned from the checkpoint reads
        used = sorted(name for name, t in tensors.items() if t.is_floating_point() and "pooler" not in name)
        name = draw.choice(used)
        tensors[name] = torch.full_like(tensors[name], float("nan"))
        return save_file_bytes(tensors)

    return {"a tensor of the wrong shape": reshaped, "a tensor missing": renamed, "NaN weights": poisoned}


def load_file_bytes(data: bytes) -> dict[str, torch.Tensor]:
    return dict(tensors_from_bytes(data))  # safetensors: a header and raw tensor bytes, nothing unpickled


def save_file_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return tensors_to_bytes(tensors)


CHECKPOINT_FILES = {
    "model/config.json": {**BYTE_MUTATIONS, **_json_mutations()},
    "model/model.safetensors": {**BYTE_MUTATIONS, **_safetensors_mutations()},
    "model/tokenizer.json": {**BYTE_MUTATIONS, **_json_mutations()},
    "model/trainer_state/state.json": {**BYTE_MUTATIONS, **_json_mutations()},
    "model/trainer_state/optimizer.safetensors": {**BYTE_MUTATIONS, **_safetensors_mutations()},
}
CHECKPOINT_CASES = [
    (file, mutation, seed)
    for file, mutations in CHECKPOINT_FILES.items()
    for mutation in mutations
    for seed in range(2)
]
CHECKPOINT_CASES += [(file, "deleted", 0) for file in CHECKPOINT_FILES]


@pytest.mark.parametrize(("file", "mutation", "seed"), CHECKPOINT_CASES, ids=lambda v: str(v).replace(" ", "-"))
def test_a_damaged_checkpoint_is_read_or_refused_in_one_line_naming_the_file(
    tmp_path, capsys, checkpoint, file, mutation, seed
):
    folder = tmp_path / "copy"
    shutil.copytree(checkpoint, folder)
    damaged = folder / file
    if mutation == "deleted":
        damaged.unlink()
    else:
        damaged.write_bytes(
            CHECKPOINT_FILES[file][mutation](damaged.read_bytes(), random.Random(f"{file}{mutation}{seed}"))
        )
    before = set(folder.rglob("*"))
    if "trainer_state" in file:  # read by --resume
        args = ["train", "--task", "classify", "--train", folder / "train.tsv", "--dev", folder / "dev.tsv"]
        command = [*args, "--out", folder / "model", "--max-steps", "3", "--device", "cpu", "--resume", *FLAGS]
    else:
        command = ["evaluate", folder / "model", "--data", folder / "dev.tsv", "--device", "cpu"]
    code, err = run_cli(command, capsys)
    if "trainer_state" in file and code == 0:
        return  # the run went on from a state it could read (a BOM, a value it does not use)
    assert_accepted_or_refused(code, err, Path(file).name if mutation != "deleted" else "", before, folder)
    if mutation == "NaN weights":
        assert code == 2 and "holds NaN or infinity" in err, err


# --- Hugging Face directories ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hf_directories(tmp_path_factory) -> dict[str, Path]:
    """Tiny random models as save_pretrained writes them, each with its family's usual tokenizer files: BERT,
    DistilBERT and ELECTRA with a WordPiece vocab.txt, GPT-2 and RoBERTa with a byte-level vocab.json and
    merges.txt, T5, XLM-R and MPNet with a tokenizer.json."""
    from tokenizers import BertWordPieceTokenizer, ByteLevelBPETokenizer

    folder = tmp_path_factory.mktemp("hf")
    text = ["the cat sat on the mat", "a dog sat on a log"] * 5
    torch.manual_seed(0)
    bert = BertWordPieceTokenizer()
    bert.train_from_iterator(text, vocab_size=40, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    gpt2 = ByteLevelBPETokenizer()
    gpt2.train_from_iterator(text, vocab_size=270, special_tokens=["<|endoftext|>"])
    t5 = Tokenizer.train(text, TokenizerConfig(kind="unigram", vocab_size=40))
    fairseq = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    roberta = ByteLevelBPETokenizer()
    roberta.train_from_iterator(text, vocab_size=270, special_tokens=fairseq)
    mpnet = Tokenizer.train(text, TokenizerConfig(kind="wordpiece", vocab_size=40), fairseq)
    t = transformers
    small = {"num_hidden_layers": 1, "num_attention_heads": 2}
    encoder = {"vocab_size": bert.get_vocab_size(), "hidden_size": 16, "intermediate_size": 20, **small}
    models = {
        "roberta": (
            t.RobertaModel(t.RobertaConfig(**{**encoder, "vocab_size": roberta.get_vocab_size()}, type_vocab_size=1)),
            roberta.save_model,
        ),
        "xlm-roberta": (
            t.XLMRobertaModel(t.XLMRobertaConfig(**{**encoder, "vocab_size": mpnet.vocab_size}, type_vocab_size=1)),
            lambda path: mpnet.save(Path(path) / "tokenizer.json"),
        ),
        "distilbert": (
            t.DistilBertModel(
                t.DistilBertConfig(vocab_size=bert.get_vocab_size(), dim=16, hidden_dim=20, n_layers=1, n_heads=2)
            ),
            bert.save_model,
        ),
        "mpnet": (
            t.MPNetModel(t.MPNetConfig(**{**encoder, "vocab_size": mpnet.vocab_size})),
            lambda path: mpnet.save(Path(path) / "tokenizer.json"),
        ),
        "electra": (t.ElectraModel(t.ElectraConfig(**encoder, embedding_size=8)), bert.save_model),
        "bert": (
            t.BertModel(t.BertConfig(vocab_size=bert.get_vocab_size(), hidden_size=16, intermediate_size=20, **small)),
            bert.save_model,
        ),
        "gpt2": (
            t.GPT2LMHeadModel(t.GPT2Config(vocab_size=gpt2.get_vocab_size(), n_embd=16, n_layer=1, n_head=2)),
            gpt2.save_model,
        ),
        "t5": (
            t.T5ForConditionalGeneration(
                t.T5Config(vocab_size=t5.vocab_size, d_model=16, d_kv=8, d_ff=20, num_layers=1, num_heads=2)
            ),
            lambda path: t5.save(Path(path) / "tokenizer.json"),
        ),
    }
    for family, (model, save_tokenizer) in models.items():
        model.save_pretrained(folder / family)
        save_tokenizer(str(folder / family))
    return {family: folder / family for family in models}


TOKENIZER_FILES = {
    "bert": ["vocab.txt"],
    "gpt2": ["vocab.json", "merges.txt"],
    "t5": ["tokenizer.json"],
    "roberta": ["vocab.json", "merges.txt"],
    "xlm-roberta": ["tokenizer.json"],
    "distilbert": ["vocab.txt"],
    "mpnet": ["tokenizer.json"],
    "electra": ["vocab.txt"],
}
HF_CASES = [
    (family, file, mutation, seed)
    for family, tokenizer in TOKENIZER_FILES.items()
    for file, mutations in {
        "config.json": {**BYTE_MUTATIONS, **_json_mutations()},
        "model.safetensors": {**BYTE_MUTATIONS, **_safetensors_mutations()},
        **{name: BYTE_MUTATIONS for name in tokenizer},
    }.items()
    for mutation in [*mutations, "deleted"]
    for seed in (range(2) if mutation != "deleted" else [0])
]
HF_MUTATIONS = {**BYTE_MUTATIONS, **_json_mutations(), **_safetensors_mutations()}


@pytest.mark.parametrize(("family", "file", "mutation", "seed"), HF_CASES, ids=lambda v: str(v).replace(" ", "-"))
def test_a_damaged_hugging_face_directory_is_read_or_refused_in_one_line(
    tmp_path, capsys, hf_directories, family, file, mutation, seed
):
    folder = tmp_path / family
    shutil.copytree(hf_directories[family], folder)
    damaged = folder / file
    if mutation == "deleted":
        damaged.unlink()
    else:
        damaged.write_bytes(HF_MUTATIONS[mutation](damaged.read_bytes(), random.Random(f"{file}{mutation}{seed}")))
    before = set(tmp_path.rglob("*"))
    code, err = run_cli(["export", folder, "--out", tmp_path / "exported"], capsys)
    assert_accepted_or_refused(code, err, family, before, tmp_path)
    if mutation == "NaN weights":
        assert code == 2 and "holds NaN or infinity" in err, err


# --- command-line flags ----------------------------------------------------------------------------------------

FLAG_CASES = [
    ["train", "--epochs", "many"],
    ["train", "--max-steps", "-3"],
    ["train", "--max-minutes", "nan"],
    ["train", "--max-minutes", "0"],
    ["train", "--set", "train.lr"],
    ["train", "--set", "train.lr=fast"],
    ["train", "--set", "nosuch.key=1"],
    ["train", "--set", "train.no_such_key=1"],
    ["train", "--set", "=1"],
    ["train", "--set", "model=1"],
    ["train", "--set", "model.dim=[1, 2"],
    ["train", "--task", "summarize"],
    ["train", "--device", "tpu"],
    ["train", "--device", "cuda:-1"],
    ["train", "--device", ""],
    ["train", "--train", "missing.tsv"],
    ["train", "--train", "."],
    ["train", "--init", "missing-dir"],
    ["train", "--init", "train.tsv"],
    ["train", "--bogus"],
    ["train", "--out"],
    ["train", "--resume", "--overwrite"],
    ["train", "no-such-config.yaml"],
    ["train", "train.tsv"],
    ["pretrain", "--text", "missing-folder"],
    ["pretrain", "--arch", "transformer"],
    ["evaluate", "missing-model", "--data", "dev.tsv"],
    ["evaluate", ".", "--data", "dev.tsv"],
    ["predict", "missing-model"],
    ["export", "missing-model", "--out", "exported"],
    ["export", "train.tsv", "--out", "exported"],
    ["serve", "missing-model"],
    ["serve", "missing-model", "--port", "not-a-port"],
    ["serve", "missing-model", "--max-batch", "0"],
    ["generate", "missing-model", "--prompt", "a"],
    ["generate", "missing-model", "--temperature", "hot"],
    ["attention", "missing-model", "a text", "--out", "page"],
    ["average", "missing-a", "missing-b", "--out", "mean"],
    ["average", "missing-a", "--out", "mean"],
    ["info"],
    ["info", "missing-model", "--device", "gpu"],
    ["nosuchcommand"],
    [],
]


@pytest.mark.parametrize("args", FLAG_CASES, ids=lambda args: " ".join(args) or "nothing")
def test_a_wrong_flag_is_refused_in_one_line(run_folder, capsys, args):
    if args[:1] == ["train"] and "--train" not in args and not any(a.endswith((".yaml", ".tsv")) for a in args[1:2]):
        args = [*args, "--train", "train.tsv"]  # so that the flag under test is the one thing wrong
    before = set(run_folder.rglob("*"))
    code, err = run_cli(args, capsys)
    assert code == 2, err[-3000:]
    assert_accepted_or_refused(code, err, "", before, run_folder)


# --- HTTP requests ---------------------------------------------------------------------------------------------


def _random_json(draw: random.Random, depth: int = 0) -> object:
    kinds = ["string", "number", "null", "bool"] + (["list", "object"] if depth < 3 else [])
    kind = draw.choice(kinds)
    if kind == "string":
        return "".join(draw.choice('ab \u00e9\u4e2d\U0001f600\x00\n"\\') for _ in range(draw.randrange(0, 40)))
    if kind == "number":
        return draw.choice([0, -1, 10**20, 1.5, -0.0, 2**63])
    if kind == "null":
        return None
    if kind == "bool":
        return draw.random() < 0.5
    if kind == "list":
        return [_random_json(draw, depth + 1) for _ in range(draw.randrange(0, 5))]
    keys = ["text", "texts", "normalize", "max_new_tokens", "beam_size", "temperature", "top_k", "top_p", "seed", "x"]
    return {draw.choice(keys): _random_json(draw, depth + 1) for _ in range(draw.randrange(0, 4))}


def request_cases(count: int) -> list[tuple[str, str, bytes, str]]:
    """(method, path, body, content type): random JSON, broken JSON and bytes, to every endpoint."""
    draw = random.Random(16)
    endpoints = [("POST", "/predict"), ("POST", "/generate"), ("POST", "/encode"), ("GET", "/attention")]
    cases = []
    for i in range(count):
        method, path = draw.choice(endpoints)
        kind = i % 4
        if kind == 0:
            body = json.dumps(_random_json(draw)).encode()
        elif kind == 1:
            body = json.dumps({"text": _random_json(draw)} if draw.random() < 0.5 else {"texts": _random_json(draw)})
            body = body.encode()
        elif kind == 2:
            body = json.dumps(_random_json(draw)).encode()[: draw.randrange(0, 30)]
        else:
            body = bytes(draw.randrange(256) for _ in range(draw.randrange(0, 200)))
        content_type = draw.choice(["application/json", "text/plain", ""])
        if method == "GET":
            path += "?" + draw.choice(["", "text=", "text=a&layer=99", "text=a&head=-1", "layer=x", "text=%ff"])
        cases.append((method, path, body, content_type))
    return cases


@pytest.fixture(scope="module")
def client(checkpoint):

    app = create_app(Pipeline.load(checkpoint / "model", device="cpu"), Limits(max_text_chars=100, max_texts=5))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize(("method", "path", "body", "content_type"), request_cases(120))
def test_a_malformed_request_gets_a_4xx_with_a_one_line_detail(client, method, path, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    response = client.request(method, path, content=body, headers=headers)
    assert response.status_code < 500, response.text[:2000]
    if response.status_code >= 400 and "json" in response.headers.get("content-type", ""):
        detail = response.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail, detail
    assert client.post("/predict", json={"text": "happy red"}).status_code == 200


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"labels": ["bad", "bad"]}, r"task_state.labels: expected a list of distinct names, got \['bad', 'bad'\]"),
        ({"labels": [1, 2]}, r"task_state.labels: expected a list of distinct names, got \[1, 2\]"),
        ({"labels": "ab"}, r"task_state.labels: expected a list of distinct names, got 'ab'"),
        ([], r"task_state: expected a mapping, got \[\]"),
    ],
)
def test_a_checkpoints_label_names_are_checked(tmp_path, capsys, checkpoint, state, message):
    folder = tmp_path / "copy"
    shutil.copytree(checkpoint, folder)
    config = folder / "model" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "task_state": state}))
    code, err = run_cli(["evaluate", folder / "model", "--data", folder / "dev.tsv", "--device", "cpu"], capsys)
    assert code == 2 and re.search(f"config.json: {message}", err), err
