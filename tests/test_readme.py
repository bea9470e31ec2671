"""The README's sequence of commands works as written: train, evaluate, predict, pretrain with a preset, fine-tune,
export (Hugging Face, ONNX and CTranslate2), and transformers predicts what attnkit predicts from the exported
directory."""

import io
import re
import shlex
from pathlib import Path

import pytest
import torch

from attnkit.apps.cli import main
from attnkit.inference.pipeline import Pipeline
from tests.conftest import sentiment_rows, write_tsv

ROOT = Path(__file__).parents[1]
FAST_MODEL = ["model.dim=32", "model.num_heads=2", "model.ff_dim=64", "model.num_layers=1", "tokenizer.vocab_size=200"]
FAST_TRAIN = ["train.max_steps=20", "train.lr=3e-3"]


def readme_commands() -> list[str]:
    """The `attnkit ...` lines of the README's Use block, without their comments."""
    block = (ROOT / "README.md").read_text().split("## Use", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [re.sub(r"\s+#.*$", "", line).strip() for line in block.splitlines() if line.startswith("attnkit ")]


def test_the_readme_sequence_runs_as_written(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    monkeypatch.chdir(tmp_path)
    write_tsv(Path("reviews.tsv"), ("label", "text"), sentiment_rows(200, 1))
    write_tsv(Path("dev.tsv"), ("label", "text"), sentiment_rows(40, 2))
    write_tsv(Path("test.tsv"), ("label", "text"), sentiment_rows(40, 3))
    Path("new_reviews.txt").write_text("happy red small\n\nsad blue\n")
    Path("corpus").mkdir()
    Path("corpus/a.txt").write_text("".join(text + "\n" for _, text in sentiment_rows(300, 4)))
    ran = []
    for line in readme_commands():
        words = shlex.split(line)[1:]
        if words[0] in ("demo", "serve") or "run.yaml" in line:  # serve runs until stopped: tests/apps/test_serve.py
            continue
        if "<" in words:
            stdin = words.index("<")
            monkeypatch.setattr("sys.stdin", io.StringIO(Path(words[stdin + 1]).read_text()))
            words = words[:stdin]
        if words[0] in ("train", "pretrain"):
            fast = FAST_TRAIN + ([] if "--init" in words else FAST_MODEL)
            words += [item for setting in fast for item in ("--set", setting)]
        assert main(words) == 0, line
        ran.append(words[0])
    expected = ["train", "evaluate", "evaluate", "predict", "pretrain", "pretrain", "generate", "train", "export"]
    assert ran == [*expected, "export", "export", "predict", "info", "attention"]
    assert Path("runs/attention/attention.html").is_file()
    assert Path("runs/reviews-report/report.html").is_file() and Path("runs/tuned-hf/README.md").is_file()
    assert Path("runs/reviews-onnx/model.onnx").is_file()
    assert Path("runs/reviews-ct2/ctranslate2/model.bin").is_file()
    texts = [text for _, text in sentiment_rows(20, 5)]
    ours = [p["label"] for p in Pipeline.load("runs/tuned").predict(texts)]
    tokenizer = transformers.AutoTokenizer.from_pretrained("runs/tuned-hf")
    model = transformers.AutoModelForSequenceClassification.from_pretrained("runs/tuned-hf").eval()
    with torch.no_grad():
        logits = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits
    assert [model.config.id2label[int(i)] for i in logits.argmax(-1)] == ours
