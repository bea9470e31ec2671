"""The training loss of the tasks that predict one of many: cross-entropy with label smoothing, summed."""

from __future__ import annotations

import torch
from torch import Tensor

IGNORE_INDEX = -100  # a target position without anything to learn (padding, a later subword): its loss is 0


def cross_entropy_sum(logits: Tensor, labels: Tensor, smoothing: float = 0.0) -> Tensor:
    """F.cross_entropy(logits.float(), labels, label_smoothing=smoothing, reduction="sum") to float32 rounding, in
    fewer passes over the (rows, classes) logits: PyTorch's makes log-probabilities, reads them twice, and its
    backward writes zeros, a one-hot and the smoothing's share in passes of their own; this one keeps the
    exponentials of its forward pass, and its backward is one product with an in-place subtraction (a third less
    time for a 10,000-word vocabulary). Rows labelled IGNORE_INDEX add nothing."""
    return _SmoothedCrossEntropy.apply(logits.float(), labels, smoothing)


class _SmoothedCrossEntropy(torch.autograd.Function):
    # loss of a row = logsumexp(z) - (1 - e) z[label] - e mean(z); its gradient = softmax(z) - (1 - e) onehot - e / V
    @staticmethod
    def forward(ctx, logits: Tensor, labels: Tensor, smoothing: float) -> Tensor:  # type: ignore[override]
        scored = labels != IGNORE_INDEX
        highest = logits.amax(-1, keepdim=True)
        exponentials = torch.sub(logits, highest).exp_()
        sums = exponentials.sum(-1)
        picked = logits.gather(1, labels.clamp(min=0)[:, None]).squeeze(1)
        rows = highest.squeeze(1) + sums.log() - (1.0 - smoothing) * picked
        if smoothing:
            rows = rows - smoothing * logits.mean(-1)
        ctx.save_for_backward(exponentials, labels, sums, scored)
        ctx.smoothing = smoothing
        return torch.where(scored, rows, 0.0).sum()

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        exponentials, labels, sums, scored = ctx.saved_tensors
        smoothing = ctx.smoothing
        weight = torch.where(scored, grad, 0.0)  # (rows,): the loss's gradient, 0 on rows not scored
        out = exponentials.mul((weight / sums)[:, None])
        if smoothing:
            out.sub_((weight * (smoothing / out.shape[1]))[:, None])
        rows = torch.arange(len(labels), device=labels.device)
        out[rows, labels.clamp(min=0)] -= weight * (1.0 - smoothing)
        return out, None, None
