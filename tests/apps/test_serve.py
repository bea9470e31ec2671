"""The HTTP server: each endpoint with a tiny model, batching that keeps every request's own answer, and every
kind of bad input answered with its status code and a message naming the field, never a 500."""

import asyncio
import json
import logging
import math
import os
import re
import signal
import socket
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from attnkit.apps.cli import build_parser, main
from attnkit.apps.limits import Limits
from attnkit.apps.serve import Batcher, create_app, startup_line
from attnkit.errors import AttnkitError
from attnkit.inference.pipeline import Pipeline
from attnkit.nn.decoding import Sampling
from attnkit.training.corpus import pretrain
from tests.conftest import (
    WORDS,
    copy_pairs,
    corpus,
    pretrain_config,
    running,
    sentiment_rows,
    stopped_cleanly,
    tagging_sentences,
    trained,
)
from tests.servers import free_port, start_server


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Pipeline:
    folder = tmp_path_factory.mktemp("classifier")
    return Pipeline.load(trained(folder, "classify", sentiment_rows(200, 1), ("label", "text"), 150), device="cpu")


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Pipeline:
    folder = tmp_path_factory.mktemp("translator")
    return Pipeline.load(trained(folder, "seq2seq", copy_pairs(200, 1), ("source", "target"), 30), device="cpu")


@pytest.fixture(scope="module")
def tagger(tmp_path_factory) -> Pipeline:
    """16 learned positions: a sentence of more subwords is tagged in windows (or refused with --too-long reject)."""
    folder = tmp_path_factory.mktemp("tagger")
    learned = ("model.positions=learned", "model.max_positions=16", "data.max_length=16")
    return Pipeline.load(trained(folder, "tag", tagging_sentences(200, 1), (), 60, *learned), device="cpu")


@pytest.fixture(scope="module")
def language_model(tmp_path_factory) -> Pipeline:
    folder = tmp_path_factory.mktemp("lm")
    pretrain(pretrain_config(corpus(folder / "text"), folder / "model", "decoder", "train.max_steps=10"))
    return Pipeline.load(folder / "model", device="cpu")


@pytest.fixture
def client(classifier):
    with TestClient(create_app(classifier, Limits(max_text_chars=100, max_body_bytes=2000, max_texts=5))) as c:
        yield c


def test_predict_one_text_or_several(client, classifier):
    one = client.post("/predict", json={"text": "happy red green"})
    assert one.status_code == 200 and one.json()["prediction"]["label"] == "good"
    texts = ["sad blue", "happy small", "   "]
    many = client.post("/predict", json={"texts": texts})
    assert many.json()["predictions"] == classifier.predict(texts)  # a blank text gives null
    assert many.json()["predictions"][2] is None


def test_health_info_and_the_openapi_page(client):
    assert client.get("/health").json() == {"status": "ok"}
    info = client.get("/info").json()
    assert info["task"] == "classify" and sorted(info["labels"]) == ["bad", "good"]
    assert info["architecture"]["dim"] == 32 and info["device"] == "cpu"
    assert info["max_input_tokens"] == 256  # data.max_length
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_encode_gives_mean_pooled_vectors_normalized_on_request(client, classifier):
    plain = client.post("/encode", json={"texts": ["happy red", "sad blue green"]}).json()["embeddings"]
    assert len(plain) == 2 and len(plain[0]) == 32
    states, mask = classifier.encode(["happy red"])
    mean = (states[0][mask[0]]).mean(0).tolist()
    assert plain[0] == pytest.approx(mean, abs=1e-5)
    unit = client.post("/encode", json={"text": "happy red", "normalize": True}).json()["embedding"]
    assert math.sqrt(sum(v * v for v in unit)) == pytest.approx(1.0, abs=1e-5)


def test_generate_with_decoding_options(translator):
    with TestClient(create_app(translator)) as client:
        greedy = client.post("/generate", json={"text": "red green"}).json()["prediction"]
        assert greedy == translator.predict(["red green"])[0]
        short = client.post("/generate", json={"texts": ["red green blue"], "beam_size": 2, "max_length": 1})
        assert short.status_code == 200 and len(short.json()["predictions"][0].split()) <= 1
        unserved = client.post("/predict", json={"text": "red"})  # not a classifier: not in its API
        assert (
            unserved.status_code == 404
            and "/predict: this model (seq2seq) does not serve it; it serves /generate" in (unserved.json()["detail"])
        )
        assert "/predict" not in client.get("/openapi.json").json()["paths"]


