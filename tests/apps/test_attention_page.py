"""The attention page in a real browser (headless chromium through selenium), and render_page's escaping without one.

Without chromium and chromedriver the browser tests skip, unless ATTNKIT_REQUIRE_BROWSER=1 (set by .ci/run), where
they fail: CI must not pass by skipping them."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from attnkit.apps.attention_page import render_page
from tests.browser import screenshot, start_browser
from tests.conftest import copy_pairs, trained

NASTY = "</script><b>x&amp;"
SOURCE = ["<s>", "▁The", "▁cat", NASTY, "猫", "</s>"]
TARGET = ["<s>", "▁El", '"gato"', "</s>"]
LAYERS, HEADS = 2, 3


def softmax_weights(queries: int, keys: int, causal: bool, seed: int) -> list:
    """[layer][head][query][key], rows summing to 1, different in every head; upper triangle 0 when causal."""
    scores = np.random.default_rng(seed).normal(scale=2.0, size=(LAYERS, HEADS, queries, keys))
    if causal:
        scores[..., np.triu(np.ones((queries, keys), dtype=bool), k=1)] = -np.inf
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    return (weights / weights.sum(-1, keepdims=True)).tolist()


DATA = {
    "model": "runs/translate",
    "text": "The cat </script><b>x&amp; 猫",
    "target": 'El "gato"',
    "prediction": None,
    "maps": [
        {"name": "encoder self-attention", "kind": "self", "queries": SOURCE, "keys": SOURCE,
         "weights": softmax_weights(len(SOURCE), len(SOURCE), causal=False, seed=0)},
        {"name": "decoder self-attention", "kind": "self", "queries": TARGET, "keys": TARGET,
         "weights": softmax_weights(len(TARGET), len(TARGET), causal=True, seed=1)},
        {"name": "cross-attention", "kind": "cross", "queries": TARGET, "keys": SOURCE,
         "weights": softmax_weights(len(TARGET), len(SOURCE), causal=False, seed=2)},
    ],
}  # fmt: skip


@pytest.fixture(scope="module")
def browser():
    driver = start_browser()
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, tmp_path):
    path = tmp_path / "attention.html"
    path.write_text(render_page(DATA), encoding="utf-8")
    browser.get(path.as_uri())
    return browser


def texts(driver, selector: str) -> list[str]:
    return driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector
    )


def weights_drawn(driver, selector: str) -> np.ndarray:
    """The data-weight of every element matching `selector`, in document order."""
    values = driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.dataset.weight)", selector
    )
    return np.array([float(v) for v in values])


def assert_shows(drawn: np.ndarray, expected, atol: float = 5.001e-5) -> None:
    """Equal to 4 decimals (the page rounds to 1e-4)."""
    assert drawn.shape == np.ravel(expected).shape
    np.testing.assert_allclose(drawn, np.ravel(expected), atol=atol)


def choose(driver, select: str, label: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, select)).select_by_visible_text(label)


def options(driver, select: str) -> list[str]:
    return texts(driver, f"#{select} option")


def test_render_page_keeps_tokens_inside_the_data_block():
    html = render_page(DATA)
    block = re.search(r'<script type="application/json" id="attention-data">(.*?)</script>', html, re.S).group(1)
    assert "<" not in block and ">" not in block and "&" not in block
    assert json.loads(block)["maps"][0]["queries"] == SOURCE


def test_render_page_rounds_weights_to_four_decimals():
    html = render_page(DATA)
    block = re.search(r'id="attention-data">(.*?)</script>', html, re.S).group(1)
    sent = np.array(json.loads(block)["maps"][2]["weights"]) / 1e4
    np.testing.assert_allclose(sent, DATA["maps"][2]["weights"], atol=5.001e-5)


def test_render_page_needs_no_network():
    assert not re.search(r"https?://|src=|@import|url\(", render_page(DATA))


def test_controls_offer_every_map_layer_and_head(page):
    assert options(page, "map") == [m["name"] for m in DATA["maps"]]
    assert options(page, "layer") == ["layer 1", "layer 2"]
    assert options(page, "head") == ["head 1", "head 2", "head 3", "mean of heads"]


def test_header_shows_model_text_and_target(page):
    from selenium.webdriver.common.by import By

    shown = {name: page.find_element(By.ID, name) for name in ["model", "text", "target", "prediction"]}
    assert shown["model"].text == DATA["model"]
    assert shown["text"].text == DATA["text"]
    assert shown["target"].text == DATA["target"]
    assert not shown["prediction"].is_displayed()


def test_every_token_is_a_label_shown_as_text(page):
    from selenium.webdriver.common.by import By

    rows = [e.text for e in page.find_elements(By.CSS_SELECTOR, "#heatmap .query-label")]
    columns = [e.text for e in page.find_elements(By.CSS_SELECTOR, "#heatmap .key-label")]
    assert rows == SOURCE and columns == SOURCE
    assert page.find_elements(By.TAG_NAME, "b") == []


def test_heatmap_draws_the_weights_of_the_first_map_layer_and_head(page):
    assert_shows(weights_drawn(page, "#heatmap td"), DATA["maps"][0]["weights"][0][0])


def test_switching_head_redraws_its_weights(page):
    choose(page, "head", "head 2")
    assert_shows(weights_drawn(page, "#heatmap td"), DATA["maps"][0]["weights"][0][1])


def test_mean_of_heads_averages_the_chosen_layer(page):
    choose(page, "layer", "layer 2")
    choose(page, "head", "mean of heads")
    mean = np.mean(DATA["maps"][0]["weights"][1], axis=0)
    assert_shows(weights_drawn(page, "#heatmap td"), mean, atol=1.001e-4)  # a mean of weights rounded to 1e-4


def test_switching_to_cross_attention_redraws_with_its_tokens(page):
    choose(page, "map", "cross-attention")
    assert texts(page, "#heatmap .query-label") == TARGET
    assert texts(page, "#heatmap .key-label") == SOURCE
    assert_shows(weights_drawn(page, "#heatmap td"), DATA["maps"][2]["weights"][0][0])


def test_strip_shows_the_first_query_then_the_hovered_one(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    weights = DATA["maps"][0]["weights"][0][0]
    assert texts(page, "#weights .key-token .token") == SOURCE
    assert_shows(weights_drawn(page, "#weights .key-token"), weights[0])
    row = page.find_elements(By.CSS_SELECTOR, "#heatmap .query-label")[3]
    ActionChains(page).move_to_element(row).perform()
    assert page.find_element(By.ID, "query").text == NASTY
    assert_shows(weights_drawn(page, "#weights .key-token"), weights[3])


def test_page_logs_no_javascript_errors(page):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    for name in ["decoder self-attention", "cross-attention"]:
        choose(page, "map", name)
        choose(page, "head", "mean of heads")
        ActionChains(page).move_to_element(page.find_elements(By.CSS_SELECTOR, "#heatmap td")[-1]).perform()
    assert [entry for entry in page.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_screenshot_writes_a_png(tmp_path):
    page = tmp_path / "attention.html"
    page.write_text(render_page(DATA), encoding="utf-8")
    screenshot(page, tmp_path / "attention.png")
    png = (tmp_path / "attention.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000


def test_the_page_of_a_trained_model_shows_its_maps(browser, tmp_path_factory):
    """End to end: `attnkit attention` on a tiny encoder-decoder, its page in the browser."""
    from attnkit.apps.attention_maps import attention
    from attnkit.apps.cli import main
    from attnkit.inference.pipeline import Pipeline

    model = trained(
        tmp_path_factory.mktemp("translator"),
        "seq2seq",
        copy_pairs(100, 1),
        ("source", "target"),
        10,
        "model.num_layers=2",
    )
    out = tmp_path_factory.mktemp("maps")
    assert main(["attention", str(model), "red green blue", "--target", "blue red", "--out", str(out), "--no-png"]) == 0
    result = attention(Pipeline.load(model, device="cpu"), "red green blue", "blue red")
    browser.get((out / "attention.html").as_uri())
    assert options(browser, "map") == ["encoder self-attention", "decoder self-attention", "cross-attention"]
    assert options(browser, "layer") == ["layer 1", "layer 2"]
    choose(browser, "map", "cross-attention")
    choose(browser, "layer", "layer 2")
    choose(browser, "head", "head 2")
    cross = result.maps[2]
    assert texts(browser, "#heatmap .query-label") == cross.queries
    assert texts(browser, "#heatmap .key-label") == cross.keys
    assert_shows(weights_drawn(browser, "#heatmap td"), cross.weights[1, 1].numpy())
