"""The pages `attnkit serve` answers in a real browser (headless chromium through selenium), with every host but
this machine unreachable, as on a machine without internet: they must load nothing from elsewhere."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests.browser import start_browser
from tests.conftest import copy_pairs, pair_rows, sentiment_rows, tagging_sentences, trained
from tests.servers import free_port, start_server

OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"  # no name but this machine's resolves


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = trained(tmp_path_factory.mktemp("pages"), "classify", sentiment_rows(40, 1), ("label", "text"), 2)
    port = free_port()
    process = start_server(model, port)
    yield f"http://127.0.0.1:{port}"
    process.kill()
    process.communicate()


@pytest.fixture(scope="module")
def browser():
    driver = start_browser(extra=[OFFLINE])
    yield driver
    driver.quit()


@pytest.mark.parametrize(("page", "listed"), [("/docs", ".opblock-summary-path"), ("/redoc", "[data-section-id]")])
def test_the_api_docs_list_the_endpoints_offline(server, browser, page, listed):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server + page)
    WebDriverWait(browser, 30).until(lambda b: "/predict" in b.find_element(By.TAG_NAME, "body").text)
    text = browser.find_element(By.TAG_NAME, "body").text
    assert all(path in text for path in ("/predict", "/encode", "/health", "/info"))
    assert browser.find_elements(By.CSS_SELECTOR, listed)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """A server per task shape the page draws differently: a label, a tag per word, a pair of texts, an output
    streamed (greedy: a piece per token), each with its attention page."""
    folder = tmp_path_factory.mktemp("shapes")
    for shape in ("classify", "tag", "pair", "seq2seq"):
        (folder / shape).mkdir()
    models = {
        "classify": trained(folder / "classify", "classify", sentiment_rows(200, 1), ("label", "text"), 150),
        "tag": trained(folder / "tag", "tag", tagging_sentences(200, 1), (), 60),
        "pair": trained(folder / "pair", "pair", pair_rows(200, 1), ("text_a", "text_b", "label"), 20),
        "seq2seq": trained(folder / "seq2seq", "seq2seq", copy_pairs(300, 1), ("source", "target"), 200,
                           "task.beam_size=1"),
    }  # fmt: skip
    running = {}
    try:
        for name, model in models.items():
            port = free_port()
            running[name] = (start_server(model, port), f"http://127.0.0.1:{port}", model)
        yield {name: (url, model) for name, (_, url, model) in running.items()}
    finally:
        for process, _, _ in running.values():
            process.kill()
            process.communicate()


def try_page(browser, url: str, texts: dict[str, str]):
    """Open the page at `url`, type `texts` into its boxes, run, and wait for the answer and the attention page."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(url + "/")
    WebDriverWait(browser, 30).until(lambda b: b.find_elements(By.ID, next(iter(texts))))
    for name, text in texts.items():
        browser.find_element(By.ID, name).send_keys(text)
    browser.find_element(By.ID, "run").click()
    WebDriverWait(browser, 60).until(
        lambda b: "hidden" not in b.find_element(By.ID, "attention").get_attribute("class")
    )
    assert browser.find_element(By.ID, "error").text == ""
    return browser.find_element(By.ID, "answer")


def screenshot_page(url: str, texts: dict[str, str], out: Path, width: int = 1200, height: int = 1160) -> None:
    """A PNG of the page at `url` after running `texts` (also how docs/try_page.png is made, from a server of the
    all-MiniLM-L6-v2 movie-review model: python -c "from tests.apps.test_serve_pages import screenshot_page; ...")."""
    driver = start_browser(width, height, extra=[OFFLINE])
    try:
        try_page(driver, url, texts)
        time.sleep(0.5)  # the frame draws its heatmap
        driver.save_screenshot(str(out))
    finally:
        driver.quit()


