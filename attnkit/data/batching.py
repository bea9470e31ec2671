"""Batches by token budget with length bucketing (examples of similar length together, so little padding),
and padding of id sequences into tensors with their masks."""

from __future__ import annotations

import random

import torch
from torch import Tensor

BATCH_TOKENS = 4096  # a batch's token budget where a run sets none (training shrinks it for small data)


def batches_by_tokens(sizes: list[int], max_tokens: int, shuffle: bool, seed: int = 0) -> list[list[int]]:
    """Index lists whose padded cost (count x longest size) stays within `max_tokens` (a single example longer
    than the budget is a batch of its own). Sorted by size, ties broken at random; batch order shuffled."""
    rng = random.Random(seed)
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], rng.random() if shuffle else i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        size = max(sizes[index], 1)
        if current and max(longest, size) * (len(current) + 1) > max_tokens:
            batches.append(current)
            current, longest = [], 0
        current.append(index)
        longest = max(longest, size)
    if current:
        batches.append(current)
    if shuffle:
        rng.shuffle(batches)
    return batches


def pad(sequences: list[list[int]], value: int) -> tuple[Tensor, Tensor]:
    """(batch, longest) ids padded with `value`, and the mask that is True on real positions."""
    longest = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), longest), value, dtype=torch.long)
    mask = torch.zeros(len(sequences), longest, dtype=torch.bool)
    for row, sequence in enumerate(sequences):
        ids[row, : len(sequence)] = torch.tensor(sequence, dtype=torch.long)
        mask[row, : len(sequence)] = True
    return ids, mask
