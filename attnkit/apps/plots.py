"""Plots of results (matplotlib, from the `viz` extra)."""

from __future__ import annotations

import os

from attnkit.errors import AttnkitError, install


def pyplot(needing: str):
    """matplotlib.pyplot drawing to files (no display), or one line saying that `needing` ("plots need") it."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AttnkitError(f"{needing} matplotlib: {install('viz')}") from None
    return plt


def learning_curve(
    sizes: list[int], curves: dict[str, list[float]], path: str | os.PathLike, title: str, chance: float | None = None
) -> None:
    """Accuracy against the number of labelled training examples, one line per curve, written as PNG; the axis
    runs from chance (a dashed line) or below it to 100%, so that small differences do not look large."""
    plt = pyplot("plots need")
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    for number, (label, values) in enumerate(curves.items()):
        axes.plot(sizes, [100 * v for v in values], marker="o", label=label)
        for column, (x, y) in enumerate(zip(sizes, values)):
            others = [v[column] for n, v in enumerate(curves.values()) if n != number]
            above = all(y > o or (y == o and number == 0) for o in others)  # the lower figure goes below its point
            axes.annotate(
                f"{100 * y:.1f}",
                (x, 100 * y),
                textcoords="offset points",
                xytext=(0, 6 if above else -13),
                ha="center",
                fontsize=8,
            )
    lowest = min(min(values) for values in curves.values())
    if chance is not None:
        axes.axhline(
            100 * chance,
            color="gray",
            linestyle="--",
            linewidth=1,
            label=f"chance: the commonest label ({100 * chance:.0f}%)",
        )
        lowest = min(lowest, chance)
    axes.set_ylim(max(0.0, 100 * lowest - 10), 100)
    axes.set_xscale("log")
    axes.minorticks_off()  # the log scale's minor labels (2x10^3, ...) would crowd the sizes
    axes.set_xticks(sizes, [f"{s:,}" for s in sizes])
    axes.set_xlabel("labelled training examples")
    axes.set_ylabel("accuracy (%)")  # which split: the title says
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
