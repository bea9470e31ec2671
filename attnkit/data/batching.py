"""Batches by token budget with length bucketing (examples of similar length together, so little padding),
and padding of id sequences into tensors with their masks."""

from __future__ import annotations

import random

import torch
from torch import Tensor

BATCH_TOKENS = 4096  # a batch's token budget where a run sets none (training shrinks it for small data)
MAX_PADDING = 0.25  # prediction: padding a batch may add to its real tokens before it splits (benchmarks.md)
MIN_ROWS = 4  # no smaller batch is split off for padding


Size = int | tuple[int, ...]  # an example's tokens, or its tokens per padded tensor (seq2seq: target, source)


def tokens_in(size: Size) -> int:
    return size if isinstance(size, int) else sum(size)


def batches_by_tokens(
    sizes: list[Size], max_tokens: int, shuffle: bool, seed: int = 0, max_padding: float | None = None
) -> list[list[int]]:
    """Index lists whose padded cost (count x longest size, summed over the tensors of tuple sizes) stays within
    `max_tokens` (a single example longer than the budget is a batch of its own). Sorted by size (tuples in
    order: sorting a pair by its first length, then its second, pads both little), ties broken at random;
    batch order shuffled. With `max_padding` (prediction), a batch of MIN_ROWS or more also ends where the next
    example would make its padded cost exceed (1 + max_padding) x its real tokens: a few texts of mixed lengths
    (a server's batch) cost as many calls of similar lengths, not one call as long as the longest."""
    rng = random.Random(seed)
    shapes = [(size,) if isinstance(size, int) else size for size in sizes]
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i], rng.random() if shuffle else i))
    batches: list[list[int]] = []
    current: list[int] = []
    longest: tuple[int, ...] = ()
    real = 0
    for index in order:
        grown = tuple(max(a, b) for a, b in zip(longest, shapes[index])) if current else shapes[index]
        padded = max(sum(grown), 1) * (len(current) + 1)
        too_padded = (
            max_padding is not None
            and len(current) >= MIN_ROWS
            and padded > (1 + max_padding) * (real + sum(shapes[index]))
        )
        if current and (padded > max_tokens or too_padded):
            batches.append(current)
            current, grown, real = [], shapes[index], 0
        current.append(index)
        longest = grown
        real += sum(shapes[index])
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
