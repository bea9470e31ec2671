"""Data where Hugging Face and pandas users keep it: Parquet, Arrow and datasets' save_to_disk folders, read for
every task shape with the same column settings as a TSV, class names for ClassLabel numbers, and one line for a
missing column, a wrong type or an empty table."""

from __future__ import annotations

import pytest

from attnkit.apps.card import read_facts
from attnkit.config import DataConfig
from attnkit.data.arrow import split_path
from attnkit.errors import AttnkitError
from attnkit.tasks import TASKS
from tests.conftest import copy_pairs, pair_rows, score_rows, sentiment_rows, tagging_sentences, write_conll, write_tsv

datasets = pytest.importorskip("datasets")
pytest.importorskip("pyarrow")

LABELS = ["bad", "good"]


def labelled(rows: list[tuple[str, str]]) -> datasets.Dataset:
    """A classifier's rows as datasets holds them: the label a ClassLabel (a number per row)."""
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=LABELS)})
    return datasets.Dataset.from_dict(
        {"label": [LABELS.index(label) for label, _ in rows], "text": [text for _, text in rows]}, features=features
    )


@pytest.mark.parametrize("form", ["parquet", "arrow", "folder"])
def test_a_classifiers_data_reads_as_the_same_tsv_reads(tmp_path, form):
    rows = sentiment_rows(30, 1)
    dataset = labelled(rows)
    path = {"parquet": tmp_path / "d.parquet", "arrow": tmp_path / "d.arrow", "folder": tmp_path / "d"}[form]
    if form == "parquet":
        dataset.to_parquet(str(path))
    elif form == "folder":
        dataset.save_to_disk(str(path))
    else:
        dataset.save_to_disk(str(tmp_path / "saved"))
        path = next((tmp_path / "saved").glob("*.arrow"))  # the Arrow file save_to_disk wrote
    tsv = write_tsv(tmp_path / "d.tsv", ("label", "text"), rows)
    read = TASKS["classify"].read(DataConfig(), path)
    expected = TASKS["classify"].read(DataConfig(), tsv)
    assert [(e.text, e.label) for e in read] == [(e.text, e.label) for e in expected]  # names, not numbers
    assert [e.line for e in read] == list(range(1, 31))  # row numbers


@pytest.mark.parametrize(
    ("task", "columns", "rows"),
    [
        ("pair", ("text_a", "text_b", "label"), pair_rows(20, 1)),
        ("regress", ("text", "label"), score_rows(20, 1)),
        ("seq2seq", ("source", "target"), copy_pairs(20, 1)),
    ],
)
def test_every_table_shape_reads_from_parquet(tmp_path, task, columns, rows):
    table = {name: [row[i] for row in rows] for i, name in enumerate(columns)}
    if task == "regress":
        table["label"] = [float(value) for value in table["label"]]  # a number column, not text
    datasets.Dataset.from_dict(table).to_parquet(str(tmp_path / "d.parquet"))
    tsv = write_tsv(tmp_path / "d.tsv", columns, rows)
    read, expected = (
        [same(vars(e)) for e in TASKS[task].read(DataConfig(), path)] for path in (tmp_path / "d.parquet", tsv)
    )
    assert read == [{**e, "line": i} for i, e in enumerate(expected, start=1)]


def same(example: dict) -> dict:
    """An example's fields, a regressor's number as a number (the table's -1.0 is the TSV's -1)."""
    label = example.get("label")
    return {**example, "label": float(label)} if label and label.lstrip("-").replace(".", "").isdigit() else example


def test_a_taggers_data_reads_lists_of_words_and_class_names(tmp_path):
    sentences = tagging_sentences(10, 1)
    tags = sorted({tag for sentence in sentences for _, tag in sentence})
    features = datasets.Features({
        "tokens": datasets.Sequence(datasets.Value("string")),
        "pos_tags": datasets.Sequence(datasets.ClassLabel(names=tags)),
    })  # fmt: skip
    words, numbers = [[w for w, _ in s] for s in sentences], [[tags.index(t) for _, t in s] for s in sentences]
    dataset = datasets.Dataset.from_dict({"tokens": words, "pos_tags": numbers}, features=features)
    dataset.save_to_disk(str(tmp_path / "tagged"))
    read = TASKS["tag"].read(DataConfig(tags_column="pos_tags"), tmp_path / "tagged")
    expected = TASKS["tag"].read(DataConfig(), write_conll(tmp_path / "d.conll", sentences))
    assert [(e.words, e.tags) for e in read] == [(e.words, e.tags) for e in expected]
    with pytest.raises(
        AttnkitError, match=r"tagged: no column 'tags' \(found: tokens, pos_tags\); name it with data.tags_column"
    ):
        TASKS["tag"].read(DataConfig(), tmp_path / "tagged")