def stream_events(response) -> list[dict]:
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
    return [json.loads(event.removeprefix("data: ")) for event in response.text.split("\n\n") if event]


def test_generate_stream_sends_each_piece_then_the_output(language_model):
    with TestClient(create_app(language_model)) as client:
        events = stream_events(client.post("/generate_stream", json={"text": "the cat", "max_new_tokens": 8}))
        *pieces, last = events
        expected = language_model.generate(["the cat"], max_new_tokens=8)[0]
        assert last == {"done": True, "output": expected} and "".join(p["piece"] for p in pieces) == expected
        assert len(pieces) > 1, expected  # greedy: a piece per token, as it is decoded
        assert stream_events(client.post("/generate_stream", json={"text": " "})) == [{"done": True, "output": None}]
        many = client.post("/generate_stream", json={"texts": ["red", "green"]})
        assert many.status_code == 400 and "one input per request" in many.json()["detail"]
        info = client.get("/info").json()
        assert info["endpoints"] == ["/generate", "/generate_stream", "/encode"] and info["inputs"] == ["text"]


def test_the_root_is_a_page_to_try_the_model_that_loads_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page.text)  # no CDN, no font service
    assert "/" not in client.get("/openapi.json").json()["paths"]


def test_the_attention_page_of_a_text(client, translator):
    page = client.get("/attention", params={"text": "happy red"})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "encoder self-attention" in page.text and 'id="attention-data"' in page.text
    with TestClient(create_app(translator)) as seq2seq:
        page = seq2seq.get("/attention", params={"text": "red green", "target": "green red"})
        assert page.status_code == 200 and "cross-attention" in page.text and "green red" in page.text


@pytest.mark.parametrize(
    ("params", "status", "message"),
    [
        ({}, 422, "text: Field required"),
        ({"text": "x" * 101}, 413, "text: 101 characters, at most 100"),
        ({"text": "   "}, 400, "no text to look at"),
        ({"text": "happy", "target": "sad"}, 400, "--target is for encoder-decoder models"),
    ],
)
def test_the_attention_page_refuses_bad_input(client, params, status, message):
    response = client.get("/attention", params=params)
    assert response.status_code == status and message in str(response.json()["detail"])


def test_the_attention_page_refuses_a_text_too_long_to_draw(classifier):
    with TestClient(create_app(classifier)) as client:
        response = client.get("/attention", params={"text": " ".join(["happy"] * 200)})
        assert response.status_code == 400 and "attention maps are drawn for at most 128" in response.json()["detail"]


def test_generate_continues_a_prompt_greedily_or_by_sampling(language_model):
    with TestClient(create_app(language_model)) as client:
        greedy = client.post("/generate", json={"texts": ["the cat", ""], "max_length": 5}).json()["predictions"]
        assert greedy == language_model.generate(["the cat", ""], max_new_tokens=5) and greedy[1] is None
        body = {"text": "the cat", "max_length": 8, "temperature": 1.5, "top_k": 20, "seed": 4}
        sampled = [client.post("/generate", json=body).json()["prediction"] for _ in range(2)]
        expected = language_model.generate(["the cat"], max_new_tokens=8, sampling=Sampling(1.5, 20, seed=4))
        assert sampled[0] == sampled[1] == expected[0]
        assert client.post("/predict", json={"text": "the cat"}).status_code == 404  # it predicts no label


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "x", "temperature": 0, "seed": 1}, 422, "body: top_k, top_p and seed shape sampling: give a temp"),
        ({"text": "x", "temperature": 1, "beam_size": 2}, 422, "beam search (beam_size > 1) and sampling"),
        ({"text": "x", "temperature": 1, "top_p": 0}, 422, "top_p: Input should be greater than 0"),
        # a temperature left out is the checkpoint's: this one decodes greedily, so a seed has nothing to draw
        ({"text": "x", "seed": 1}, 400, "top_k, top_p and seed shape sampling: give a temperature above 0"),
    ],
)
def test_generate_refuses_sampling_settings_that_do_not_fit(language_model, body, status, message):
    with TestClient(create_app(language_model)) as client:
        response = client.post("/generate", json=body)
        assert response.status_code == status and message in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "x" * 101}, 413, "text: 101 characters, at most 100"),
        ({"texts": ["ok", "x" * 101]}, 413, "texts[1]: 101 characters"),
        ({"texts": ["a"] * 6}, 413, "texts: 6 texts, at most 5"),
        ({"text": "a", "padding": "x" * 3000}, 413, "request body over 2,000 bytes"),
    ],
)
def test_bad_input_gets_its_status_code_and_names_the_field(client, body, status, message):
    response = client.post("/predict", json=body)
    assert response.status_code == status and message in str(response.json()["detail"])


