"""Readers: every format read right, every malformed input named by file and line, no row dropped."""

from pathlib import Path

import pytest

from attnkit.data.readers import read_labelled, read_lines, read_pairs, read_tagged
from attnkit.errors import AttnkitError


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))
    return path


def test_tsv_with_quoted_fields_and_blank_lines(tmp_path):
    path = write(tmp_path, "a.tsv", 'label\ttext\npos\t"tab\there, ""quoted"""\n\nneg\tplain\n')
    examples = list(read_labelled(path))
    assert [(e.label, e.text, e.line) for e in examples] == [("pos", 'tab\there, "quoted"', 2), ("neg", "plain", 4)]


def test_csv_and_jsonl_and_custom_columns(tmp_path):
    csv_path = write(tmp_path, "a.csv", 'stars,review\n5,great\n1,"bad, really"\n')
    assert [(e.label, e.text) for e in list(read_labelled(csv_path, "review", "stars"))] == [
        ("5", "great"),
        ("1", "bad, really"),
    ]
    jsonl = write(tmp_path, "a.jsonl", '{"text": "good", "label": 1}\n\n{"text": "meh", "label": 0}\n')
    assert [(e.label, e.text, e.line) for e in list(read_labelled(jsonl))] == [("1", "good", 1), ("0", "meh", 3)]


def test_multiline_field_reports_the_line_where_the_row_starts(tmp_path):
    path = write(tmp_path, "a.csv", 'label,text\npos,"two\nlines"\nneg\n')
    with pytest.raises(AttnkitError, match=r"a.csv:4: expected 2 comma-separated fields \(label, text\), found 1"):
        list(read_labelled(path))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "a.tsv",
            'label\ttext\npos\tfine\nneg\t"Wow, just wow\npos\tnice\n',
            r"a.tsv:3: a quote opens a field here and ",
        ),
        ("a.csv", 'label,text\npos,fine\nneg,"Wow, just wow\npos,nice\n', r"a.csv:3: a quote opens a field here and "),
        (
            "b.tsv",
            'label\ttext\nneg\t"two\nlines"\npos\tnice\n',
            r"b.tsv:2: a quote opens a field that runs on to line 3",
        ),
        ("c.tsv", 'label\ttext\nneg\t"Wow\npos\tsaid "hi"\n', r"c.tsv:2: malformed quoting"),
    ],
)
def test_a_quote_that_never_closes_is_refused_not_left_to_swallow_the_rows_after_it(tmp_path, name, content, message):
    with pytest.raises(AttnkitError, match=message):
        list(read_labelled(write(tmp_path, name, content)))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.tsv", None, "missing.tsv: no such file"),
        ("empty.tsv", "", "empty.tsv: empty file"),
        ("blank.tsv", "\n\n  \n", "blank.tsv: empty file"),
        ("header.tsv", "label\ttext\n", "header.tsv: no rows after the header"),
        ("columns.tsv", "label\ttext\npos\tfine\npos\ttoo\tmany\n", "columns.tsv:3: expected 2 tab-separated fields"),
        ("nolabel.tsv", "label\ttext\npos\tfine\n\tno label\n", "nolabel.tsv:3: column 'label' is empty"),
        ("names.tsv", "sentiment\ttext\npos\tfine\n", "names.tsv:1: no column 'label' in the header"),
        ("utf8.tsv", b"label\ttext\npos\tfine\nneg\tbad \xff byte\n", r"utf8.tsv:3: not valid UTF-8 \(byte 0xff\)"),
        ("json.jsonl", '{"text": "a", "label": "x"}\n{"text": "b"\n', r"json.jsonl:2: invalid JSON"),
        ("list.jsonl", '["a", "x"]\n', "list.jsonl:1: expected a JSON object, got list"),
        ("format.xlsx", "whatever", r"format.xlsx: unknown format '.xlsx'"),
    ],
)
def test_bad_labelled_files_name_file_line_and_problem(tmp_path, name, content, message):
    path = tmp_path / name if content is None else write(tmp_path, name, content)
    with pytest.raises(AttnkitError, match=message):
        list(read_labelled(path))


def test_labels_may_be_absent_for_prediction(tmp_path):
    path = write(tmp_path, "a.tsv", "text\nonly text\n")
    assert [(e.text, e.label) for e in list(read_labelled(path, need_labels=False))] == [("only text", "")]


def test_conll_sentences_with_hash_tokens(tmp_path):
    path = write(tmp_path, "a.conll", "#\t#\nprice\tNN\n\n\nIt\tPRP\nran\tVBD\n")
    sentences = list(read_tagged(path))
    assert [(s.words, s.tags, s.line) for s in sentences] == [
        (["#", "price"], ["#", "NN"], 1),
        (["It", "ran"], ["PRP", "VBD"], 5),
    ]


