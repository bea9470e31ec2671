"""Each task's findings for `attnkit evaluate --report` (the vocabulary: attnkit/findings.py): the shapes of the
task module's examine methods, kept together here."""

from __future__ import annotations

from collections import Counter

from attnkit.findings import Chart, Finding, Marked, Table

WORST = 25  # examples in each list of the worst
CONTEXT_WORDS = 8  # words shown on each side of a marked word


def in_context(words: list[str], index: int) -> Marked:
    """Word `index` of `words`, marked, with up to CONTEXT_WORDS words on each side."""
    start, end = max(0, index - CONTEXT_WORDS), min(len(words), index + CONTEXT_WORDS + 1)
    before = ("... " if start else "") + " ".join(words[start:index])
    after = " ".join(words[index + 1 : end]) + (" ..." if end < len(words) else "")
    return Marked(before + " " if before else "", words[index], " " + after if after else "")


def classified(metrics: dict, mistakes: list[tuple[float, int, str, str, str]]) -> list[Finding]:
    """A classifier's findings: its confusion matrix, each class's scores, and `mistakes` (probability, line,
    text, gold, predicted), the surest first."""
    confusion = metrics["confusion"]
    unseen = confusion.get("unseen", {})  # gold labels the model never saw: rows of their own
    per_class = [
        [label, *(f"{row[m]:.4f}" for m in ("precision", "recall", "f1")), f"{row['support']:,}"]
        for label, row in metrics["per_class"].items()
    ]
    surest = sorted(mistakes, key=lambda mistake: -mistake[0])[:WORST]
    return [
        Chart(
            "matrix",
            "Confusion matrix",
            "rows: the gold label; columns: the predicted one",
            "predicted",
            "gold",
            confusion["matrix"] + list(unseen.values()),
            confusion["labels"] + [f"{u} (unseen)" for u in unseen],
            confusion["labels"],
        ),  # fmt: skip
        Table("Per class", "", ["label", "precision", "recall", "F1", "support"], per_class),
        Table(
            "The most confident mistakes",
            f"the {len(surest)} wrong predictions the model was surest of",
            ["line", "text", "gold", "predicted", "probability"],
            [[str(line), text, gold, predicted, f"{p:.3f}"] for p, line, text, gold, predicted in surest],
        ),  # fmt: skip
    ]


def tagged(sentences: list[tuple[int, list[str], list[str], list[str]]]) -> list[Finding]:
    """A tagger's findings from (line, words, gold tags, predicted tags) per sentence: each tag's accuracy and the
    commonest confusions, with up to three examples each in their sentences."""
    support, right, confused = Counter(), Counter(), Counter()
    where: dict[tuple[str, str], list[Marked]] = {}
    for line, words, gold_tags, predicted in sentences:
        for i, (gold, tag) in enumerate(zip(gold_tags, predicted)):
            support[gold] += 1
            if gold == tag:
                right[gold] += 1
            else:
                confused[gold, tag] += 1
                examples = where.setdefault((gold, tag), [])
                if len(examples) < 3:
                    context = in_context(words, i)
                    examples.append(Marked(f"line {line}: {context.before}", context.marked, context.after))
    tags = [tag for tag, _ in support.most_common()]
    accuracy = {tag: right[tag] / support[tag] for tag in tags}
    shown = tags[:40]
    rows = [[tag, f"{support[tag]:,}", f"{right[tag]:,}", f"{accuracy[tag]:.4f}"] for tag in tags]
    confusions = [[gold, tag, f"{count:,}", *where[gold, tag]] for (gold, tag), count in confused.most_common(WORST)]
    width = max((len(row) for row in confusions), default=4)
    return [
        Chart(
            "bars",
            "Per tag",
            "each tag's words tagged right, the commonest tag first",
            "accuracy",
            "",
            [accuracy[t] for t in shown],
            shown,
        ),  # fmt: skip
        Table("", "", ["tag", "words", "right", "accuracy"], rows),
        Table(
            "The most frequent confusions",
            "the marked word, with up to three examples each",
            ["gold", "predicted", "words", *["example"] * (width - 3)],
            [row + [""] * (width - len(row)) for row in confusions],
        ),  # fmt: skip
    ]


def generated(outputs: list[tuple[int, str, str, str]]) -> list[Finding]:
    """A generator's findings from (line, source, output, reference): each output's chrF and BLEU (sacreBLEU,
    sentence level), the lowest beside their references."""
    import sacrebleu

    scored = [
        (sacrebleu.sentence_chrf(output, [reference]).score, sacrebleu.sentence_bleu(output, [reference]).score,
         line, source, output, reference)
        for line, source, output, reference in outputs
    ]  # fmt: skip
    lowest = sorted(scored, key=lambda s: (s[0], s[1]))[:WORST]
    return [
        Chart(
            "histogram",
            "Each output's chrF",
            "sentence-level chrF (sacreBLEU) of every output against its reference",
            "chrF",
            "outputs",
            [s[0] for s in scored],
        ),  # fmt: skip
        Table(
            "The lowest-scoring outputs",
            "lowest chrF first; BLEU at the sentence level for comparison",
            ["line", "source", "output", "reference", "BLEU", "chrF"],
            [
                [str(line), source, output, reference, f"{bleu:.1f}", f"{chrf:.1f}"]
                for chrf, bleu, line, source, output, reference in lowest
            ],
        ),  # fmt: skip
    ]


def regressed(scores: list[tuple[int, str, float, float]]) -> list[Finding]:
    """A regressor's findings from (line, text, gold, predicted): predictions against the gold numbers, and the
    largest errors."""
    worst = sorted(scores, key=lambda s: -abs(s[3] - s[2]))[:WORST]
    return [
        Chart(
            "scatter",
            "Predicted against gold",
            "the dashed line: a perfect prediction",
            "gold",
            "predicted",
            [(gold, predicted) for _, _, gold, predicted in scores],
        ),  # fmt: skip
        Table(
            "The largest errors",
            "",
            ["line", "text", "gold", "predicted", "error"],
            [[str(line), text, f"{g:.4g}", f"{p:.4g}", f"{p - g:+.4g}"] for line, text, g, p in worst],
        ),  # fmt: skip
    ]
