"""Headlines from a pretrained decoder: ROUGE-L on the BBC test articles that are not also in the training file (the
split keeps 16 duplicates, whose headline a model that saw them repeats), for the article's first 8 words, the
model's zero-shot answer to a plain instruction, and each fine-tuned run given, all with one scorer
(attnkit.tasks.metrics.generation).

    python benchmarks/headlines_llm.py --base $GGUF runs/headlines-smollm2 [more runs]

The zero-shot prompt is the chat template's user message "Write a headline for this article.", a blank line and
the article cut to the fine-tuned runs' tokens (data.max_length of the first run); its reply's first line is the
headline, greedy, at most 24 tokens.
"""

from __future__ import annotations

import argparse
import csv
import json
import tempfile
from pathlib import Path

from attnkit.inference.pipeline import Pipeline
from attnkit.tasks.metrics import generation

DATA = Path(__file__).parents[1] / ".." / "shared" / "data" / "headlines"
INSTRUCTION = "Write a headline for this article."


def read(path: Path) -> list[tuple[str, str]]:
    with path.open(encoding="utf-8", newline="") as file:
        return [(row["source"], row["target"]) for row in csv.DictReader(file, delimiter="\t")]


def unseen(test: list[tuple[str, str]], train: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The test articles whose text is not also a training article."""
    seen = {source for source, _ in train}
    return [(source, target) for source, target in test if source not in seen]


def lead(articles: list[str], words: int = 8) -> list[str]:
    return [" ".join(article.split()[:words]) for article in articles]


def zero_shot(base: str, articles: list[str], tokens: int) -> list[str]:
    model = Pipeline.load(base, device="cpu")
    cut = [model.tokenizer.decode(model.tokenizer.encode(article)[:tokens]) for article in articles]
    conversations = [[{"role": "user", "content": f"{INSTRUCTION}\n\n{article}"}] for article in cut]
    replies = model.chat(conversations, max_new_tokens=24)
    return [(reply or "").strip().splitlines()[0].strip(' "*#') if (reply or "").strip() else "" for reply in replies]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", help="fine-tuned seq2seq runs to score")
    parser.add_argument("--base", required=True, help="the pretrained decoder (its zero-shot answers)")
    parser.add_argument("--tokens", type=int, help="article tokens the zero-shot prompt reads (default: the run's)")
    args = parser.parse_args()
    test = unseen(read(DATA / "bbc.test.tsv"), read(DATA / "bbc.train.tsv"))
    articles, headlines = [source for source, _ in test], [target for _, target in test]
    rows = {"the article's first 8 words": generation(lead(articles), headlines)}
    tokens = args.tokens
    if tokens is None and args.runs:
        tokens = json.loads((Path(args.runs[0]) / "config.json").read_text())["data"]["max_length"]
    rows["zero-shot: " + INSTRUCTION] = generation(zero_shot(args.base, articles, tokens or 160), headlines)
    with tempfile.TemporaryDirectory() as folder:
        file = Path(folder) / "test.tsv"
        with file.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out, delimiter="\t")
            writer.writerow(["source", "target"])
            writer.writerows(test)
        for run in args.runs:
            metrics, _, _ = Pipeline.load(run, device="cpu").evaluate(file)
            rows[f"fine-tuned: {run}"] = metrics
    print(f"{len(test)} test articles not in the training file")
    print("| headline | ROUGE-L | BLEU | chrF |\n|---|---|---|---|")
    for name, metrics in rows.items():
        print(f"| {name} | {metrics['rougeL']:.1f} | {metrics['bleu']:.1f} | {metrics['chrf']:.1f} |")


if __name__ == "__main__":
    main()
