"""A run's shape, decided before its first step from the data and the settings: batches, steps, warmup, when dev is
scored and when the run ends. The plan is the one reader of train.max_steps and train.epochs."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from attnkit.config import TrainConfig
from attnkit.data.batching import BATCH_TOKENS, Size, batches_by_tokens

# what unset settings become: derived from the data and the run's length, so that every size of data learns;
# a setting given in the config is used as it is
MIN_BATCHES = 16  # batches hold BATCH_TOKENS at most, fewer so that an epoch has 16 batches
WARMUP_STEPS, WARMUP_SHARE = 200, 0.1  # 200 steps of warmup, or a tenth of the run if that is shorter
# dev is scored each epoch, the usual cadence (scored more often, a small dev set picks checkpoints on its noise),
# but at least this many times in a run: a run of one or two epochs (or max_steps within one) still gets a choice
EVALUATIONS = 4


@dataclasses.dataclass(frozen=True)
class Plan:
    """The run's shape, derived from the data and the settings, so that every size of data gets steps to learn
    from: batches, steps, warmup and evaluation cadence. It does not depend on the number of processes."""

    examples: int
    batch_tokens: int  # train.batch_tokens, or by default BATCH_TOKENS or fewer: an epoch of MIN_BATCHES at least
    steps_per_epoch: int
    total_steps: int  # train.max_steps when given (epochs then do not stop the run), else epochs x steps per epoch
    warmup_steps: int  # train.warmup_steps, or by default WARMUP_STEPS, at most WARMUP_SHARE of total_steps
    eval_every: int | None  # None: at the end of each epoch
    epochs: int | None = None  # the epochs that end the run; None: total_steps does (train.max_steps)

    def describe(self, dev: bool) -> str:
        every = self.eval_every
        cadence = "each epoch" if every is None else "each step" if every == 1 else f"every {every} steps"
        return (
            f"{self.examples:,} training examples in batches of up to {self.batch_tokens:,} tokens, "
            f"{self.steps_per_epoch:,} steps per epoch; {self.total_steps:,} steps, warmup {self.warmup_steps:,}; "
            + (f"dev scored {cadence}" if dev else "no dev data: the last weights are kept")
        )

    def epochs_left(self, epoch: int) -> bool:
        """Whether the run goes on into epoch `epoch` (counted from 0)."""
        return self.epochs is None or epoch < self.epochs

    def steps_spent(self, step: int) -> bool:
        """Whether `step` steps end the run (train.max_steps; a run of epochs ends with its last one)."""
        return self.epochs is None and step >= self.total_steps

    def evaluation_due(self, step: int, end_of_epoch: bool) -> bool:
        every = self.eval_every
        return (every is None and end_of_epoch) or (every is not None and step % every == 0)


def plan_run(config: TrainConfig, sizes: Sequence[Size] | np.ndarray) -> Plan:
    """The Plan for training examples of `sizes` tokens under `config`."""
    # unset: BATCH_TOKENS, or fewer for small data (an example longer than the budget is a batch of its own)
    tokens = int(np.asarray(sizes, np.int64).sum())
    batch_tokens = config.batch_tokens or max(min(BATCH_TOKENS, tokens // MIN_BATCHES), 1)
    batches = len(batches_by_tokens(sizes, batch_tokens, shuffle=False))
    steps_per_epoch = math.ceil(batches / config.accumulate)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    warmup_steps = config.warmup_steps
    if warmup_steps is None:
        warmup_steps = min(WARMUP_STEPS, math.ceil(WARMUP_SHARE * total_steps))
    eval_every = config.eval_every
    if eval_every is None and steps_per_epoch > math.ceil(total_steps / EVALUATIONS):
        eval_every = math.ceil(total_steps / EVALUATIONS)
    epochs = None if config.max_steps is not None else config.epochs
    return Plan(len(sizes), batch_tokens, steps_per_epoch, total_steps, warmup_steps, eval_every, epochs)
