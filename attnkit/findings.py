"""What an evaluation shows beyond its metrics: charts and tables of plain values, which each task fills
(Task.examine, attnkit/tasks/evaluation.py) and `attnkit evaluate --report` draws (apps/report.py) without knowing the
task."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass
class Chart:
    """matrix: `values` rows x columns of counts (`rows`, `columns` name them); bars: a value per name in `rows`
    (0 to 1); histogram: `values` from 0 to 100; scatter: `values` as (x, y) pairs, with the line y = x."""

    kind: Literal["matrix", "bars", "histogram", "scatter"]
    title: str
    note: str
    x_label: str
    y_label: str
    values: list
    rows: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)


@dataclass
class Marked:
    """A text with one span marked: a word among its neighbours."""

    before: str
    marked: str
    after: str


@dataclass
class Table:
    title: str
    note: str
    headers: list[str]
    rows: list[list[str | Marked]]  # a cell's new lines are lines of its own


Finding = Chart | Table
