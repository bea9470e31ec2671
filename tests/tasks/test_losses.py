"""The tasks' cross-entropy against PyTorch's: the same loss and gradient, with label smoothing and ignored rows."""

import pytest
import torch
import torch.nn.functional as F

from attnkit.tasks.losses import IGNORE_INDEX, cross_entropy_sum
from tests.numerics import assert_close


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_cross_entropy_sum_is_pytorchs(smoothing, dtype):
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(9, 500, generator=generator) * 4).to(dtype).requires_grad_()
    labels = torch.randint(0, 500, (9,), generator=generator)
    labels[[2, 5]] = IGNORE_INDEX
    upstream = torch.tensor(0.7)  # a scaled loss (the step's mean, a gradient scaler) reaches the logits scaled
    losses, grads = [], []
    for loss_function in (
        lambda: cross_entropy_sum(logits, labels, smoothing),
        lambda: F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction="sum"),
    ):
        loss = loss_function()
        (grad,) = torch.autograd.grad(loss * upstream, logits)
        losses.append(loss)
        grads.append(grad)
    assert losses[0].dtype == torch.float32
    assert_close(losses[0], losses[1])
    assert_close(grads[0].float(), grads[1].float())
    assert grads[0][[2, 5]].abs().max() == 0  # ignored rows learn nothing
