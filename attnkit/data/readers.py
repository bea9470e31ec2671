"""Readers for the files users have: labelled text (TSV, CSV, JSONL; Parquet, Arrow and datasets folders through
arrow.py), CoNLL and CoNLL-U, parallel text, plain lines. Each yields every example with the line it starts on (a
table's row number for Parquet and Arrow), reading the file as a stream, so that a file larger than memory can be
tokenized into a cache (attnkit.training.cache); each error names the file, the line and the problem, and no row is
ever skipped silently (blank lines are not rows)."""

from __future__ import annotations

import csv
import io
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from attnkit.data.arrow import FILE_FORMATS, dataset_columns, dataset_rows, is_dataset
from attnkit.errors import AttnkitError
from attnkit.files import decode, read_text

csv.field_size_limit(2**31 - 1)  # news articles exceed the default 128 KiB field limit


@dataclass
class Labelled:
    """N->1: a text and its label ("" when the file has no label column, for prediction)."""

    text: str
    label: str
    line: int


@dataclass
class TextPair:
    """Two texts -> 1: a pair (premise and hypothesis, question and answer) and its label ("" for prediction)."""

    text_a: str
    text_b: str
    label: str
    line: int
    negative: str = ""  # embed: a text that does not belong with text_a (a hard negative), where the file has one


@dataclass
class Tagged:
    """N->N: words and one tag per word (empty tags for prediction)."""

    words: list[str]
    tags: list[str]
    line: int


@dataclass
class Pair:
    """N->M: a source text and its target ("" for prediction)."""

    source: str
    target: str
    line: int


TABLE_FORMATS = {".tsv": "\t", ".csv": ",", ".jsonl": None}
TAGGED_FORMATS = (".conll", ".conllu")


def stdin_lines() -> list[str]:
    """Standard input, one line per item without its line end, its bytes decoded here (Python's own reading turns
    a bad byte into a lone surrogate, which tokenizers cannot take); a stdin of text alone (a notebook's) is read
    as it is."""
    stream = getattr(sys.stdin, "buffer", None)
    text = decode(stream.read(), "standard input") if stream is not None else sys.stdin.read()
    return [line.rstrip("\n") for line in io.StringIO(text, newline=None)]


def read_labelled(
    path: str | os.PathLike,
    text_column: str = "text",
    label_column: str = "label",
    need_labels: bool = True,
    settings: tuple[str, str] = ("data.text_column", "data.label_column"),
) -> Iterator[Labelled]:
    """Labelled text from .tsv, .csv (a header line names the columns) or .jsonl (one object per line). Without
    need_labels the label column is never read (prediction). `settings` name what picks each column, for errors."""
    columns = {text_column: settings[0], label_column: settings[1]} if need_labels else {text_column: settings[0]}
    for line, row in _table_rows(path, columns, [label_column]):
        yield Labelled(row[text_column], row[label_column] if need_labels else "", line)


def read_text_pairs(
    path: str | os.PathLike,
    a_column: str = "text_a",
    b_column: str = "text_b",
    label_column: str = "label",
    need_labels: bool = True,
    settings: tuple[str, str, str] = ("data.text_a_column", "data.text_b_column", "data.label_column"),
    negative_column: str | None = None,
) -> Iterator[TextPair]:
    """Pairs of texts with a label from .tsv, .csv or .jsonl, like read_labelled; with `negative_column`, a third
    text each (embed's hard negatives: the column must be there and hold text on every line)."""
    columns = {a_column: settings[0], b_column: settings[1]}
    if need_labels:
        columns[label_column] = settings[2]
    if negative_column is not None:
        columns[negative_column] = "data.negative_column"
    for line, row in _table_rows(path, columns, [label_column]):
        negative = row[negative_column] if negative_column is not None else ""
        yield TextPair(row[a_column], row[b_column], row[label_column] if need_labels else "", line, negative)


def table_columns(path: str | os.PathLike) -> list[str]:
    """The column names of a .tsv or .csv file's header, or the keys of a .jsonl file's first object (empty if
    there is none to read: the readers then say what is wrong)."""
    path = Path(path)
    if is_dataset(path):
        return dataset_columns(path)
    if path.suffix not in TABLE_FORMATS or not path.is_file():
        return []
    try:
        first = next((line for _, line in text_lines(path) if line.strip()), "")
    except AttnkitError:
        return []
    if TABLE_FORMATS[path.suffix] is None:
        try:
            row = json.loads(first)
        except json.JSONDecodeError:
            return []
        return list(row) if isinstance(row, dict) else []
    fields = next(csv.reader([first], delimiter=TABLE_FORMATS[path.suffix]), [])
    return [name.strip() for name in fields]


