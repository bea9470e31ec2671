"""`attnkit serve` under sustained load on 127.0.0.1: concurrent clients send good requests mixed with bad ones
(broken JSON, wrong types, unknown fields, texts over the limit, junk bytes, a wrong endpoint). Every good request
gets its 200, every bad one its 4xx, none a 5xx, and the server's memory does not grow.

CI runs a 20-second version at 8 clients. The soak itself, 10 minutes at 32 clients, is run by hand and prints
the figures that docs/benchmarks.md quotes:

    .venv/bin/python -m pytest -m slow tests/apps/test_serve_soak.py -s
"""

import asyncio
import json
import random
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import running, sentiment_rows, stopped_cleanly, trained

TEXTS = [text for _, text in sentiment_rows(200, 3)]
MAX_TEXT_CHARS = 500


def good_request(draw: random.Random) -> tuple[str, str, dict]:
    """(method, path, request options) of a request the server must answer with 200."""
    text = draw.choice(TEXTS)
    return draw.choice(
        [
            ("POST", "/predict", {"json": {"text": text}}),
            ("POST", "/predict", {"json": {"texts": draw.sample(TEXTS, draw.randint(1, 8))}}),
            ("POST", "/encode", {"json": {"text": text, "normalize": True}}),
            ("GET", "/attention", {"params": {"text": text}}),
            ("GET", "/health", {}),
        ]
    )


def bad_request(draw: random.Random) -> tuple[str, str, dict]:
    """(method, path, request options) of a request the server must refuse with a 4xx."""
    junk = bytes(draw.randrange(256) for _ in range(draw.randrange(1, 400)))
    return draw.choice(
        [
            ("POST", "/predict", {"content": b'{"text": "unclosed', "headers": {"content-type": "application/json"}}),
            ("POST", "/predict", {"json": {"text": 5}}),
            ("POST", "/predict", {"json": {"texts": ["fine", None]}}),
            ("POST", "/predict", {"json": {"text": "fine", "label": "good"}}),
            ("POST", "/predict", {"json": {"text": "x" * (MAX_TEXT_CHARS + 1)}}),
            ("POST", "/encode", {"content": junk, "headers": {"content-type": "application/json"}}),
            ("POST", "/generate", {"json": {"text": "a classifier does not generate"}}),
            ("GET", "/attention", {"params": {"text": "fine", "target": "only for encoder-decoders"}}),
            ("GET", "/attention", {"params": {"text": "   "}}),
            ("POST", "/predict", {"json": {}}),
        ]
    )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


async def soak(url: str, pid: int, clients: int, seconds: float, bad_share: float = 0.3) -> dict:
    """Clients send requests back to back for `seconds`; the server's memory is sampled every few seconds."""
    counts = {"good": 0, "bad": 0, "good_failed": 0, "bad_not_4xx": 0, "5xx": 0}
    failures: list[str] = []
    memory: list[tuple[float, int]] = []
    began = time.monotonic()
    stop = began + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        draw = random.Random(index)
        while time.monotonic() < stop:
            bad = draw.random() < bad_share
            method, path, options = (bad_request if bad else good_request)(draw)
            try:
                status = (await http.request(method, f"{url}{path}", **options)).status_code
            except httpx.HTTPError as error:  # a refused connection or a timeout counts against the server
                status = f"{type(error).__name__}"
            counts["bad" if bad else "good"] += 1
            if status == 500 or (isinstance(status, int) and status > 500):
                counts["5xx"] += 1
            if bad and not (isinstance(status, int) and 400 <= status < 500):
                counts["bad_not_4xx"] += 1
                failures.append(f"{time.monotonic() - began:.1f} s: bad {method} {path}: {status}")
            if not bad and status != 200:
                counts["good_failed"] += 1
                failures.append(f"{time.monotonic() - began:.1f} s: good {method} {path}: {status}")

    async def sample() -> None:
        while time.monotonic() < stop:
            memory.append((time.monotonic() - began, rss_kib(pid)))
            await asyncio.sleep(min(5.0, seconds / 20))

    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=clients)) as http:
        await asyncio.gather(sample(), *(client(i, http) for i in range(clients)))
    memory.append((time.monotonic() - began, rss_kib(pid)))
    warm = next(kib for at, kib in memory if at >= seconds / 10)  # after the first tenth: caches and arenas filled
    return {
        **counts,
        "seconds": round(time.monotonic() - began, 1),
        "clients": clients,
        "requests_per_s": round((counts["good"] + counts["bad"]) / seconds, 1),
        "rss_warm_mib": round(warm / 1024, 1),
        "rss_end_mib": round(memory[-1][1] / 1024, 1),
        "rss_peak_mib": round(max(kib for _, kib in memory) / 1024, 1),
        "rss_growth": round(memory[-1][1] / warm - 1, 4),
        "failures": failures[:10],
    }


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return trained(tmp_path_factory.mktemp("soak"), "classify", sentiment_rows(200, 1), ("label", "text"), 40)


@pytest.mark.parametrize(
    ("clients", "seconds"),
    [pytest.param(8, 20, id="20s-8-clients"), pytest.param(32, 600, id="10min-32-clients", marks=pytest.mark.slow)],
)
def test_a_server_under_load_answers_every_good_request_and_refuses_every_bad_one(classifier_dir, clients, seconds):
    options = ["--max-text-chars", str(MAX_TEXT_CHARS)]
    with running(classifier_dir, *options) as (url, server):
        result = asyncio.run(soak(url, server.pid, clients, seconds))
    print("\nserve soak:", json.dumps(result))
    assert result["good"] > 0 and result["bad"] > 0
    problems = result["good_failed"] or result["bad_not_4xx"] or result["5xx"]
    assert not problems, (result["failures"], server.output[-5000:])
    if seconds >= 300:  # over a short run, memory is still settling
        assert result["rss_growth"] < 0.10, result
    assert stopped_cleanly(server), server.output[-3000:]