EITHER = 'give either "text" (one string) or "texts" (a list of strings)'


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({}, f"body: {EITHER}"),
        ({"text": "a", "texts": ["b"]}, f"body: {EITHER}"),
        ({"text": 5}, "text: Input should be a valid string"),
        ({"texts": "not a list"}, "texts: Input should be a valid list"),
        ({"texts": ["ok", 5]}, "texts[1]: Input should be a valid string"),
        (["a"], "body: Input should be a valid dictionary or object to extract fields from"),
        (
            {"text": 5, "extra": 1},
            'text: Input should be a valid string; extra: Extra inputs are not permitted (this model takes "text" '
            '(one string) or "texts" (a list of strings))',
        ),
    ],
)
def test_a_422_is_one_line_naming_the_field(client, body, detail):
    response = client.post("/predict", json=body)
    assert response.status_code == 422 and response.json() == {"detail": detail}


@pytest.mark.parametrize(
    ("model", "endpoint", "field"),
    [
        ("classifier", "/predict", "label"),
        ("classifier", "/encode", "pooling"),
        ("language_model", "/generate", "max_tokens"),
        ("language_model", "/generate", "beam"),
    ],
)
def test_an_unknown_field_is_refused_not_ignored(request, model, endpoint, field):
    with TestClient(create_app(request.getfixturevalue(model))) as client:
        response = client.post(endpoint, json={"text": "happy red", field: 5})
    assert response.status_code == 422
    takes = ' (this model takes "text" (one string) or "texts" (a list of strings))' if endpoint != "/encode" else ""
    assert response.json() == {"detail": f"{field}: Extra inputs are not permitted{takes}"}


def test_invalid_json_is_422_and_the_server_goes_on(client):
    response = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json() == {
        "detail": "body: invalid JSON at character 1 (Expecting property name enclosed in double quotes)"
    }
    assert client.post("/generate", json={"text": "a"}).status_code == 404  # a classifier does not generate
    assert client.post("/predict", json={"text": "happy"}).status_code == 200


def test_concurrent_requests_are_batched_and_each_gets_its_own_answer(classifier, monkeypatch):
    texts = [text for _, text in sentiment_rows(50, 7)]
    expected = classifier.predict(texts)
    batches = []
    predict = classifier.predict
    monkeypatch.setattr(classifier, "predict", lambda batch: batches.append(len(batch)) or predict(batch))
    app = create_app(classifier, Limits(max_batch=16, max_wait_ms=50))

    async def requests() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://attnkit") as client:
            responses = await asyncio.gather(*(client.post("/predict", json={"text": t}) for t in texts))
        return [r.json()["prediction"] for r in responses]

    assert asyncio.run(requests()) == expected  # in order, each request its own prediction
    assert sum(batches) == 50 and max(batches) > 1 and max(batches) <= 16  # gathered, within the limit


LONG = " ".join(["happy"] * 300)  # 302 tokens with <s> and </s>: over data.max_length (256)


def test_requests_that_came_while_the_model_ran_make_the_next_batch():
    """With no wait (the default), the first request runs alone and the ten sent meanwhile run together."""
    batches: list[list[str]] = []

    def run(texts: list[str]) -> list[str]:
        batches.append(texts)
        time.sleep(0.3 if len(batches) == 1 else 0)
        return [text.upper() for text in texts]

    async def send() -> list:
        batcher = Batcher(run, Limits(), threading.Lock())
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.1)  # the model is busy with "a"
        later = [asyncio.create_task(batcher.submit([f"t{i}"])) for i in range(10)]
        answers = await asyncio.gather(first, *later)
        batcher.worker.cancel()
        return answers

    answers = asyncio.run(send())
    assert answers == [["A"], *([f"T{i}"] for i in range(10))]
    assert [len(batch) for batch in batches] == [1, 10]


