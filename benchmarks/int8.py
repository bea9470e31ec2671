"""int8 against float32 for one trained model: the test metric and the time of `attnkit evaluate` on a file, on
attnkit's own engine and (with the ct2 extra) on CTranslate2 (`--engine ct2`), all pipelines in one process,
alternating, median of --repeats (the metric is the same every repeat).

    python benchmarks/int8.py runs/sentiment --data ../shared/data/sentiment/movies.test.tsv
    python benchmarks/int8.py runs/en-es --data ../shared/data/translation/en-es.bible.test.tsv --repeats 1

Prints a table, then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import time

from machine import machine

import attnkit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a trained model directory")
    parser.add_argument("--data", required=True, help="a labelled test file")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    pipelines = {
        "float32": attnkit.load(args.model, device="cpu", engine="torch"),
        "int8": attnkit.load(args.model, int8=True, engine="torch"),
    }
    if importlib.util.find_spec("ctranslate2") is not None:
        pipelines["ct2 float32"] = attnkit.load(args.model, device="cpu", engine="ct2")
        pipelines["ct2 int8"] = attnkit.load(args.model, int8=True, engine="ct2")
    metric = pipelines["float32"].task.main_metric
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    scores: dict[str, float] = {}
    for _ in range(args.repeats):
        for name, pipeline in pipelines.items():
            began = time.perf_counter()
            metrics, _, _ = pipeline.evaluate(args.data)
            times[name].append(time.perf_counter() - began)
            scores[name] = metrics[metric]
    seconds = {name: statistics.median(spent) for name, spent in times.items()}
    speedup = {name: round(seconds["float32"] / spent, 3) for name, spent in seconds.items()}
    print(f"{'':<12} {metric:>10} {'change':>8} {'seconds':>9} {'speed':>7}")
    for name in pipelines:
        change = scores[name] - scores["float32"]
        print(f"{name:<12} {scores[name]:>10.4f} {change:>+8.4f} {seconds[name]:>9.2f} {speedup[name]:>6.2f}x")
    print(json.dumps({"metric": metric, "scores": scores, "seconds": seconds, "speedup": speedup,
                      "model": args.model, "data": args.data, "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
