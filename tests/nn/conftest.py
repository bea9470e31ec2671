"""Helpers shared by the tests of attnkit.nn."""

import torch


def padding(lengths: list[int], time: int) -> torch.Tensor:
    """(batch, time) True for real tokens."""
    return torch.arange(time)[None, :] < torch.tensor(lengths)[:, None]
