"""int8 against float32 for one trained model: the test metric and the time of `attnkit evaluate` on a file,
both pipelines in one process, alternating, median of --repeats (the metric is the same every repeat).

    python benchmarks/int8.py runs/sentiment --data ../shared/data/sentiment/movies.test.tsv
    python benchmarks/int8.py runs/en-es --data ../shared/data/translation/en-es.bible.test.tsv --repeats 1

Prints a table, then one JSON line. Not run by CI.
"""

from __future__ import annotations

import argparse
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
    pipelines = {"float32": attnkit.load(args.model, device="cpu"), "int8": attnkit.load(args.model, int8=True)}
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
    print(f"{'':<8} {metric:>10} {'seconds':>9}")
    for name in pipelines:
        print(f"{name:<8} {scores[name]:>10.4f} {seconds[name]:>9.2f}")
    speedup = seconds["float32"] / seconds["int8"]
    print(f"int8: {speedup:.2f}x as fast, {metric} {scores['int8'] - scores['float32']:+.4f}")
    print(json.dumps({"metric": metric, "scores": scores, "seconds": seconds, "speedup": round(speedup, 3),
                      "model": args.model, "data": args.data, "machine": machine()}))  # fmt: skip


if __name__ == "__main__":
    main()