def read_pairs(
    path: str | os.PathLike,
    source_column: str = "source",
    target_column: str = "target",
    need_targets: bool = True,
    settings: tuple[str, str] = ("data.source_column", "data.target_column"),
) -> Iterator[Pair]:
    """Source/target pairs from .tsv, .csv or .jsonl, like read_labelled."""
    columns = {source_column: settings[0], target_column: settings[1]} if need_targets else {source_column: settings[0]}
    for line, row in _table_rows(path, columns, [target_column]):
        yield Pair(row[source_column], row[target_column] if need_targets else "", line)


def read_tagged(
    path: str | os.PathLike,
    need_tags: bool = True,
    words_column: str = "tokens",
    tags_column: str = "tags",
    settings: tuple[str, str] = ("data.words_column", "data.tags_column"),
) -> Iterator[Tagged]:
    """Sentences from CoNLL (.conll: token and tag columns, the tag last; blank line between sentences) or
    CoNLL-U (.conllu: the UPOS column; comments, multiword ranges and empty nodes are not words), or from a table
    (Parquet, Arrow, a datasets folder) of a list of words and a list of tags per row. Without need_tags only the
    words are read (prediction): the tags are left empty."""
    path = Path(path)
    if is_dataset(path):
        yield from _tagged_rows(path, need_tags, words_column, tags_column, settings)
        return
    if path.suffix not in TAGGED_FORMATS:
        raise AttnkitError(
            f"{path}: tagged data must be .conll, .conllu, .parquet, .arrow or a datasets folder, got "
            f"{path.suffix or 'no extension'!r}"
        )
    conllu = path.suffix == ".conllu"
    sentences = 0
    words: list[str] = []
    tags: list[str] = []
    start, in_sentence = 0, False  # the line where the current sentence's block (comments included) starts
    for number, raw in text_lines(path):
        line = raw.strip()
        if not line:
            if words:
                yield Tagged(words, tags, start)
                sentences += 1
                words, tags = [], []
            in_sentence = False
            continue
        if not in_sentence:
            start, in_sentence = number, True
        if conllu and line.startswith("#"):
            continue
        if conllu:
            fields = raw.rstrip("\r\n").split("\t")
            if len(fields) != 10:
                raise AttnkitError(f"{path}:{number}: expected 10 tab-separated CoNLL-U columns, found {len(fields)}")
            if "-" in fields[0] or "." in fields[0]:  # multiword token range or empty node
                continue
            word, tag = fields[1], fields[3]
        else:
            fields = line.split("\t") if "\t" in line else line.split()
            if len(fields) < 2 and need_tags:
                raise AttnkitError(f"{path}:{number}: expected a token and a tag, found {len(fields)} field")
            word, tag = fields[0], fields[-1] if len(fields) > 1 else ""
        words.append(word)
        if need_tags:
            tags.append(tag)
    if words:
        yield Tagged(words, tags, start)
    elif not sentences:
        raise AttnkitError(f"{path}: no sentences")


def _tagged_rows(
    path: Path, need_tags: bool, words_column: str, tags_column: str, settings: tuple[str, str]
) -> Iterator[Tagged]:
    columns = {words_column: settings[0], **({tags_column: settings[1]} if need_tags else {})}
    for row_number, row in dataset_rows(path, columns, []):
        words, tags = row[words_column], row.get(tags_column, []) if need_tags else []
        for column, values in ((words_column, words), (tags_column, tags)):
            if not isinstance(values, list) or not all(isinstance(v, str) and v.strip() for v in values):
                raise AttnkitError(
                    f"{path}:{row_number}: column {column!r} is not a list of words or tags ({values!r})"
                )
        if not words:
            raise AttnkitError(f"{path}:{row_number}: column {words_column!r} is empty")
        if need_tags and len(tags) != len(words):
            raise AttnkitError(f"{path}:{row_number}: {len(words)} words and {len(tags)} tags")
        yield Tagged(list(words), list(tags), row_number)


def read_lines(path: str | os.PathLike) -> list[str]:
    """One input per line, blank lines included, so that outputs line up with inputs (plain text for prediction)."""
    return [line.rstrip("\n") for line in io.StringIO(read_text(path), newline=None)]  # split as stdin is


def _table_rows(path: str | os.PathLike, columns: dict[str, str], optional: list[str]) -> Iterator[tuple[int, dict]]:
    """(line, row) for each row of a TSV/CSV/JSONL file, with the required `columns` checked; each maps to the
    setting that names it (data.text_column), for the error message."""
    path = Path(path)
    if is_dataset(path):
        rows = dataset_rows(path, columns, optional)
    else:
        if path.is_dir():
            raise AttnkitError(f"{path}: not a file (nor a folder that datasets' save_to_disk wrote)")
        if path.suffix not in TABLE_FORMATS:
            known = ", ".join([*TABLE_FORMATS, *FILE_FORMATS])
            raise AttnkitError(
                f"{path}: unknown format {path.suffix or '(no extension)'!r}; use one of {known} or a datasets folder"
            )
        delimiter = TABLE_FORMATS[path.suffix]
        rows = _json_rows(path, columns) if delimiter is None else _delimited_rows(path, delimiter, columns)
    for line, row in rows:
        for column in optional:
            if isinstance(row.get(column), (int, float)):
                row[column] = str(row[column])  # JSON labels may be numbers
        for column in columns:
            value = row[column]
            if not isinstance(value, str) or not value.strip():
                problem = "empty" if value == "" else f"not text ({value!r})"
                raise AttnkitError(f"{path}:{line}: column {column!r} is {problem}")
        yield line, row


