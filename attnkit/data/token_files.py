"""Token files: a corpus tokenized once into a flat array of ids on disk (uint16 while the vocabulary fits, else
uint32), memory-mapped and read as fixed-length blocks, so that memory does not grow with the corpus."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from attnkit.errors import AttnkitError

DTYPES = {".u16": np.uint16, ".u32": np.uint32}  # a token file's suffix says the width of its ids


def token_suffix(vocab_size: int) -> str:
    """The suffix of a token file for a vocabulary of `vocab_size` ids: the narrowest width that holds them."""
    return ".u16" if vocab_size <= 2**16 else ".u32"


def token_dtype(path: str | os.PathLike) -> type:
    """The id type of the token file `path`, from its suffix."""
    suffix = Path(path).suffix
    if suffix not in DTYPES:
        raise AttnkitError(f"{path}: not a token file (its name ends in {' or '.join(DTYPES)})")
    return DTYPES[suffix]


class Blocks(Sequence):
    """Consecutive blocks of `length` tokens from a memory-mapped token file (the last one may be shorter)."""

    def __init__(self, ids: np.ndarray, length: int, indices: range | None = None) -> None:
        self.ids, self.length = ids, length
        # every full block, and the rest if it holds at least two tokens (one prediction for a causal LM)
        count = len(ids) // length + (len(ids) % length >= 2)
        self.indices = indices if indices is not None else range(count)

    @classmethod
    def open(cls, path: str | os.PathLike, length: int) -> Blocks:
        try:
            ids = np.memmap(path, dtype=token_dtype(path), mode="r")
        except (OSError, ValueError) as error:
            raise AttnkitError(f"{path}: unreadable token file ({error})") from None
        if len(ids) < 2:
            raise AttnkitError(f"{path}: fewer than two tokens")
        return cls(ids, length)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Blocks(self.ids, self.length, self.indices[i])
        index = self.indices[i]
        start = index * self.length
        return {"ids": self.ids[start : start + self.length].astype(np.int64), "index": index}
