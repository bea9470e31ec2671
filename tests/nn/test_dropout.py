"""attnkit's CPU dropout: the same distribution and gradient as nn.Dropout, from a cheaper mask."""

import pytest
import torch

from attnkit.nn.dropout import Dropout


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_keeps_one_minus_p_and_scales_kept_values(dtype):
    torch.manual_seed(0)
    x = torch.ones(200_000, dtype=dtype)
    out = Dropout(0.1).train()(x)
    kept = out != 0
    assert out.dtype == dtype
    assert kept.float().mean().item() == pytest.approx(0.9, abs=0.005)
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1 / 0.9))


def test_gradient_is_the_same_mask_and_scale():
    torch.manual_seed(0)
    x = torch.randn(1000, requires_grad=True)
    out = Dropout(0.3).train()(x)
    out.sum().backward()
    expected = (out != 0).float() / 0.7
    torch.testing.assert_close(x.grad, expected)


def test_identity_in_evaluation_and_at_zero():
    x = torch.randn(10)
    assert Dropout(0.5).eval()(x) is x
    assert Dropout(0.0).train()(x) is x


def test_follows_the_torch_seed():
    x = torch.ones(100)
    torch.manual_seed(3)
    first = Dropout(0.5).train()(x)
    torch.manual_seed(3)
    assert torch.equal(Dropout(0.5).train()(x), first)
