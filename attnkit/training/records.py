"""What a run tells as it goes: OUT/log.jsonl (a JSON object per training report, evaluation and summary),
TensorBoard events, the progress bar on a terminal (a line per report off one), and messages on stderr. The first
process writes them; under torchrun the others say nothing. Off a terminal, where there is no bar, a line comes at
least every HEARTBEAT_SECONDS, quiet runs too (attnkit demo's), so that a log file never looks stalled."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from attnkit.files import LOG_FILE

HEARTBEAT_SECONDS = 30.0


class Records:
    """The log, TensorBoard and the progress bar of a run writing to `out` (`main`: the process that writes)."""

    def __init__(self, out: Path, main: bool, quiet: bool) -> None:
        self.out, self.main, self.quiet = out, main, quiet or not main
        self.log = None
        self.board = None
        self.bar: tqdm | None = None
        self.steps = self.total_steps = 0
        self.last_line = time.monotonic()  # when the last line went to stderr
        self.began = time.monotonic()

    def open(self, total_steps: int, step: int) -> None:
        """Start writing: append to the log, open TensorBoard and the bar (at `step` of `total_steps`)."""
        if self.main:
            from tensorboardX import SummaryWriter

            self.log = open(self.out / LOG_FILE, "a", encoding="utf-8")
            self.board = SummaryWriter(str(self.out / "tensorboard"))
        disable = True if self.quiet else None  # None: only on a terminal
        self.bar = tqdm(total=total_steps, initial=step, unit="step", dynamic_ncols=True, disable=disable)
        self.steps, self.total_steps = step, total_steps
        self.last_line = self.began = time.monotonic()

    def close(self) -> None:
        """Stop the bar and TensorBoard; the log stays open for the summary (see `finish`)."""
        if self.bar is not None:
            self.bar.close()
        if self.board is not None:
            self.board.close()

    def finish(self) -> None:
        if self.log is not None:
            self.log.close()

    def say(self, message: str) -> None:
        """A progress message, on stderr beside the bar (stdout is for results); the first process only."""
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)  # above the bar, if there is one
            self.last_line = time.monotonic()

    def record(self, entry: dict) -> None:
        """One entry of log.jsonl; dev metrics go to TensorBoard too."""
        if self.log is not None:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()
        if self.board is not None and "dev" in entry:
            for name, number in entry["dev"].items():
                self.board.add_scalar(f"dev/{name}", number, entry["step"])

    def step(self) -> None:
        self.bar.update(1)
        self.steps += 1
        beat = self.bar.disable and self.main and not sys.stderr.isatty()  # a log file: no bar to watch
        if beat and time.monotonic() - self.last_line >= HEARTBEAT_SECONDS:
            minutes = (time.monotonic() - self.began) / 60
            sys.stderr.write(f"step {self.steps:,}/{self.total_steps:,}  {minutes:.1f} min\n")
            sys.stderr.flush()
            self.last_line = time.monotonic()

    def training(
        self, step: int, total_steps: int, epoch: int, loss: float, lr: float, speed: float, elapsed: float
    ) -> None:
        """A report of the training loss, rate and speed since the last one."""
        record = {"step": step, "epoch": epoch, "loss": loss, "lr": lr, "tokens_per_s": speed}
        self.record({**record, "elapsed": elapsed})
        if self.board is not None:
            for name in ("loss", "lr", "tokens_per_s"):
                self.board.add_scalar(f"train/{name}", record[name], step)
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", epoch=epoch, refresh=False)
        if self.bar.disable:  # off a terminal (a log file, CI): a line instead of the bar
            self.say(
                f"step {step:,}/{total_steps:,}  epoch {epoch}  loss {loss:.4f}  lr {lr:.2e}  "
                f"{speed:,.0f} tokens/s  {elapsed / 60:.1f} min"
            )


class Meter:
    """Mean loss per target and tokens per second (all processes) since the last report."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.count, self.tokens, self.start = 0.0, 0.0, 0, time.perf_counter()

    def add(self, loss_sum: float, count: float, tokens: int) -> None:
        self.loss, self.count, self.tokens = self.loss + loss_sum, self.count + count, self.tokens + tokens

    def take(self) -> tuple[float, float]:
        result = self.loss / max(self.count, 1.0), self.tokens / (time.perf_counter() - self.start)
        self.reset()
        return result
