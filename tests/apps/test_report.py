"""`attnkit evaluate --report DIR`: one self-contained page per evaluation, its figures as PNG, and report.json; what
it shows is each task's own (Task.examine), checked here on every task shape and in headless chromium."""

from __future__ import annotations

import json

import pytest

from attnkit.apps.cli import main
from attnkit.inference.pipeline import Pipeline
from tests.browser import start_browser
from tests.conftest import (
    copy_pairs,
    pair_rows,
    score_rows,
    sentiment_rows,
    tagging_sentences,
    trained,
    write_conll,
    write_tsv,
)

pytest.importorskip("matplotlib")

SHAPES = {  # task: (rows of a training file and of a test file, header, steps)
    "classify": (sentiment_rows, ("label", "text"), 60),
    "tag": (tagging_sentences, (), 3),  # few steps: confusions to show
    "seq2seq": (copy_pairs, ("source", "target"), 60),
    "pair": (pair_rows, ("text_a", "text_b", "label"), 20),
    "regress": (score_rows, ("text", "label"), 40),
}


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Each shape's model, evaluated on a test file with --report: {task: (report folder, printed metrics, model)}."""
    made = {}
    for task, (rows, header, steps) in SHAPES.items():
        folder = tmp_path_factory.mktemp(task)
        model = trained(folder, task, rows(200, 1), header, steps)
        test = write_conll(folder / "test.conll", rows(60, 7)) if task == "tag" else write_tsv(
            folder / "test.tsv", header, rows(60, 7))  # fmt: skip
        out = folder / "report"
        assert main(["evaluate", str(model), "--data", str(test), "--report", str(out), "--json"]) == 0
        made[task] = (out, model, test)
    return made


@pytest.mark.parametrize("task", list(SHAPES))
def test_the_report_holds_the_metrics_its_figures_and_the_page(reports, task, capsys):
    out, model, test = reports[task]
    metrics, _, _ = Pipeline.load(model, device="cpu").evaluate(test)
    saved = json.loads((out / "report.json").read_text())
    assert saved["format"] == "attnkit" and saved["metrics"] == json.loads(json.dumps(metrics))
    page = (out / "report.html").read_text()
    pngs = sorted(out.glob("*.png"))
    assert pngs and all(png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for png in pngs)
    assert page.count("data:image/png;base64,") == len(pngs)  # each figure in the page itself
    assert "http://" not in page and "https://" not in page and "<script" not in page


def test_a_classifiers_report_lists_its_surest_mistakes(reports):
    out, model, test = reports["classify"]
    _, examples, predictions = Pipeline.load(model, device="cpu").evaluate(test)
    wrong = sorted((p["probability"], e.line) for e, p in zip(examples, predictions) if p["label"] != e.label)[::-1][
        :25
    ]
    page = (out / "report.html").read_text()
    mistakes = page.split("The most confident mistakes")[1]
    assert [int(line) for line in _first_cells(mistakes)] == [line for _, line in wrong]


def _first_cells(table_html: str) -> list[str]:
    return [row.split("<td>")[1].split("</td>")[0] for row in table_html.split("<tbody>")[1].split("<tr>")[1:]]


@pytest.mark.parametrize(("task", "expected"), [
    ("classify", ["Confusion matrix", "Per class", "The most confident mistakes"]),
    ("tag", ["Per tag", "The most frequent confusions"]),
    ("seq2seq", ["Each output's chrF", "The lowest-scoring outputs"]),
    ("pair", ["Confusion matrix", "Per class", "The most confident mistakes"]),
    ("regress", ["Predicted against gold", "The largest errors"]),
])  # fmt: skip
def test_the_page_shows_each_tasks_findings_in_a_browser(reports, task, expected):
    from selenium.webdriver.common.by import By

    out, _, _ = reports[task]
    browser = start_browser(extra=["--host-resolver-rules=MAP * ~NOTFOUND"])  # nothing from elsewhere
    try:
        browser.get((out / "report.html").resolve().as_uri())
        assert [h.text for h in browser.find_elements(By.TAG_NAME, "h2")] == expected
        images = browser.find_elements(By.TAG_NAME, "img")
        assert images and all(browser.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images)
        if task == "tag":  # each confusion shows its word marked in its sentence
            marked = browser.find_elements(By.TAG_NAME, "mark")
            rows = browser.find_elements(By.CSS_SELECTOR, "table.rows")[-1].find_elements(By.CSS_SELECTOR, "tbody tr")
            assert len(marked) >= len(rows) > 0
    finally:
        browser.quit()


def test_a_report_replaces_an_earlier_one_but_never_another_folder(reports, tmp_path, capsys):
    out, model, test = reports["classify"]
    assert main(["evaluate", str(model), "--data", str(test), "--report", str(out)]) == 0  # again: replaced
    assert sorted(p.name for p in out.iterdir()) == ["figure1.png", "report.html", "report.json"]
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    capsys.readouterr()
    assert main(["evaluate", str(model), "--data", str(test), "--report", str(mine)]) == 2
    assert "exists and is not an attnkit report" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "keep"
    assert main(["evaluate", str(model), "--data", str(test), "--report", str(model)]) == 2  # a checkpoint: never
    assert (model / "config.json").is_file()
