"""Batches by token budget with length bucketing (examples of similar length together, so little padding),
and padding of id sequences into tensors with their masks."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

BATCH_TOKENS = 4096  # a batch's token budget where a run sets none (training shrinks it for small data)
MAX_PADDING = 0.25  # prediction: padding a batch may add to its real tokens before it splits (benchmarks.md)
MIN_ROWS = 4  # no smaller batch is split off for padding
STRETCH = 65_536  # examples whose sizes are read into Python at a time


Size = int | tuple[int, ...]  # an example's tokens, or its tokens per padded tensor (seq2seq: target, source)


def batches_by_tokens(
    sizes: Sequence[Size] | np.ndarray, max_tokens: int, shuffle: bool, seed: int = 0, max_padding: float | None = None
) -> list[np.ndarray]:
    """Arrays of indices whose padded cost (count x longest size, summed over the tensors of tuple sizes) stays
    within `max_tokens` (a single example longer than the budget is a batch of its own). Sorted by size (tuples in
    order: sorting a pair by its first length, then its second, pads both little), ties broken at random;
    batch order shuffled. With `max_padding` (prediction), a batch of MIN_ROWS or more also ends where the next
    example would make its padded cost exceed (1 + max_padding) x its real tokens: a few texts of mixed lengths
    (a server's batch) cost as many calls of similar lengths, not one call as long as the longest. `sizes` may be
    an array (a row per example for tuple sizes): millions of examples cost a few bytes each."""
    rng = random.Random(seed)
    shapes = np.asarray(sizes)
    shapes = shapes.reshape(len(shapes), -1) if len(shapes) else shapes.reshape(0, 1)
    columns = [shapes[:, d] for d in reversed(range(shapes.shape[1]))]  # np.lexsort's last key sorts first
    if shuffle:  # the ties broken by a draw per example, drawn in the examples' order
        ties = np.fromiter((rng.random() for _ in range(len(shapes))), np.float64, len(shapes))
        order = np.lexsort((ties, *columns))
        del ties
    else:
        order = np.lexsort(columns)
    order = order.astype(np.int32) if len(order) < 2**31 else order
    ends: list[int] = []
    longest: list[int] = []
    count = real = 0
    for start in range(0, len(order), STRETCH):
        for position, shape in enumerate(shapes[order[start : start + STRETCH]].tolist(), start):
            grown = [max(a, b) for a, b in zip(longest, shape)] if count else shape
            padded = max(sum(grown), 1) * (count + 1)
            too_padded = (
                max_padding is not None and count >= MIN_ROWS and padded > (1 + max_padding) * (real + sum(shape))
            )
            if count and (padded > max_tokens or too_padded):
                ends.append(position)
                grown, count, real = shape, 0, 0
            count += 1
            longest = grown
            real += sum(shape)
    batches = np.split(order, ends) if len(order) else []
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
