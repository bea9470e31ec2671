"""Item files: a task's encoded examples (what its `encode` gives: per example, lists of ids and numbers) written
once to disk, a file per field, and read back an example at a time, so that memory does not grow with the number of
examples. What stays in memory is each example's size for batching (4 bytes a padded tensor); the ids are read with
os.pread (a seek and a read on Windows), so that they sit in the system's page cache, which it can always reclaim,
rather than in the process's resident memory (a memory map's pages count there once an epoch has touched them)."""

from __future__ import annotations

import array
import io
import itertools
import json
import os
import struct
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from attnkit.data.batching import Size
from attnkit.errors import AttnkitError
from attnkit.files import write_json

FIELDS_FILE = "fields.json"  # written last: a folder without it is not a complete set of items
SIZES_FILE = "sizes.i32"
# a field of lists: its values end to end and where each example's start (int64, one more than the examples);
# a field of numbers: one per example
KINDS = {"list": ".i32", "int": ".i64", "float": ".f64"}
DTYPES = {"list": np.int32, "int": np.int64, "float": np.float64}
OFFSETS, NUMBERS = struct.Struct("=qq"), {"int": struct.Struct("=q"), "float": struct.Struct("=d")}  # as numpy wrote


def write_items(folder: Path, chunks: Iterable[list[dict]], size: Callable[[dict], Size]) -> int:
    """Write each chunk of encoded items (dicts of the same fields: lists of ints, ints or floats) and their
    `size`s into the new folder `folder`; returns how many there were."""
    folder.mkdir(parents=True)
    kinds: dict[str, str] = {}
    files: dict[str, object] = {}
    count = 0
    sizes = open(folder / SIZES_FILE, "wb")
    try:
        for chunk in chunks:
            if not chunk:
                continue
            if not kinds:
                kinds = {name: _kind(value) for name, value in chunk[0].items()}
                for name, kind in kinds.items():
                    files[name] = open(folder / f"{name}{KINDS[kind]}", "wb")
                    if kind == "list":
                        files[f"{name}.offsets"] = open(folder / f"{name}.offsets", "wb")
                        np.zeros(1, np.int64).tofile(files[f"{name}.offsets"])
                ends = dict.fromkeys(kinds, 0)
            for name, kind in kinds.items():
                values = [item[name] for item in chunk]
                if kind == "list":
                    lengths = np.fromiter(map(len, values), np.int64, len(values))
                    np.fromiter(itertools.chain.from_iterable(values), np.int32, int(lengths.sum())).tofile(files[name])
                    (ends[name] + np.cumsum(lengths)).tofile(files[f"{name}.offsets"])
                    ends[name] += int(lengths.sum())
                else:
                    np.asarray(values, DTYPES[kind]).tofile(files[name])
            np.asarray([size(item) for item in chunk], np.int32).tofile(sizes)
            count += len(chunk)
    finally:
        for file in [sizes, *files.values()]:
            file.close()
    write_json(folder / FIELDS_FILE, {"count": count, "fields": kinds})
    return count


def _kind(value: object) -> str:
    if isinstance(value, list):
        return "list"
    if isinstance(value, (bool, int)):
        return "int"
    if isinstance(value, float):
        return "float"
    raise TypeError(f"an item's field holds a {type(value).__name__}: item files hold lists of ids and numbers")


class Items(Sequence):
    """The items of a folder that write_items wrote, or of some of them (`indices`): each a dict as `encode` gave
    it, read from disk when asked for."""

    def __init__(self, folder: str | os.PathLike, indices: np.ndarray | None = None, sizes: np.ndarray | None = None):
        self.folder = Path(folder)
        try:
            described = json.loads((self.folder / FIELDS_FILE).read_text())
            self.count, self.kinds = described["count"], described["fields"]
            if sizes is None:
                sizes = np.fromfile(self.folder / SIZES_FILE, np.int32)
                columns = sizes.size // self.count if self.count else 1
                if columns < 1 or sizes.size != columns * self.count:
                    raise ValueError(f"{SIZES_FILE} holds {sizes.size} sizes for {self.count} items")
                sizes = sizes.reshape(self.count, columns)
                sizes = sizes[:, 0] if columns == 1 else sizes
            self._files = {
                name: open(self.folder / f"{name}{KINDS[kind]}", "rb", buffering=0) for name, kind in self.kinds.items()
            }
            self._offsets = {
                name: open(self.folder / f"{name}.offsets", "rb", buffering=0)
                for name, kind in self.kinds.items()
                if kind == "list"
            }
            self._check_lengths()
        except (OSError, ValueError, KeyError) as error:
            raise AttnkitError(f"{self.folder}: unreadable item files ({error})") from None
        self.indices = indices
        # each item's size (a row of sizes where a batch pads more than one tensor), in memory, for batching
        self.sizes = sizes if indices is None else sizes[indices]
        self._all_sizes = sizes

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else self.count

    def _check_lengths(self) -> None:
        """Each file as long as what describes it says (a file cut short or deleted: an error, not garbage ids)."""
        for name, kind in self.kinds.items():
            length = os.fstat(self._files[name].fileno()).st_size
            if kind == "list":
                offsets = self._offsets[name]
                if os.fstat(offsets.fileno()).st_size != 8 * (self.count + 1):
                    raise ValueError(f"{name}.offsets is not {self.count + 1} offsets long")
                (end,) = NUMBERS["int"].unpack(read_at(offsets, 8, 8 * self.count))
                expected = 4 * end
            else:
                expected = 8 * self.count
            if length != expected:
                raise ValueError(f"{name}{KINDS[kind]} holds {length} bytes, not {expected}")

    def subset(self, indices: np.ndarray) -> Items:
        """The items at `indices` of these."""
        chosen = np.asarray(indices, np.int64) if self.indices is None else self.indices[indices]
        return Items(self.folder, chosen, self._all_sizes)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return self.subset(np.arange(len(self))[i])
        index = int(self.indices[i]) if self.indices is not None else range(self.count)[i]
        item: dict = {}
        for name, kind in self.kinds.items():
            if kind == "list":
                start, end = OFFSETS.unpack(read_at(self._offsets[name], 16, 8 * index))
                values = array.array("i")
                values.frombytes(read_at(self._files[name], 4 * (end - start), 4 * start))
                item[name] = values.tolist()
            else:
                item[name] = NUMBERS[kind].unpack(read_at(self._files[name], 8, 8 * index))[0]
        return item

    def __del__(self) -> None:  # its files closed with it
        for file in [*getattr(self, "_files", {}).values(), *getattr(self, "_offsets", {}).values()]:
            file.close()


def read_at(file: io.RawIOBase, size: int, offset: int) -> bytes:
    """`size` bytes of `file` from `offset`: os.pread where the system has one, else a seek and a read (Windows)."""
    if hasattr(os, "pread"):
        return os.pread(file.fileno(), size, offset)
    file.seek(offset)
    return file.read(size)
