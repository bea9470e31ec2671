"""Float32 comparisons that hold on any CPU and thread count."""

import torch

FLOAT32 = 2e-5  # of the values' scale: 170 float32 epsilons; sums in another order (another CPU, another thread
# count) differ by up to 2e-6 of it in tests/nn (measured), a misplaced weight or mask by far more than 1e-2


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float = FLOAT32) -> None:
    """`actual` equals `expected` within `tolerance` times the scale of `expected` (its largest magnitude, and at
    least 1): rounding grows with the size of the numbers summed, not with each result's own size."""
    scale = max(float(expected.detach().abs().max()), 1.0) if expected.numel() else 1.0
    torch.testing.assert_close(actual, expected, atol=tolerance * scale, rtol=0)
