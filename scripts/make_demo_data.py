"""Writes attnkit/apps/demo_data/ from ../shared/data: small samples of the sets whose licences allow bundling
(MIT, Apache-2.0, public domain). Run from the repository root: python scripts/make_demo_data.py"""

from __future__ import annotations

import csv
import random
import sys
from pathlib import Path

SHARED = Path("../shared/data")
OUT = Path("attnkit/apps/demo_data")


def sample_tsv(source: Path, target: Path, count: int, seed: int) -> None:
    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))
    header, body = rows[0], rows[1:]
    body = random.Random(seed).sample(body, min(count, len(body)))
    with target.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter="\t", lineterminator="\n")
        writer.writerow(header)
        writer.writerows(body)


def conllu_to_conll(source: Path, train: Path, dev: Path, train_count: int, dev_count: int, seed: int) -> None:
    """Word and UPOS columns of a CoNLL-U file (multiword ranges and empty nodes dropped), split at random."""
    sentences, words = [], []
    for line in source.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            if words:
                sentences.append(words)
                words = []
        elif not line.startswith("#"):
            fields = line.split("\t")
            if "-" not in fields[0] and "." not in fields[0]:
                words.append(f"{fields[1]}\t{fields[3]}")
    if words:
        sentences.append(words)
    random.Random(seed).shuffle(sentences)
    for path, chosen in ((train, sentences[:train_count]), (dev, sentences[train_count : train_count + dev_count])):
        path.write_text("".join("\n".join(s) + "\n\n" for s in chosen), encoding="utf-8")


def text_only(source: Path, target: Path) -> None:
    """The text column of a labelled TSV, one sentence per line: raw text for pretraining."""
    with source.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="\t"))[1:]
    target.write_text("".join(text + "\n" for _, text in rows), encoding="utf-8")


def main() -> None:
    if not SHARED.is_dir():
        sys.exit(f"{SHARED}: not found; run from the repository root with ../shared beside it")
    OUT.mkdir(parents=True, exist_ok=True)
    sample_tsv(SHARED / "sentiment/movies.train.tsv", OUT / "movies.train.tsv", 4000, seed=1)
    sample_tsv(SHARED / "sentiment/movies.dev.tsv", OUT / "movies.dev.tsv", 500, seed=1)
    text_only(SHARED / "sentiment/movies.train.tsv", OUT / "movies.text.txt")
    conllu_to_conll(SHARED / "pos/tr-web.conllu", OUT / "tr-pos.train.conll", OUT / "tr-pos.dev.conll", 1500, 300, 1)
    sample_tsv(SHARED / "translation/en-es.bible.train.tsv", OUT / "en-es.train.tsv", 3000, seed=1)
    sample_tsv(SHARED / "translation/en-es.bible.dev.tsv", OUT / "en-es.dev.tsv", 200, seed=1)


if __name__ == "__main__":
    main()
