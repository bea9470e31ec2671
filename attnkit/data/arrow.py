"""Data where Hugging Face and pandas users keep it: a .parquet file (pyarrow), an .arrow file, or a folder that
`datasets` wrote with `save_to_disk` (a Dataset, or a DatasetDict whose split the run names). Rows come out as the
table readers' rows, numbered from 1, with a column of class names (a `ClassLabel`) read as those names; the `data`
extra installs pyarrow and datasets."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from attnkit.errors import AttnkitError, install

FILE_FORMATS = (".parquet", ".arrow")
DICT_FILE = "dataset_dict.json"  # what save_to_disk writes for a DatasetDict: its splits are the subfolders
DATASET_FILE = "state.json"  # ... and for a Dataset, beside its .arrow files
BATCH_ROWS = 4096  # rows read at a time


def is_dataset(path: str | os.PathLike) -> bool:
    path = Path(path)
    if path.is_dir():
        return (path / DICT_FILE).is_file() or (path / DATASET_FILE).is_file()
    return path.suffix in FILE_FORMATS


def splits(path: str | os.PathLike) -> list[str] | None:
    """A DatasetDict folder's splits; None for anything else."""
    path = Path(path)
    if not (path / DICT_FILE).is_file():
        return None
    try:
        return list(json.loads((path / DICT_FILE).read_text(encoding="utf-8"))["splits"])
    except (OSError, ValueError, KeyError, TypeError):
        raise AttnkitError(f"{path / DICT_FILE}: not the dataset_dict.json that datasets writes") from None


def split_path(path: str, wanted: tuple[str, ...]) -> str:
    """`path`, or for a DatasetDict folder its first split of `wanted` that it has (its folder)."""
    names = splits(path)
    if names is None:
        return path
    for name in wanted:
        if name in names:
            return str(Path(path) / name)
    raise AttnkitError(
        f"{path}: a dataset dict with the splits {', '.join(names)} and no {' or '.join(wanted)}; name the one to "
        f"read with data.split (or give its folder, {Path(path) / names[0]})"
    )


def dataset_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a dataset's table (empty if it cannot be read: the readers then say why)."""
    try:
        return _table(Path(path))[0]
    except AttnkitError:
        return []


def dataset_rows(path: str | os.PathLike, columns: dict[str, str], optional: list[str]) -> Iterator[tuple[int, dict]]:
    """(row number from 1, {column: value}) for each row, with the required `columns` checked (each maps to the
    setting that names it, for the error) and `optional` ones read where present; read a batch of rows at a time."""
    path = Path(path)
    names = splits(path)
    if names is not None:
        example = "test" if "test" in names else names[-1]
        raise AttnkitError(
            f"{path}: a dataset dict with the splits {', '.join(names)}: give one split's folder ({path / example})"
        )
    found, batches, classes = _table(path)
    missing = [column for column in columns if column not in found]
    if missing:
        settings = " and ".join(columns[name] for name in missing)
        raise AttnkitError(
            f"{path}: no column {' or '.join(map(repr, missing))} (found: {', '.join(found) or 'nothing'}); name "
            f"{'it' if len(missing) == 1 else 'them'} with {settings}"
        )
    wanted = [column for column in [*columns, *optional] if column in found]
    number = 0
    for batch in batches(wanted):
        rows = batch.to_pylist()
        for column in wanted:
            names_of = classes.get(column)
            if names_of is not None:
                for row in rows:
                    row[column] = _named(row[column], names_of)
        for row in rows:
            number += 1
            yield number, row
    if not number:
        raise AttnkitError(f"{path}: no rows")


def _named(value: object, names: list[str]) -> object:
    """A class index (or a list of them, a tag sequence's) as its name."""
    if isinstance(value, list):
        return [_named(v, names) for v in value]
    return names[value] if isinstance(value, int) and 0 <= value < len(names) else value


def _table(path: Path) -> tuple[list[str], Callable[[list[str]], Iterator], dict[str, list[str]]]:
    """The column names of the table at `path`, a function giving its record batches of the columns it is given
    (read a batch at a time: Parquet from the file, Arrow memory-mapped), and the class names of its ClassLabel
    columns."""
    try:
        import datasets
        import pyarrow.parquet
    except ImportError:
        raise AttnkitError(f"{path}: reading Parquet, Arrow or a datasets folder needs the data extra: "
                           f"{install('data')}") from None  # fmt: skip
    if not path.exists():
        raise AttnkitError(f"{path}: no such file or folder")
    try:
        if path.is_dir():
            dataset = datasets.load_from_disk(str(path))
        elif path.suffix == ".arrow":
            dataset = datasets.Dataset.from_file(str(path))  # memory-mapped, nothing cached
        else:
            parquet = pyarrow.parquet.ParquetFile(str(path))
            schema = parquet.schema_arrow
            features = datasets.Features.from_arrow_schema(schema) if schema.metadata else None

            def batches(columns: list[str]) -> Iterator:
                return _reading(path, parquet.iter_batches(BATCH_ROWS, columns=columns))

            return schema.names, batches, _class_names(features)
    except (OSError, ValueError, TypeError) as error:
        raise _unreadable(path, error) from None
    except Exception as error:  # pyarrow's own errors (ArrowInvalid, ...) derive from these or from Exception
        raise AttnkitError(f"{path}: cannot read it ({type(error).__name__}: {error})") from None
    table = dataset.data.table

    def batches(columns: list[str]) -> Iterator:
        return _reading(path, iter(table.select(columns).to_batches(BATCH_ROWS)))

    return table.column_names, batches, _class_names(dataset.features)


def _reading(path: Path, batches: Iterator) -> Iterator:
    """`batches`, with an error met while reading them (a damaged page of a Parquet file) said in one line."""
    try:
        yield from batches
    except (OSError, ValueError, TypeError) as error:
        raise _unreadable(path, error) from None
    except Exception as error:
        raise AttnkitError(f"{path}: cannot read it ({type(error).__name__}: {error})") from None


def _unreadable(path: Path, error: Exception) -> AttnkitError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return AttnkitError(f"{path}: cannot read it as {'a datasets folder' if path.is_dir() else path.suffix}: {reason}")


def _class_names(features) -> dict[str, list[str]]:
    """{column: names} for the ClassLabel columns (or sequences of them) of datasets' `features`."""
    if not features:
        return {}
    import datasets

    names = {}
    for column, feature in features.items():
        inner = getattr(feature, "feature", feature)  # a Sequence's (or List's) element
        if isinstance(inner, datasets.ClassLabel):
            names[column] = list(inner.names)
    return names
