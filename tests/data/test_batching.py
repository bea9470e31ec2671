"""Token-budget batches: within budget, every example exactly once, little padding, repeatable."""

import random

import torch

from attnkit.data.batching import batches_by_tokens as array_batches
from attnkit.data.batching import pad


def batches_by_tokens(*args, **kwargs) -> list[list[int]]:
    return [batch.tolist() for batch in array_batches(*args, **kwargs)]


def test_batches_respect_the_budget_and_cover_every_example_once():
    rng = random.Random(0)
    sizes = [rng.randint(1, 60) for _ in range(500)] + [300]  # one example over the budget
    batches = batches_by_tokens(sizes, 256, shuffle=True, seed=3)
    assert sorted(i for b in batches for i in b) == list(range(len(sizes)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(sizes[i] for i in batch) <= 256


def test_bucketing_keeps_padding_low():
    rng = random.Random(0)
    sizes = [rng.randint(5, 100) for _ in range(2000)]
    batches = batches_by_tokens(sizes, 1024, shuffle=True, seed=1)
    padded = sum(len(b) * max(sizes[i] for i in b) for b in batches)
    assert sum(sizes) / padded > 0.95


def test_same_seed_same_batches_and_other_seed_other_order():
    sizes = list(range(1, 200))
    assert batches_by_tokens(sizes, 300, True, seed=5) == batches_by_tokens(sizes, 300, True, seed=5)
    assert batches_by_tokens(sizes, 300, True, seed=5) != batches_by_tokens(sizes, 300, True, seed=6)


def test_pad_gives_ids_and_mask():
    ids, mask = pad([[5, 6, 7], [8]], value=0)
    assert ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert mask.tolist() == [[True, True, True], [True, False, False]]
    assert ids.dtype == torch.long


def test_tuple_sizes_budget_every_padded_tensor_and_sort_by_the_first_length_then_the_second():
    sizes = [(3, 9), (8, 2), (3, 1), (8, 8), (1, 5)]
    batches = batches_by_tokens(sizes, 20, shuffle=False)
    assert batches == [[4, 2], [0], [1], [3]]  # (1,5)+(3,1) pad to 2 x (3+5) = 16; adding (3,9) would cost 36
    for batch in batches:
        longest = [max(sizes[i][d] for i in batch) for d in range(2)]
        assert len(batch) * sum(longest) <= 20 or len(batch) == 1


def test_max_padding_splits_a_batch_of_mixed_lengths_into_calls_of_similar_lengths():
    sizes = [10, 11, 12, 12, 13, 40, 41, 42, 44, 45, 100, 101, 102, 103]  # one budget holds them all
    assert batches_by_tokens(sizes, 4096, shuffle=False) == [list(range(14))]
    batches = batches_by_tokens(sizes, 4096, shuffle=False, max_padding=0.25)
    assert batches == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9], [10, 11, 12, 13]]
    for batch in batches:
        assert len(batch) * max(sizes[i] for i in batch) <= 1.25 * sum(sizes[i] for i in batch)
    # a batch is not split below MIN_ROWS, whatever its padding
    assert batches_by_tokens([1, 50, 100], 4096, shuffle=False, max_padding=0.25) == [[0, 1, 2]]


def python_batches(sizes, max_tokens, shuffle, seed=0, max_padding=None):
    """The batches as attnkit made them from lists before they took arrays (Python's sort, a draw per example
    for its ties): training on the same data and seed must draw the same batches as runs made before."""
    rng = random.Random(seed)
    shapes = [(size,) if isinstance(size, int) else size for size in sizes]
    order = sorted(range(len(shapes)), key=lambda i: (shapes[i], rng.random() if shuffle else i))
    batches, current, longest, real = [], [], (), 0
    for index in order:
        grown = tuple(max(a, b) for a, b in zip(longest, shapes[index])) if current else shapes[index]
        padded = max(sum(grown), 1) * (len(current) + 1)
        too_padded = (
            max_padding is not None and len(current) >= 4 and padded > (1 + max_padding) * (real + sum(shapes[index]))
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


def test_the_batches_are_those_of_a_python_sort_with_the_same_draws():
    rng = random.Random(7)
    singles = [rng.randint(1, 40) for _ in range(3000)]
    pairs = [(rng.randint(1, 20), rng.randint(1, 20)) for _ in range(3000)]
    for sizes in (singles, pairs):
        for shuffle, max_padding in ((True, None), (False, None), (False, 0.25)):
            expected = python_batches(sizes, 300, shuffle, seed=11, max_padding=max_padding)
            assert batches_by_tokens(sizes, 300, shuffle, seed=11, max_padding=max_padding) == expected
