"""Item files give back the items written, by index, in subsets, with or without os.pread (Windows has none)."""

import math
import os

import numpy as np
import pytest

from attnkit.data.item_files import Items, write_items
from attnkit.errors import AttnkitError

ITEMS = [
    {"ids": [2, 7, 3], "labels": [-100, 4, -100], "label": 1, "target": 0.25},
    {"ids": [2, 3], "labels": [-100, -100], "label": 0, "target": math.nan},
    {"ids": [2, 70000, 9, 3], "labels": [-100, 1, 2, -100], "label": 2, "target": -1.5},
]


def written(folder) -> Items:
    chunks = [ITEMS[:2], [], ITEMS[2:]]
    assert write_items(folder, chunks, lambda item: (len(item["ids"]), len(item["labels"]))) == 3
    return Items(folder)


def same(a: dict, b: dict) -> bool:
    """Equal items, a NaN target equal to a NaN (a prediction's item has one)."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)


@pytest.mark.parametrize("pread", [True, False])
def test_items_come_back_as_written(tmp_path, monkeypatch, pread):
    if not pread:
        monkeypatch.delattr(os, "pread", raising=False)
    items = written(tmp_path / "items")
    assert len(items) == 3
    assert all(same(items[i], ITEMS[i]) for i in range(3))
    assert same(items[-1], ITEMS[2])
    assert items.sizes.tolist() == [[3, 3], [2, 2], [4, 4]]
    chosen = items.subset(np.array([2, 0]))
    assert len(chosen) == 2 and same(chosen[0], ITEMS[2]) and same(chosen[1], ITEMS[0])
    assert chosen.sizes.tolist() == [[4, 4], [3, 3]]
    assert same(chosen.subset(np.array([1]))[0], ITEMS[0])
    assert same(items[1:][0], ITEMS[1])


def test_one_size_per_item_is_a_flat_array_and_an_incomplete_folder_is_refused(tmp_path):
    assert write_items(tmp_path / "a", [ITEMS], lambda item: len(item["ids"])) == 3
    assert Items(tmp_path / "a").sizes.tolist() == [3, 2, 4]
    (tmp_path / "a" / "fields.json").unlink()  # what a build killed before its end lacks
    with pytest.raises(AttnkitError, match="unreadable item files"):
        Items(tmp_path / "a")
