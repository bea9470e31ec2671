"""The HTTP server: each endpoint with a tiny model, batching that keeps every request's own answer, and every
kind of bad input answered with its status code and a message naming the field, never a 500."""

import asyncio
import math
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from attnkit.cli import main
from attnkit.pipeline import Pipeline
from attnkit.serve import Limits, create_app
from tests.conftest import TINY, copy_pairs, sentiment_rows, write_tsv

SETS = [item for setting in TINY for item in ("--set", setting)]


def trained(folder: Path, task: str, rows: list, header: tuple, steps: int) -> Path:
    train = write_tsv(folder / "train.tsv", header, rows)
    args = ["train", "--task", task, "--train", train, "--out", folder / "model", "--max-steps", str(steps), *SETS]
    assert main([str(a) for a in args]) == 0
    return folder / "model"


@pytest.fixture(scope="module")
def classifier(tmp_path_factory) -> Pipeline:
    folder = tmp_path_factory.mktemp("classifier")
    return Pipeline.load(trained(folder, "classify", sentiment_rows(200, 1), ("label", "text"), 150), device="cpu")


@pytest.fixture(scope="module")
def translator(tmp_path_factory) -> Pipeline:
    folder = tmp_path_factory.mktemp("translator")
    return Pipeline.load(trained(folder, "seq2seq", copy_pairs(200, 1), ("source", "target"), 30), device="cpu")


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
    assert "/predict" in client.get("/openapi.json").json()["paths"]


def test_encode_gives_mean_pooled_vectors_normalized_on_request(client, classifier):
    plain = client.post("/encode", json={"texts": ["happy red", "sad blue green"]}).json()["predictions"]
    assert len(plain) == 2 and len(plain[0]) == 32
    states, mask = classifier.encode(["happy red"])
    mean = (states[0][mask[0]]).mean(0).tolist()
    assert plain[0] == pytest.approx(mean, abs=1e-5)
    unit = client.post("/encode", json={"text": "happy red", "normalize": True}).json()["prediction"]
    assert math.sqrt(sum(v * v for v in unit)) == pytest.approx(1.0, abs=1e-5)


def test_generate_with_decoding_options(translator):
    with TestClient(create_app(translator)) as client:
        greedy = client.post("/generate", json={"text": "red green"}).json()["prediction"]
        assert greedy == translator.predict(["red green"])[0]
        short = client.post("/generate", json={"texts": ["red green blue"], "beam_size": 2, "max_length": 1})
        assert short.status_code == 200 and len(short.json()["predictions"][0].split()) <= 1
        assert client.post("/predict", json={"text": "red"}).status_code == 400  # not a classifier


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"text": "x" * 101}, 413, "text: 101 characters, at most 100"),
        ({"texts": ["ok", "x" * 101]}, 413, "texts[1]: 101 characters"),
        ({"texts": ["a"] * 6}, 413, "texts: 6 texts, at most 5"),
        ({"text": "a", "padding": "x" * 3000}, 413, "request body over 2,000 bytes"),
        ({}, 422, 'give either "text"'),
        ({"text": "a", "texts": ["b"]}, 422, 'give either "text"'),
        ({"text": 5}, 422, "text"),
        ({"texts": "not a list"}, 422, "texts"),
    ],
)
def test_bad_input_gets_its_status_code_and_names_the_field(client, body, status, message):
    response = client.post("/predict", json=body)
    assert response.status_code == status and message in str(response.json()["detail"])


def test_invalid_json_is_422_and_the_server_goes_on(client):
    response = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert client.post("/generate", json={"text": "a"}).status_code == 400  # a classifier does not generate
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


def test_attnkit_serve_answers_on_localhost_and_stops_cleanly(tmp_path):
    model = trained(tmp_path, "classify", sentiment_rows(100, 1), ("label", "text"), 20)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "attnkit", "serve", str(model), "--port", str(port), "--device", "cpu"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                assert httpx.get(f"{url}/health").json() == {"status": "ok"}
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                time.sleep(0.2)
        response = httpx.post(f"{url}/predict", json={"texts": ["happy red", "sad blue"]})
        assert response.status_code == 200 and len(response.json()["predictions"]) == 2
    finally:
        server.send_signal(signal.SIGTERM)
        output = server.communicate(timeout=30)[0]
    # uvicorn finishes the requests in flight, then exits by the signal it was sent (-15), as a service should
    assert server.returncode in (0, -signal.SIGTERM) and "Application shutdown complete" in output, output
    assert "Traceback" not in output