def test_the_page_shows_a_label_and_its_probability_then_the_attention(servers, browser, tmp_path):
    from selenium.webdriver.common.by import By

    from attnkit.inference.pipeline import Pipeline

    url, model = servers["classify"]
    answer = try_page(browser, url, {"text": "red happy quick"})
    expected = Pipeline.load(model, device="cpu").predict(["red happy quick"])[0]
    assert answer.find_element(By.CLASS_NAME, "label").text == expected["label"]
    assert answer.find_element(By.CLASS_NAME, "probability").text == f"probability {expected['probability']:.3f}"
    browser.switch_to.frame("attention")
    try:  # the attention page of the same input, drawn in the frame
        assert "red happy quick" in browser.find_element(By.TAG_NAME, "body").text
        assert browser.find_elements(By.CSS_SELECTOR, "#heatmap td")
    finally:
        browser.switch_to.default_content()
    screenshot_page(url, {"text": "red happy quick"}, tmp_path / "page.png")
    assert (tmp_path / "page.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_page_shows_a_tag_under_each_word(servers, browser):
    from selenium.webdriver.common.by import By

    from attnkit.inference.pipeline import Pipeline

    url, model = servers["tag"]
    sentence = " ".join(word for word, _ in tagging_sentences(1, 9)[0])
    answer = try_page(browser, url, {"text": sentence})
    pairs = [(p.find_element(By.CLASS_NAME, "word").text, p.find_element(By.CLASS_NAME, "tag").text)
             for p in answer.find_elements(By.CLASS_NAME, "pair")]  # fmt: skip
    assert pairs == list(zip(sentence.split(), Pipeline.load(model, device="cpu").predict([sentence])[0]))


def test_the_page_of_a_pair_model_has_two_boxes(servers, browser):
    from selenium.webdriver.common.by import By

    from attnkit.inference.pipeline import Pipeline

    url, model = servers["pair"]
    (a, b, _), *_ = pair_rows(1, 5)
    answer = try_page(browser, url, {"text_a": a, "text_b": b})
    expected = Pipeline.load(model, device="cpu").predict([(a, b)])[0]
    assert answer.find_element(By.CLASS_NAME, "label").text == expected["label"]


def test_the_page_streams_generated_text_in_pieces(servers, browser):
    from selenium.webdriver.common.by import By

    from attnkit.inference.pipeline import Pipeline

    url, model = servers["seq2seq"]
    source = next(source for source, _ in copy_pairs(20, 9) if len(source.split()) >= 3)
    answer = try_page(browser, url, {"text": source})
    output = answer.find_element(By.ID, "output")
    expected = Pipeline.load(model, device="cpu").generate([source])[0]
    assert output.text == expected and output.get_attribute("data-done") == "true"
    assert int(output.get_attribute("data-pieces")) > 1  # a piece per token, as it was decoded


def test_the_page_asks_for_the_servers_api_key(servers, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, model = servers["classify"]
    port = free_port()
    process = start_server(model, port, env={**os.environ, "ATTNKIT_API_KEY": "k3y"})
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "key-row").is_displayed())
        assert "API key" in browser.find_element(By.ID, "error").text
        browser.find_element(By.ID, "key").send_keys("k3y")
        browser.find_element(By.ID, "use-key").click()
        answer = try_page(browser, f"http://127.0.0.1:{port}", {"text": "red happy quick"})  # the key is kept
        assert answer.find_element(By.CLASS_NAME, "label").text in ("good", "bad")
    finally:
        browser.execute_script("sessionStorage.clear()")
        process.kill()
        process.communicate()


def test_the_page_chats_with_a_chat_model(browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    import attnkit
    from tests.ggufs import tiny_llama, write_gguf

    model = write_gguf(tmp_path / "chat.gguf", tiny_llama(vocab=320), "gpt2")
    local = attnkit.load(model, device="cpu")
    port = free_port()
    process = start_server(model, port)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "message").is_displayed())
        conversation = []
        for turn, text in enumerate(["hello there", "and then?"], start=1):
            browser.find_element(By.ID, "message").send_keys(text)
            browser.find_element(By.ID, "send").click()
            reply = WebDriverWait(browser, 60).until(
                lambda b, turn=turn: (
                    b.find_element(By.ID, f"reply-{2 * turn - 1}").get_attribute("data-done")
                    and b.find_element(By.ID, f"reply-{2 * turn - 1}")
                )
            )
            conversation.append({"role": "user", "content": text})
            expected = local.chat([conversation], max_new_tokens=512)[0]
            assert reply.get_attribute("textContent") == expected and browser.find_element(By.ID, "error").text == ""
            conversation.append({"role": "assistant", "content": expected})
        assert len(browser.find_elements(By.CSS_SELECTOR, "#log .turn")) == 4
    finally:
        process.kill()
        process.communicate()