def test_a_dataset_dicts_split_is_chosen_by_role(tmp_path):
    splits = datasets.DatasetDict(
        {"train": labelled(sentiment_rows(8, 1)), "validation": labelled(sentiment_rows(4, 2))}
    )
    splits.save_to_disk(str(tmp_path / "dd"))
    folder = str(tmp_path / "dd")
    assert split_path(folder, ("train",)) == str(tmp_path / "dd" / "train")
    assert split_path(folder, ("validation", "dev")) == str(tmp_path / "dd" / "validation")
    with pytest.raises(AttnkitError, match=r"dd: a dataset dict with the splits train, validation and no test; name"):
        split_path(folder, ("test",))
    with pytest.raises(
        AttnkitError,
        match=r"dd: a dataset dict with the splits train, validation: give one split's folder \(.*dd/validation\)",
    ):
        TASKS["classify"].read(DataConfig(), folder)  # evaluate --data DIR: which split is not guessed
    assert len(TASKS["classify"].read(DataConfig(), tmp_path / "dd" / "validation")) == 4


@pytest.mark.parametrize(
    ("table", "settings", "message"),
    [
        ({"text": ["a", "b"]}, {}, r"d.parquet: no column 'label' \(found: text\); name it with data.label_column"),
        ({"review": ["a"], "label": ["x"]}, {"text_column": "body"},
         r"no column 'body' \(found: review, label\); name it with data.text_column"),
        ({"text": ["a", None], "label": ["x", "y"]}, {}, r"d.parquet:2: column 'text' is not text \(None\)"),
        ({"text": ["a", ""], "label": ["x", "y"]}, {}, r"d.parquet:2: column 'text' is empty"),
        ({"text": [1, 2], "label": ["x", "y"]}, {}, r"d.parquet:1: column 'text' is not text \(1\)"),
        ({"text": [], "label": []}, {}, r"d.parquet: no rows"),
    ],
)  # fmt: skip
def test_a_bad_table_is_one_line_naming_the_file_and_column(tmp_path, table, settings, message):
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(pyarrow.table(table), str(tmp_path / "d.parquet"))
    with pytest.raises(AttnkitError, match=message):
        TASKS["classify"].read(DataConfig(**settings), tmp_path / "d.parquet")


def test_a_file_that_is_not_parquet_is_one_line(tmp_path):
    (tmp_path / "d.parquet").write_text("label\ttext\n")
    with pytest.raises(AttnkitError, match=r"d.parquet: cannot read it"):
        TASKS["classify"].read(DataConfig(), tmp_path / "d.parquet")


def test_a_run_trains_on_a_dataset_dicts_splits_and_evaluates_a_parquet_file(tmp_path, capsys):
    from attnkit.apps.cli import main
    from tests.conftest import TINY

    splits = datasets.DatasetDict({
        "train": labelled(sentiment_rows(200, 1)),
        "validation": labelled(sentiment_rows(40, 2)),
        "test": labelled(sentiment_rows(30, 4)),
    })  # fmt: skip
    splits.save_to_disk(str(tmp_path / "dd"))
    labelled(sentiment_rows(40, 3)).to_parquet(str(tmp_path / "test.parquet"))
    folder = str(tmp_path / "dd")
    args = ["train", "--task", "classify", "--train", folder, "--dev", folder, "--test", folder]
    args += ["--out", str(tmp_path / "m"), "--max-steps", "30", *[a for s in TINY for a in ("--set", s)]]
    assert main(args) == 0
    assert "dev: accuracy" in capsys.readouterr().out
    facts = read_facts(tmp_path / "m")  # each role read its own split
    assert {split: (described["file"], described["examples"]) for split, described in facts.data.items()} == {
        "train": (f"{folder}/train", 200), "dev": (f"{folder}/validation", 40), "test": (f"{folder}/test", 30)
    }  # fmt: skip
    tsv = write_tsv(tmp_path / "test.tsv", ("label", "text"), sentiment_rows(40, 3))
    printed = []
    for data in (tmp_path / "test.parquet", tsv):
        assert main(["evaluate", str(tmp_path / "m"), "--data", str(data), "--json"]) == 0
        printed.append(capsys.readouterr().out)
    assert printed[0] == printed[1]  # the same metrics as from the same rows in a TSV
