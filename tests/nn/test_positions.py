"""Each position scheme against its definition: the paper's formula, T5's buckets, RoPE's relative property,
ALiBi's published slopes."""

import math

import pytest
import torch

from attnkit.nn.attention import apply_rotary
from attnkit.nn.positions import ALiBi, RelativePositionBias, RotaryPositions, SinusoidalPositions, alibi_slopes


def test_sinusoidal_values_follow_the_paper_formula():
    dim = 16
    x = SinusoidalPositions(dim).add_to(torch.zeros(1, 50, dim), offset=0)[0]
    for pos in (0, 7, 49):
        for i in range(dim // 2):
            angle = pos / 10000 ** (2 * i / dim)
            assert x[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-5)  # PE(pos, 2i) in the paper
            assert x[pos, dim // 2 + i].item() == pytest.approx(math.cos(angle), abs=1e-5)  # PE(pos, 2i+1)


def test_sinusoidal_offset_continues_the_sequence():
    positions = SinusoidalPositions(8)
    whole = positions.add_to(torch.zeros(1, 10, 8), 0)
    torch.testing.assert_close(positions.add_to(torch.zeros(1, 4, 8), 6), whole[:, 6:])


@pytest.mark.parametrize("bidirectional", [True, False])
def test_relative_buckets_match_t5(bidirectional):
    t5 = pytest.importorskip("transformers.models.t5.modeling_t5")
    ours = RelativePositionBias(num_heads=2, num_buckets=32, max_distance=128, bidirectional=bidirectional)
    relative = torch.arange(-300, 300)
    expected = t5.T5Attention._relative_position_bucket(relative, bidirectional, 32, 128)
    assert torch.equal(ours._bucket(relative), expected)


def test_relative_bias_with_offset_equals_the_rows_of_the_full_bias():
    bias = RelativePositionBias(num_heads=2, num_buckets=8, max_distance=16, bidirectional=False)
    torch.testing.assert_close(bias.score_bias(2, 9, offset=7), bias.score_bias(9, 9, offset=0)[:, :, 7:])


def test_rotary_scores_depend_only_on_relative_distance():
    torch.manual_seed(0)
    rotary = RotaryPositions(head_dim=8, base=10000.0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)

    def score(query_pos: int, key_pos: int) -> float:
        rotated_q = apply_rotary(q, *rotary.rotary(1, query_pos, q.device))
        rotated_k = apply_rotary(k, *rotary.rotary(1, key_pos, k.device))
        return (rotated_q * rotated_k).sum().item()

    assert score(5, 2) == pytest.approx(score(105, 102), abs=1e-4)
    assert score(5, 2) != pytest.approx(score(5, 3), abs=1e-3)
    assert (apply_rotary(q, *rotary.rotary(1, 37, q.device)).norm() - q.norm()).abs() < 1e-5  # a rotation


def test_alibi_slopes_are_the_published_ones():
    assert alibi_slopes(8).tolist() == pytest.approx([2**-i for i in range(1, 9)])
    twelve = [2**-i for i in range(1, 9)] + [2**-0.5, 2**-1.5, 2**-2.5, 2**-3.5]
    assert alibi_slopes(12).tolist() == pytest.approx(twelve)


def test_alibi_penalizes_distance_linearly():
    bias = ALiBi(num_heads=2).score_bias(3, 3, offset=0)[0]
    expected = -torch.tensor([[0.0, 1, 2], [1, 0, 1], [2, 1, 0]])
    torch.testing.assert_close(bias, torch.stack([expected / 16, expected / 256]))
