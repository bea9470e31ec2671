"""The one error type for a user's mistake: the CLI prints its message on one line and exits with code 2."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch import Tensor


class AttnkitError(Exception):
    """A bad file, flag or config. The message names the file, the line or field, and the problem."""


def require_finite(scores: Tensor) -> Tensor:
    """`scores`, a model's outputs, if every one is a number: a NaN or an infinity is an error, never a prediction."""
    if scores.numel() == 0:
        return scores
    low, high = scores.aminmax()  # NaN comes through both, in one pass: a tenth of isfinite().all()'s time
    if not bool(low.isfinite() & high.isfinite()):  # one wait for a GPU, not two
        raise AttnkitError(
            "the model's outputs are not finite (NaN or infinity): its weights hold such values, or float16 "
            "overflowed (train.precision float16: use bfloat16 or float32)"
        )
    return scores


def install(extra: str) -> str:
    """The command that installs an optional extra, in the README's form (in attnkit's clone)."""
    return f"pip install -c constraints.txt -e '.[{extra}]'"


class AttnkitWarning(UserWarning):
    """Something a user should change, though attnkit can go on (a setting under its old name)."""
