"""The pretraining objectives on fixed inputs: BERT's masking rates, BART's span lengths, the causal shift."""

import numpy as np
import pytest
import torch

from attnkit.config import DataConfig, ModelConfig, TaskConfig, TokenizerConfig
from attnkit.data.token_files import Blocks
from attnkit.data.tokenizer import Tokenizer
from attnkit.tasks import IGNORE_INDEX
from attnkit.tasks.pretrain import PretrainTask, infill_spans, mask_tokens

MASK = 4


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.train(
        [f"word{i}" for i in range(300)], TokenizerConfig(kind="word", vocab_size=400, min_frequency=1)
    )


def test_masked_lm_chooses_15_percent_then_80_10_10(tokenizer):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, tokenizer.vocab_size, (400, 128), generator=generator)
    ids[:, 0], ids[:, -1] = tokenizer.bos_id, tokenizer.eos_id
    real = torch.ones_like(ids, dtype=torch.bool)
    real[:, 100:] = False  # padding is never chosen
    inputs, labels = mask_tokens(ids, real, tokenizer, 0.15, generator)
    chosen = labels != IGNORE_INDEX
    assert not chosen[:, 100:].any() and not chosen[:, 0].any()  # nor are special tokens
    assert chosen[:, 1:100].float().mean().item() == pytest.approx(0.15, abs=0.005)
    assert torch.equal(labels[chosen], ids[chosen])
    masked = inputs[chosen] == tokenizer.mask_id
    kept = inputs[chosen] == ids[chosen]
    assert masked.float().mean().item() == pytest.approx(0.8, abs=0.01)
    assert kept.float().mean().item() == pytest.approx(0.1 + 0.9 / tokenizer.vocab_size, abs=0.01)
    assert torch.equal(inputs[~chosen], ids[~chosen])


def test_span_infilling_covers_the_fraction_with_poisson_spans():
    generator = torch.Generator().manual_seed(0)
    covered, spans, total = 0, [], 0
    for _ in range(300):
        ids = list(range(100, 228))  # distinct tokens, so the spans can be read back
        corrupted = infill_spans(ids, MASK, 0.3, 3.0, generator)
        kept = [t for t in corrupted if t != MASK]
        assert kept == [t for t in ids if t in set(kept)]  # order kept, nothing invented
        assert "44" not in "".join("4" if t == MASK else "." for t in corrupted)  # no two masks side by side
        position = 0
        for token in corrupted:  # each mask stands for the run of missing tokens at its place
            if token == MASK:
                length = 0
                while position < len(ids) and ids[position] not in set(kept):
                    position, length = position + 1, length + 1
                spans.append(length)
            else:
                position = ids.index(token, position) + 1
        covered += len(ids) - len(kept)
        total += len(ids)
    assert covered / total == pytest.approx(0.3, abs=0.01)
    assert min(spans) >= 1 and np.mean(spans) == pytest.approx(3.0, abs=0.35)


class NextTokenOracle(torch.nn.Module):
    """A decoder that gives each input token's successor (token + 1) all but certainty."""

    def __init__(self, vocab_size: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size

    def forward(self, ids: torch.Tensor, mask: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        # ids, mask, chosen: (batch, time) -> logits (chosen positions, vocab), as attnkit's Decoder gives them
        return 100.0 * torch.nn.functional.one_hot(ids[chosen] + 1, self.vocab_size).float()


def test_causal_lm_predicts_the_next_token(tokenizer):
    config = ModelConfig(arch="decoder", vocab_size=tokenizer.vocab_size, dim=16, num_heads=2, ff_dim=16, num_layers=1)
    task = PretrainTask(TaskConfig(name="pretrain"), DataConfig(max_length=8), tokenizer, config)
    blocks = Blocks(np.arange(10, 30, dtype=np.uint16), 8)
    assert len(blocks) == 3 and len(blocks[2]["ids"]) == 4  # 20 tokens: two full blocks and the rest
    batch = task.collate([blocks[0], blocks[2]])
    (loss, count), (short_loss, short_count) = task.decode(NextTokenOracle(tokenizer.vocab_size), batch)
    assert (count, short_count) == (7, 3)  # each token but the last predicts one; the padding predicts nothing
    assert loss < 1e-6 and short_loss < 1e-6  # and what it predicts is the token that follows it


@pytest.mark.parametrize(("setting", "expected"), [(None, 0.15), (0.4, 0.4)])
def test_masked_lm_predicts_the_configured_share_of_tokens(tokenizer, setting, expected):
    config = ModelConfig(arch="encoder", vocab_size=tokenizer.vocab_size, dim=16, num_heads=2, ff_dim=16, num_layers=1)
    task = PretrainTask(
        TaskConfig(name="pretrain", mask_fraction=setting), DataConfig(max_length=128), tokenizer, config
    )
    ids = np.random.default_rng(0).integers(5, tokenizer.vocab_size, 64 * 128).astype(np.uint16)
    blocks = Blocks(ids, 128)
    with torch.no_grad():
        predictions = task.decode(task.build_model(), task.collate([blocks[i] for i in range(64)]))
    assert sum(count for _, count in predictions) / ids.size == pytest.approx(expected, abs=0.01)