def test_a_text_over_the_model_limit_is_cut_by_default(classifier):
    with TestClient(create_app(classifier)) as client:
        response = client.post("/predict", json={"text": LONG})
    assert response.status_code == 200 and response.json()["prediction"] == classifier.predict([LONG])[0]


def test_a_text_over_the_model_limit_is_refused_with_too_long_reject(classifier):
    with TestClient(create_app(classifier, Limits(too_long="reject"))) as client:
        response = client.post("/predict", json={"texts": ["happy red", LONG]})
        assert response.status_code == 413
        assert response.json()["detail"] == (
            "texts[1]: 302 tokens, over this model's limit of 256 (--too-long truncate cuts instead)"
        )
        assert client.post("/encode", json={"text": LONG}).status_code == 413
        assert client.post("/predict", json={"text": " ".join(["happy"] * 254)}).status_code == 200  # 256: fits


def test_limits_refuse_an_unknown_too_long():
    with pytest.raises(AttnkitError, match="too_long: 'cut', expected 'truncate' or 'reject'"):
        Limits(too_long="cut")


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ({"max_batch": 0}, r"--max-batch must be at least 1 \(1: batching off\), got 0"),
        ({"max_batch": -4}, r"--max-batch must be at least 1 \(1: batching off\), got -4"),
        ({"max_wait_ms": -1.0}, r"--max-wait-ms must be 0 or more \(0: no wait\), got -1"),
        ({"max_wait_ms": math.nan}, r"--max-wait-ms must be 0 or more \(0: no wait\), got nan"),
        ({"max_body_bytes": 0}, "--max-body-bytes must be at least 1, got 0"),
        ({"max_text_chars": 0}, "--max-text-chars must be at least 1, got 0"),
        ({"max_texts": 0}, "max_texts must be at least 1, got 0"),
    ],
)
def test_limits_refuse_a_limit_that_would_serve_nothing(setting, message):
    with pytest.raises(AttnkitError, match=f"^{message}$"):
        Limits(**setting)


def test_serve_refuses_a_bad_limit_in_one_line(capsys):
    assert main(["serve", "no-model-needed", "--max-batch", "0"]) == 2
    assert capsys.readouterr().err == "attnkit: error: --max-batch must be at least 1 (1: batching off), got 0\n"


def test_every_serve_option_states_its_default():
    serve = build_parser()._subparsers._group_actions[0].choices["serve"]  # noqa: SLF001
    for action in serve._actions:  # noqa: SLF001
        if action.option_strings and action.nargs != 0:  # not --help, --int8 and other on/off flags
            shown = f"{action.default:g}" if isinstance(action.default, float) else str(action.default)
            assert "default" in action.help and (action.default is None or shown in action.help), action.option_strings


def test_a_tagger_tags_every_word_of_a_sentence_longer_than_its_positions(tagger):
    sentence = " ".join(WORDS * 3)  # 45 words and <s>, </s>: 47 tokens; 16 learned positions
    with TestClient(create_app(tagger)) as client:
        tags = client.post("/predict", json={"text": sentence}).json()["prediction"]
    assert len(tags) == 45 and tags == tagger.predict([sentence])[0]
    with TestClient(create_app(tagger, Limits(too_long="reject"))) as client:
        refused = client.post("/predict", json={"text": sentence})
    assert refused.status_code == 413 and "text: 47 tokens, over this model's limit of 16" in refused.json()["detail"]


