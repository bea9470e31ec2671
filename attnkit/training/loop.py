"""The training loop: token-budget batches, each step's gradient averaged over every target of the step (all
accumulated batches, all processes), clipping, mixed precision, evaluation on dev with early stopping and the best
checkpoint kept. Around it: the run's inputs (prepare.py), its shape (plan.py), its state for --resume (state.py),
its logs (records.py), the optimizer (optim.py), devices and processes (attnkit.runtime); what a label or a target
means is the task's (attnkit.tasks).

Output directory (a complete checkpoint from the first moment it exists):
  config.json, tokenizer.json, model.safetensors   the best model so far (the last one without dev data)
  trainer_state/                                   the latest step, for --resume
  log.jsonl, tensorboard/                          training and evaluation records
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn

from attnkit import runtime
from attnkit.config import to_dict
from attnkit.data.batching import batches_by_tokens
from attnkit.errors import AttnkitError
from attnkit.files import STATE_DIR, WEIGHTS_FILE, recover
from attnkit.inference.checkpoint import LORA_BASE, load_weights
from attnkit.training.optim import Average, learning_rate, make_optimizer
from attnkit.training.plan import plan_run
from attnkit.training.prepare import prepare
from attnkit.training.records import Meter, Records
from attnkit.training.run import RunConfig
from attnkit.training.state import Checkpointer, Progress, rng_state

TRIM_EVERY = 10  # optimizer steps between returns of freed memory to the system


def train(run: RunConfig, *, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train as `run` says and return a summary (steps, best dev metrics, test metrics if data.test is set).
    With `resume`, continue the interrupted run in run.out exactly where its last saved step left off;
    `quiet` keeps the progress bar and evaluation lines off stderr. Under torchrun, each process trains on its
    share of every batch and the first one writes."""
    device, processes = runtime.start(run.train.device, run.train.strategy)
    try:
        return Trainer(run, device, processes, resume=resume, overwrite=overwrite, quiet=quiet).fit()
    finally:
        if processes.world > 1:
            runtime.stop()