def _missing(
    where: str, kind: str, place: str, missing: list[str], found: list[str], columns: dict[str, str]
) -> AttnkitError:
    """The error for required columns (or JSON keys) absent: which, what was there, and the settings naming them."""
    names = " or ".join(repr(name) for name in missing) + (f" {place}" if place else "")
    settings = " and ".join(columns[name] for name in missing)
    pronoun = "it" if len(missing) == 1 else "them"
    return AttnkitError(
        f"{where}: no {kind} {names} (found: {', '.join(found) or 'nothing'}); name {pronoun} with {settings}"
    )


def _delimited_rows(path: Path, delimiter: str, columns: dict[str, str]) -> Iterator[tuple[int, dict]]:
    # strict: a quote that opens a field and never closes is an error, not the rest of the file read as that field
    reader = csv.reader((text for _, text in text_lines(path)), delimiter=delimiter, strict=True)
    line, rows = 1, 0
    try:
        header = next(fields for fields in reader if fields)
        names = [name.strip() for name in header]
        missing = [column for column in columns if column not in names]
        if missing:
            raise _missing(f"{path}:{reader.line_num}", "column", "in the header", missing, names, columns)
        line = reader.line_num + 1
        for fields in reader:
            if fields:
                if len(fields) != len(names):
                    sep = "tab" if delimiter == "\t" else "comma"
                    raise AttnkitError(
                        f"{path}:{line}: expected {len(names)} {sep}-separated fields ({', '.join(names)}), "
                        f"found {len(fields)}"
                    )
                if delimiter == "\t" and reader.line_num > line:  # a CSV field may hold line breaks; a TSV row not
                    raise AttnkitError(
                        f"{path}:{line}: a quote opens a field that runs on to line {reader.line_num}; a TSV row is "
                        "one line (remove the quote, or close it on this line)"
                    )
                yield line, dict(zip(names, fields))
                rows += 1
            line = reader.line_num + 1
        if not rows:
            raise AttnkitError(f"{path}: no rows after the header")
    except csv.Error as error:
        if "unexpected end of data" in str(error):
            raise AttnkitError(
                f"{path}:{line}: a quote opens a field here and never closes (remove it, or quote the whole field "
                'and double each " inside it)'
            ) from None
        raise AttnkitError(
            f"{path}:{line}: malformed quoting ({error}): a field that starts with a quote ends with one, and a quote "
            "inside it is doubled"
        ) from None


def _json_rows(path: Path, columns: dict[str, str]) -> Iterator[tuple[int, dict]]:
    for number, line in text_lines(path):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise AttnkitError(f"{path}:{number}: invalid JSON ({error.msg}, column {error.colno})") from None
        if not isinstance(row, dict):
            raise AttnkitError(f"{path}:{number}: expected a JSON object, got {type(row).__name__}")
        missing = [key for key in columns if key not in row]
        if missing:
            raise _missing(f"{path}:{number}", "key", "", missing, list(row), columns)
        yield number, row


def text_lines(path: Path) -> Iterator[tuple[int, str]]:
    """(number from 1, line with its line end) of a UTF-8 text file, read as a stream (lines end at \\n, \\r\\n or
    \\r, as csv wants them); a bad byte is an error naming its line, and a file of blank lines an empty file."""
    if not path.exists():
        raise AttnkitError(f"{path}: no such file")
    if not path.is_file():
        raise AttnkitError(f"{path}: not a file")
    blank: list[tuple[int, str]] | None = []  # leading blank lines, held until a line of text shows it is not empty
    with open(path, encoding="utf-8", newline="") as f:
        try:
            for number, line in enumerate(f, start=1):
                if number == 1:
                    line = line.removeprefix("\ufeff")
                if blank is not None and not line.strip():
                    blank.append((number, line))
                    continue
                if blank:
                    yield from blank
                blank = None
                yield number, line
        except UnicodeDecodeError:
            _name_the_bad_byte(path)
            raise
    if blank is not None:
        raise AttnkitError(f"{path}: empty file")


def _name_the_bad_byte(path: Path) -> None:
    """Raise the error for the first line of `path` that is not UTF-8 (read again, a line at a time, to find it)."""
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as error:
                raise AttnkitError(f"{path}:{number}: not valid UTF-8 (byte 0x{raw[error.start]:02x})") from None