@pytest.mark.parametrize(("error", "status"), [(AttnkitError("bad input"), 400), (RuntimeError("a bug"), 500)])
def test_a_failing_request_leaves_the_others_of_its_batch_their_answers(classifier, monkeypatch, caplog, error, status):
    texts = [text for _, text in sentiment_rows(20, 7)]
    expected = [classifier.predict([text])[0] for text in texts]  # after the batch failed, each ran alone
    failed_batches = []
    predict = classifier.predict

    def failing(batch: list[str]) -> list:
        if "FAIL" in batch:
            failed_batches.append(len(batch))
            raise error
        return predict(batch)

    monkeypatch.setattr(classifier, "predict", failing)
    app = create_app(classifier, Limits(max_batch=64, max_wait_ms=200))

    async def requests() -> list:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://attnkit") as client:
            return await asyncio.gather(*(client.post("/predict", json={"text": t}) for t in ["FAIL", *texts]))

    with caplog.at_level(logging.ERROR):
        failed, *answered = asyncio.run(requests())
    assert failed_batches[0] > 1  # the failing request was batched with others
    assert failed.status_code == status
    assert [r.json()["prediction"] for r in answered] == expected
    logged = [(record.getMessage(), record.exc_info is not None) for record in caplog.records]
    assert logged == ([("the model failed on a request", True)] if status == 500 else [])  # with its traceback


@pytest.mark.parametrize("blank", ["", "   "])
def test_a_blank_text_predicts_and_generates_null(client, translator, blank):
    assert client.post("/predict", json={"text": blank}).json() == {"prediction": None}
    with TestClient(create_app(translator)) as generator:
        assert generator.post("/generate", json={"text": blank}).json() == {"prediction": None}


def test_a_blank_text_encodes_as_the_empty_input(client, classifier):
    vectors = client.post("/encode", json={"texts": ["", "   ", "happy"]}).json()["embeddings"]
    states, _ = classifier.encode([""])  # <s> </s>
    assert vectors[0] == vectors[1] == pytest.approx(states[0].mean(0).tolist(), abs=1e-5)


@pytest.mark.parametrize(
    ("model", "endpoint", "key"),
    [
        ("classifier", "/predict", "predictions"),
        ("classifier", "/encode", "embeddings"),
        ("translator", "/generate", "predictions"),
    ],
)
def test_no_texts_give_no_predictions(request, model, endpoint, key):
    with TestClient(create_app(request.getfixturevalue(model))) as client:
        response = client.post(endpoint, json={"texts": []})
    assert response.status_code == 200 and response.json() == {key: []}


@pytest.mark.parametrize(
    ("model", "line"),
    [
        (
            "classifier",
            "attnkit serve: runs/m (classify: bad, good) on http://127.0.0.1:8000 - POST /predict, /encode, "
            "/v1/embeddings",
        ),
        (
            "translator",
            "attnkit serve: runs/m (seq2seq) on http://127.0.0.1:8000 - POST /generate, /generate_stream, /encode, "
            "/v1/completions, /v1/embeddings",
        ),
    ],
)
def test_the_startup_line_names_the_model_its_endpoints_and_url(request, model, line):
    pipeline = request.getfixturevalue(model)
    assert (
        startup_line(pipeline, "runs/m", "127.0.0.1", 8000)
        == line + "; GET / (a page to try it), /attention, /info, /docs"
    )


@pytest.fixture(scope="module")
def small_classifier(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("served"), "classify", sentiment_rows(100, 1), ("label", "text"), 20)


def test_attnkit_serve_answers_on_localhost_and_stops_cleanly(small_classifier):
    with running(small_classifier, "--too-long", "reject") as (url, server):
        response = httpx.post(f"{url}/predict", json={"texts": ["happy red", "sad blue"]})
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
        assert httpx.post(f"{url}/predict", json={"text": LONG}).status_code == 413  # --too-long reject
    assert stopped_cleanly(server), server.output
    endpoints = "POST /predict, /encode, /v1/embeddings; GET"
    announced = f"attnkit serve: {small_classifier} (classify: bad, good) on {url} - {endpoints}"
    assert announced in server.output, server.output