def test_conll_line_without_a_tag(tmp_path):
    path = write(tmp_path, "a.conll", "The\tDT\ncat\n")
    with pytest.raises(AttnkitError, match=r"a.conll:2: expected a token and a tag, found 1 field"):
        list(read_tagged(path))


def test_conllu_uses_upos_and_skips_comments_ranges_and_empty_nodes(tmp_path):
    rows = [
        "# sent_id = 1",
        "# text = Gitmedim mi?",
        "1-2\tGitmedim\t_\t_\t_\t_\t_\t_\t_\t_",
        "1\tGit\tgit\tVERB\tVb\t_\t0\troot\t_\t_",
        "2\tmedim\t_\tAUX\tAux\t_\t1\taux\t_\t_",
        "2.1\tghost\t_\tX\tX\t_\t_\t_\t_\t_",
        "3\tmi\tmi\tPART\tQues\t_\t1\tdiscourse\t_\t_",
    ]
    sentence = list(read_tagged(write(tmp_path, "a.conllu", "\n".join(rows) + "\n\n")))[0]
    assert (sentence.words, sentence.tags, sentence.line) == (["Git", "medim", "mi"], ["VERB", "AUX", "PART"], 1)


def test_conllu_with_wrong_column_count(tmp_path):
    path = write(tmp_path, "a.conllu", "1\tGit\tgit\tVERB\n")
    with pytest.raises(AttnkitError, match=r"a.conllu:1: expected 10 tab-separated CoNLL-U columns, found 4"):
        list(read_tagged(path))


def test_parallel_pairs(tmp_path):
    path = write(tmp_path, "p.tsv", "source\ttarget\nIn the beginning\tEn el principio\n")
    assert [(p.source, p.target, p.line) for p in list(read_pairs(path))] == [
        ("In the beginning", "En el principio", 2)
    ]
    with pytest.raises(AttnkitError, match="q.tsv:1: no column 'target' in the header"):
        list(read_pairs(write(tmp_path, "q.tsv", "source\ttext\na\tb\n")))


def test_header_error_names_line_1_the_columns_found_and_the_settings(tmp_path):
    path = write(tmp_path, "bad.csv", "sentiment,review\npos,fine\n")
    message = (
        r"/bad.csv:1: no column 'text' or 'label' in the header \(found: sentiment, review\); "
        r"name them with data.text_column and data.label_column$"
    )
    with pytest.raises(AttnkitError, match=message):
        list(read_labelled(path))


def test_header_error_names_the_settings_the_caller_gives(tmp_path):
    path = write(tmp_path, "p.tsv", "en\tes\na\tb\n")
    with pytest.raises(AttnkitError, match=r"p.tsv:1: .*\(found: en, es\); name them with src.col and tgt.col$"):
        list(read_pairs(path, settings=("src.col", "tgt.col")))


def test_jsonl_without_a_key_names_the_line_the_keys_found_and_the_setting(tmp_path):
    path = write(tmp_path, "a.jsonl", '{"text": "a", "label": "x"}\n\n{"text": "b", "stars": 5}\n')
    message = r"/a.jsonl:3: no key 'label' \(found: text, stars\); name it with data.label_column$"
    with pytest.raises(AttnkitError, match=message):
        list(read_labelled(path))


def test_prediction_never_reads_the_label_column(tmp_path):
    path = write(tmp_path, "a.tsv", "label\ttext\n\tno label here\n")
    assert [(e.text, e.label) for e in list(read_labelled(path, need_labels=False))] == [("no label here", "")]


def test_prediction_reads_only_the_words_of_conll(tmp_path):
    path = write(tmp_path, "a.conll", "The\tDT\ncat\n\nran\tVBD\n")
    assert [(s.words, s.tags) for s in list(read_tagged(path, need_tags=False))] == [
        (["The", "cat"], []),
        (["ran"], []),
    ]


def test_plain_lines_keep_blank_lines(tmp_path):
    assert read_lines(write(tmp_path, "a.txt", "one\r\n\n two \n\n")) == ["one", "", " two ", ""]


def test_shared_corpora_read_in_full():
    shared = Path(__file__).parents[3] / "shared" / "data"
    if not shared.is_dir():
        pytest.skip("../shared/data is not beside this checkout")
    assert len(list(read_labelled(shared / "sentiment/movies.dev.tsv"))) == 1000
    assert len(list(read_tagged(shared / "pos/en-oanc.dev.conll"))) == 1000
    assert len(list(read_pairs(shared / "translation/en-es.bible.dev.tsv"))) == 1000
    assert len(list(read_tagged(shared / "pos/tr-web.conllu"))) == 2541  # its README says 2,540; the file has 2,541