class Trainer:
    """One training run: reads and checks every input first (nothing is written for bad input), then `fit`."""

    def __init__(
        self,
        run: RunConfig,
        device: torch.device,
        processes: runtime.Processes,
        *,
        resume: bool,
        overwrite: bool,
        quiet: bool = False,
    ) -> None:
        self.run, self.config, self.out = run, run.train, Path(run.out)
        self.device, self.processes = device, processes
        fresh = resume and not self.out.exists()  # killed before its directory appeared: nothing to lose
        self.resumed, self.started_fresh = resume and not fresh, fresh
        self.records = Records(self.out, processes.main, quiet)
        if self.resumed and processes.main:  # a process killed while it replaced the state may have left it aside
            recover(self.out / STATE_DIR)
        processes.barrier()
        _seed_everything(self.config.seed)
        prepared = prepare(run, self.resumed, overwrite, processes, self.records.say)
        self.task, self.tokenizer = prepared.task, prepared.tokenizer
        self.train_items, self.dev_items = prepared.train_items, prepared.dev_items
        self.dev_examples, self.test_examples = prepared.dev_examples, prepared.test_examples
        self.data_files, self.tokens = prepared.files, prepared.tokens
        self.base = prepared.base  # a LoRA run's: named in its checkpoint, which holds the adapters and head alone
        self.stop_asked = self.stopping = False  # a Ctrl-C, here and as every process agreed (see _backward)
        if self.config.ema and processes.sharded:
            raise AttnkitError("train.ema: not available with train.strategy fsdp (the average would need every shard)")
        if self.resumed:
            load_weights(prepared.model, self.out / STATE_DIR / WEIGHTS_FILE, prepared.trained)
        self.module = prepared.model.to(device)  # the model itself: evaluated and saved
        self.model = runtime.wrap(self.module, device, processes)  # what training steps call
        if processes.world > 1:
            torch.manual_seed(self.config.seed + processes.rank)  # each process its own dropout masks
        self.optimizer = make_optimizer(self.module, self.config)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.config.precision == "float16")
        self.average = Average(self.module, self.config.ema) if self.config.ema else None
        self.files = Checkpointer(
            self.out, processes, self.module, self.optimizer, self.scaler, self.average, prepared.build,
            prepared.trained,
        )  # fmt: skip
        self.sizes = np.asarray(self.task.sizes(self.train_items))  # an example's size: a row of them in seq2seq
        self.plan = plan_run(self.config, self.sizes)
        self.progress = Progress()
        self.rng_after_step = rng_state(device)
        if self.resumed:
            self._resume()
        self.evaluated_at = self.progress.step if self.resumed else -1
        self.stopped: str | None = None  # why the run ended before its planned steps, if it did

    def fit(self) -> dict:
        self.processes.barrier()  # every process has read and checked its inputs before the output appears
        if not self.resumed:
            sections = {**to_dict(self.run), "task_state": self.task.state()}
            if self.base is not None:
                sections[LORA_BASE] = self.base
            del sections["model"]  # the model's own configuration (an init checkpoint's) is written
            self._save_state(create=(self.tokenizer, sections))
        say, plan = self.records.say, self.plan
        self.records.open(plan.total_steps, self.progress.step)
        if self.resumed:
            say(f"resuming {self.out} at step {self.progress.step:,} of {plan.total_steps:,}")
        elif self.started_fresh:
            say(f"nothing to resume: {self.out} does not exist yet; starting the run")
        threads = runtime.ready_for_training(self.device)  # a line only where it takes fewer threads
        for line in (self.tokens, plan.describe(self.dev_examples is not None), threads):
            if line:
                say(line)
        if not self.resumed:
            self.records.record({"data": self._data_facts()})  # for the model card (attnkit info, export)
        few = self.task.few_examples
        if not self.resumed and not self.config.init and few is not None and plan.examples < few:
            say(
                f"hint: {plan.examples:,} examples are few for a Transformer from scratch; fine-tuning a "
                "pretrained checkpoint (--init DIR) usually does better: see docs/choosing.md"
            )
        if self.processes.world > 1:
            say(f"{self.processes.world} processes ({self.processes.strategy}) on {self.device.type}")
        try:
            with self._stopping_at_a_step_end():
                self._loop()
                if self.evaluated_at != self.progress.step:
                    self._evaluate_and_keep_best()
        except KeyboardInterrupt:
            self._save_state()
            say(f"interrupted at step {self.progress.step}; continue with --resume")
            raise
        finally:
            self.records.close()
        summary = self._finish()
        self.records.finish()
        return summary

    def _loop(self) -> None:
        """Epochs of shuffled token-budget batches; `progress` moves only together with an optimizer step, so
        that the saved state always describes a step boundary."""
        p, plan = self.progress, self.plan
        started = time.perf_counter() - p.elapsed
        meter = Meter()
        if self._budget_spent():  # resumed at (or past) the end
            return
        while plan.epochs_left(p.epoch):
            batches = batches_by_tokens(self.sizes, plan.batch_tokens, True, self.config.seed + p.epoch)
            while p.batch < len(batches):
                group = batches[p.batch : p.batch + self.config.accumulate]
                loss_sum, count = self._backward(group)
                if math.isfinite(loss_sum):
                    meter.add(loss_sum, count, sum(int(self.sizes[indices].sum()) for indices in group))
                p.batch += len(group)
                end_of_epoch = p.batch == len(batches)
                if end_of_epoch:
                    p.epoch, p.batch = p.epoch + 1, 0
                self._step(loss_sum, count)
                p.elapsed = time.perf_counter() - started
                if p.step % self.config.log_every == 0:
                    loss, speed = meter.take()
                    lr = self.optimizer.param_groups[0]["lr"]
                    self.records.training(p.step, plan.total_steps, p.epoch, loss, lr, speed, p.elapsed)
                if plan.evaluation_due(p.step, end_of_epoch) and self._evaluate_and_keep_best():
                    self.stopped = f"train.patience: {self.config.patience} dev scores without a better one"
                    return
                if self._budget_spent():
                    return
                if self.stopping:  # Ctrl-C: here progress, weights, optimizer and evaluations agree
                    raise KeyboardInterrupt
                if end_of_epoch:
                    break

    @contextlib.contextmanager
    def _stopping_at_a_step_end(self) -> Iterator[None]:
        """Within the block a first Ctrl-C asks the loop to stop at the end of the step under way (its state then
        describes a step boundary, so --resume ends as the uninterrupted run would); a second one stops at once.
        Outside it, whatever answered Ctrl-C before does (the `attnkit` command ends at once, attnkit.__main__)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def ask(signum: int, frame: object) -> None:
            self.stop_asked = True
            signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: KeyboardInterrupt now
            self.records.say("stopping at the end of this step (Ctrl-C again: at once)")

        before = signal.signal(signal.SIGINT, ask)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, before)

    def _backward(self, group: list[list[int]]) -> tuple[float, float]:
        """Gradients of the summed loss of this process's share of each batch in `group`; returns the loss
        summed over all processes and the number of targets it sums over."""
        totals = torch.zeros(2, device=self.device)
        for n, indices in enumerate(group):
            share = self.processes.share(indices)
            weight = 1.0 if len(share) else 0.0  # a batch smaller than the world: a process idle on it runs one for 0
            items = [self.train_items[i] for i in (share if len(share) else indices[:1])]
            with runtime.gradient_sync(self.model, sync=n == len(group) - 1):
                with runtime.autocast(self.device, self.config.precision):
                    batch = runtime.to_device(self.task.collate(items), self.device)
                    loss, count = self.task.loss(self.model, batch, self.config.label_smoothing)
                self.scaler.scale(loss * weight).backward()
            totals += torch.stack([loss.detach().float(), count.float()]) * weight
        # a Ctrl-C (stop_asked) travels with the sums, so that every process stops at the end of the same step
        sums = self.processes.all_sum(torch.cat([totals, totals.new_tensor([self.stop_asked])]))
        loss_sum, count, stopping = sums.tolist()
        self.stopping = stopping > 0
        return loss_sum, count

    def _step(self, loss_sum: float, count: float) -> None:
        """Turn the summed gradients into the step's mean (processes average theirs, hence the world), clip,
        update; or skip the update when the loss or the gradient is not finite."""
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, self.processes.world / max(count, 1.0))
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.config.clip_norm or math.inf)
        lr = learning_rate(self.config, self.progress.step, self.plan.total_steps, self.plan.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        # float16's gradient scaler skips a step whose gradient overflowed and lowers its scale: that is routine
        finite = math.isfinite(loss_sum) and (self.scaler.is_enabled() or bool(torch.isfinite(norm)))
        if finite:
            self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        if finite and self.average is not None:
            self.average.update()
        self.progress.step += 1
        self._count_nonfinite(finite, "loss" if not math.isfinite(loss_sum) else "gradient")
        self.rng_after_step = rng_state(self.device)  # a resumed run draws the same dropout masks from here
        self.records.step()
        if self.progress.step % TRIM_EVERY == 0:
            runtime.return_freed_memory()

    def _count_nonfinite(self, finite: bool, what: str) -> None:
        """Warn of a skipped step; stop the run when `nonfinite_limit` steps in a row were skipped."""
        p = self.progress
        p.nonfinite = 0 if finite else p.nonfinite + 1
        if finite:
            return
        limit = self.config.nonfinite_limit
        self.records.say(
            f"warning: step {p.step}: the {what} is not finite; the step is skipped ({p.nonfinite} in a row)"
        )
        if p.nonfinite >= limit:
            saved = max(self.evaluated_at, 0)  # a run's directory holds its state from step 0 on
            raise AttnkitError(
                f"step {p.step}: the {what} was not finite at {limit} steps in a row (train.nonfinite_limit), "
                f"so the run stopped; {self.out} holds step {saved} (--resume continues from it). Lower train.lr, "
                "or train in float32 or bfloat16 instead of float16"
            )

    def _budget_spent(self) -> bool:
        """Whether the plan's steps or train.max_minutes are spent (the epochs end the loop themselves)."""
        p = self.progress
        if self.plan.steps_spent(p.step):
            return True
        if self.config.max_minutes is None:
            return False
        late = torch.tensor([float(p.elapsed >= 60 * self.config.max_minutes)], device=self.device)
        if self.processes.all_sum(late).item():  # the processes' clocks differ; any one stops them all
            self.stopped = f"train.max_minutes ({self.config.max_minutes:g}): --resume with a larger one goes on"
        return self.stopped is not None

    def _evaluate_and_keep_best(self) -> bool:
        """Score dev (if any), keep the best weights, save the trainer state; True when patience ran out."""
        p, metric = self.progress, self.task.metric
        self.evaluated_at = p.step
        if self.dev_examples is None:
            self.files.save_weights()
        else:
            metrics = self._score(self.dev_items, self.dev_examples)
            improved = p.best is None or self.task.better(metrics[metric], p.best[metric])
            self.records.record({"step": p.step, "epoch": p.epoch, "dev": metrics, "best": improved})
            summary = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            self.records.say(f"step {p.step}: dev {summary}" + ("  (best)" if improved else ""))
            if improved:
                p.best, p.bad_evals = metrics, 0
                self.files.save_weights()
            elif p.step >= self.plan.warmup_steps:  # a rate still rising is no reason to stop
                p.bad_evals += 1
        self._save_state()
        patience = self.config.patience
        return self.dev_examples is not None and patience is not None and p.bad_evals >= patience

    def _score(self, items: list, examples: list, averaged: bool = True) -> dict[str, float]:
        """The task's metrics on encoded `items`; each process predicts every world-th item and all of them get
        every prediction, so the figure is the one a single process gives."""
        world, rank = self.processes.world, self.processes.rank
        weights = self.files.averaged() if averaged else contextlib.nullcontext()
        with weights, self.files.whole() as model, runtime.autocast(self.device, self.config.precision):
            mine = self.task.predict(model, items[rank::world], self.plan.batch_tokens)
        shares = self.processes.gather(mine)
        predictions = [shares[i % world][i // world] for i in range(len(items))]
        return _numbers(self.task.metrics(predictions, examples))

    def _data_facts(self) -> dict:
        """Each split's file (a DatasetDict's split folder; a held-out split names its fraction), examples and bytes,
        as this run read them."""
        facts = {}
        for split, examples in (("train", self.train_items), ("dev", self.dev_examples), ("test", self.test_examples)):
            if examples is None:
                continue
            path = Path(self.data_files[split])
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else None
            size = path.stat().st_size if path.is_file() else size
            facts[split] = {"file": self.data_files[split], "examples": len(examples), "bytes": size}
        return facts

    def _finish(self) -> dict:
        p = self.progress
        summary: dict = {"steps": p.step, "epochs": p.epoch, "minutes": p.elapsed / 60, "dev": p.best}
        if self.stopped is not None:
            summary.update(planned_steps=self.plan.total_steps, stopped=self.stopped)
        if self.test_examples is not None:
            self.processes.barrier()  # the best weights are written
            self.files.load_best()
            items = self.task.encode(self.test_examples, training=False)
            summary["test"] = self._score(items, self.test_examples, averaged=False)  # the best ones are averaged
            self.records.record({"step": p.step, "test": summary["test"]})
        summary["peak_memory_mib"] = runtime.peak_memory_mib(self.device)  # after testing, which may hold more
        self.records.record({"summary": summary})
        return summary

    def _save_state(self, create: tuple | None = None) -> None:
        plan = dataclasses.asdict(self.plan)
        self.files.save_state(self.progress, plan, self.rng_after_step, create)

    def _resume(self) -> None:
        """Continue from the saved trainer state; a plan that differs from the saved one (a larger max_steps, other
        batches) is allowed, with a warning."""
        saved = self.files.load_state(self.device)
        self.progress = saved.progress
        self.rng_after_step = rng_state(self.device)
        plan = dataclasses.asdict(self.plan)
        changed = [f"{k} {v} -> {plan[k]}" for k, v in saved.plan.items() if k in plan and plan[k] != v]
        if changed:
            self.records.say(f"warning: the run's plan differs from the one it was started with ({', '.join(changed)})")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _numbers(metrics: dict) -> dict[str, float]:
    """The scalar metrics (tables such as the confusion matrix stay out of logs)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