def test_attnkit_serve_refuses_a_port_in_use_before_loading_the_model(small_classifier, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", str(small_classifier), "--port", str(port)]) == 2
    error = f"attnkit: error: 127.0.0.1:{port} is in use (another server?); pick another --port\n"
    assert capsys.readouterr().err == error


def test_sigterm_lets_a_request_in_flight_finish(small_classifier):
    answers = []
    with running(small_classifier, "--max-wait-ms", "1500") as (url, server):
        text = "happy red green"
        expected = httpx.post(f"{url}/predict", json={"text": text}).json()  # this one waited 1.5 s too
        sender = threading.Thread(target=lambda: answers.append(httpx.post(f"{url}/predict", json={"text": text})))
        sender.start()
        time.sleep(0.5)  # the request now waits in the batcher
    sender.join(timeout=30)
    assert [(r.status_code, r.json()) for r in answers] == [(200, expected)]
    assert stopped_cleanly(server), server.output


@pytest.mark.parametrize(("stop", "status"), [("SIGINT", 130), ("SIGTERM", -15)])
def test_a_stopped_server_exits_with_the_signals_status(tmp_path, stop, status):
    """Ctrl-C: attnkit's one line and 130; SIGTERM: killed by it (143 in a shell), as supervisors expect."""
    model = trained(tmp_path, "classify", sentiment_rows(40, 1), ("label", "text"), 2)
    server = start_server(model, free_port())
    try:
        server.send_signal(getattr(signal, stop))
        _, err = server.communicate(timeout=60)
    finally:
        server.kill()
    assert server.returncode == status
    assert err.endswith("attnkit: interrupted\n") == (stop == "SIGINT")


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    """A server with an API key (from the environment), a 1-second request deadline and 3 connections at most."""
    folder = tmp_path_factory.mktemp("guarded")
    model = trained(folder, "classify", sentiment_rows(40, 1), ("label", "text"), 2)
    port = free_port()
    env = {**os.environ, "ATTNKIT_API_KEY": "k3y"}
    server = start_server(model, port, "--request-timeout-s", "1", "--max-connections", "3", env=env)
    yield f"http://127.0.0.1:{port}", port
    server.kill()
    server.communicate()


def test_an_api_key_guards_every_endpoint_but_health(guarded):
    url, _ = guarded
    for open_path in ("/health", "/", "/docs", "/redoc", "/openapi.json"):  # nothing of the model's
        assert httpx.get(url + open_path).status_code == 200, open_path
    assert httpx.get(f"{url}/openapi.json").json()["info"]["description"] == "attnkit"  # not the model's path
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "k3y"}):
        refused = httpx.post(f"{url}/predict", json={"text": "red happy"}, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
        assert httpx.get(f"{url}/info", headers=headers).status_code == 401
    key = {"Authorization": "Bearer k3y"}
    assert httpx.post(f"{url}/predict", json={"text": "red happy"}, headers=key).status_code == 200
    assert httpx.get(f"{url}/info", headers=key).json()["model"].endswith("model")


def test_a_client_that_sends_its_request_slowly_is_disconnected(guarded):
    url, port = guarded
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as slow:
        slow.settimeout(10)
        closed = False
        for byte in b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n":  # one byte every 0.2 s: 7 s in all
            try:
                slow.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            if time.monotonic() - began > 3:
                closed = slow.recv(100) == b""  # the server has closed it: end of stream
                break
    assert closed and time.monotonic() - began < 5
    assert httpx.get(f"{url}/health").status_code == 200  # the others are served meanwhile


def test_requests_beyond_the_connection_cap_get_503(guarded):
    url, port = guarded
    with socket.create_connection(("127.0.0.1", port)), socket.create_connection(("127.0.0.1", port)):
        time.sleep(0.2)  # both held open: with this request's own, 3 connections
        assert httpx.get(f"{url}/health").status_code == 503
    time.sleep(0.2)
    assert httpx.get(f"{url}/health").status_code == 200


def test_listening_beyond_this_machine_without_a_key_is_one_warning_line(tmp_path, capsys):
    from attnkit.apps.serve import is_loopback, serve

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("example.org")
    for host, key, warned in (("0.0.0.0", None, True), ("0.0.0.0", "k", False), ("127.0.0.1", None, False)):
        with pytest.raises(AttnkitError, match="no such"):  # the warning comes before the model loads
            serve(str(tmp_path / "nothing"), host, free_port(), api_key=key)
        lines = capsys.readouterr().err.splitlines()
        said = f"attnkit: warning: {host} lets other machines in and no --api-key is set: anyone who reaches port"
        assert (len(lines) == 1 and lines[0].startswith(said)) == warned and len(lines) <= 1
