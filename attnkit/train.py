"""The training loop: token-budget batches, each step's gradient averaged over every target of the step (all
accumulated batches, all processes), clipping, mixed precision, evaluation on dev with early stopping and the best
checkpoint kept, exact resume, logs. Setup lives in attnkit.prepare, the optimizer and schedule in attnkit.optim,
devices and processes in attnkit.runtime; what a label or a target means lives in attnkit.tasks.

Output directory (a complete checkpoint from the first moment it exists):
  config.json, tokenizer.json, model.safetensors   the best model so far (the last one without dev data)
  trainer_state/                                   the latest step, for --resume
  log.jsonl, tensorboard/                          training and evaluation records
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn
from tqdm import tqdm

from attnkit import runtime
from attnkit.checkpoint import load_weights, save_weights, write_checkpoint
from attnkit.config import RunConfig, TrainConfig, to_dict
from attnkit.data.batching import BATCH_TOKENS, Size, batches_by_tokens, tokens_in
from attnkit.errors import AttnkitError
from attnkit.files import (
    FORMAT,
    STATE_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    atomic_directory,
    read_json,
    recover,
    write_errors,
    write_json,
)
from attnkit.optim import Average, learning_rate, make_optimizer
from attnkit.pipeline import predict_items
from attnkit.prepare import prepare

GONE = "it cannot be resumed (--overwrite starts the run again)"  # a trainer state that is not what attnkit wrote
TRIM_EVERY = 10  # optimizer steps between returns of freed memory to the system
# what unset settings become: derived from the data and the run's length, so that every size of data learns;
# a setting given in the config is used as it is
MIN_BATCHES = 16  # batches hold BATCH_TOKENS at most, fewer so that an epoch has 16 batches
WARMUP_STEPS, WARMUP_SHARE = 200, 0.1  # 200 steps of warmup, or a tenth of the run if that is shorter
# dev is scored each epoch, the usual cadence (scored more often, a small dev set picks checkpoints on its noise),
# but at least this many times in a run: a run of one or two epochs (or max_steps within one) still gets a choice
EVALUATIONS = 4
STATE_VERSION = 2  # optimizer state keyed by parameter name (version 1: by position)
FEW = 20_000  # training from scratch on fewer examples than this, a pretrained checkpoint usually does better


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

    def describe(self, dev: bool) -> str:
        every = self.eval_every
        cadence = "each epoch" if every is None else "each step" if every == 1 else f"every {every} steps"
        return (
            f"{self.examples:,} training examples in batches of up to {self.batch_tokens:,} tokens, "
            f"{self.steps_per_epoch:,} steps per epoch; {self.total_steps:,} steps, warmup {self.warmup_steps:,}; "
            + (f"dev scored {cadence}" if dev else "no dev data: the last weights are kept")
        )


def plan_run(config: TrainConfig, sizes: list[Size]) -> Plan:
    """The Plan for training examples of `sizes` tokens under `config`."""
    # unset: BATCH_TOKENS, or fewer for small data (an example longer than the budget is a batch of its own)
    batch_tokens = config.batch_tokens or max(min(BATCH_TOKENS, sum(map(tokens_in, sizes)) // MIN_BATCHES), 1)
    batches = len(batches_by_tokens(sizes, batch_tokens, shuffle=False))
    steps_per_epoch = math.ceil(batches / config.accumulate)
    total_steps = config.max_steps or steps_per_epoch * config.epochs
    warmup_steps = config.warmup_steps
    if warmup_steps is None:
        warmup_steps = min(WARMUP_STEPS, math.ceil(WARMUP_SHARE * total_steps))
    eval_every = config.eval_every
    if eval_every is None and steps_per_epoch > math.ceil(total_steps / EVALUATIONS):
        eval_every = math.ceil(total_steps / EVALUATIONS)
    return Plan(len(sizes), batch_tokens, steps_per_epoch, total_steps, warmup_steps, eval_every)


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
        resume = resume and not fresh
        self.quiet, self.resumed, self.started_fresh = quiet or not processes.main, resume, fresh
        if resume and processes.main:  # a process killed while it replaced the state may have left it aside
            recover(self.out / STATE_DIR)
        processes.barrier()
        _seed_everything(self.config.seed)
        prepared = prepare(run, resume, overwrite)
        self.task, self.tokenizer = prepared.task, prepared.tokenizer
        self.train_items, self.dev_items = prepared.train_items, prepared.dev_items
        self.dev_examples, self.test_examples = prepared.dev_examples, prepared.test_examples
        if self.config.ema and processes.sharded:
            raise AttnkitError("train.ema: not available with train.strategy fsdp (the average would need every shard)")
        if resume:
            load_weights(prepared.model, self.out / STATE_DIR / WEIGHTS_FILE)
        self.module = prepared.model.to(device)  # the model itself: evaluated and saved
        self.model = runtime.wrap(self.module, device, processes)  # what training steps call
        if processes.world > 1:
            torch.manual_seed(self.config.seed + processes.rank)  # each process its own dropout masks
        self.optimizer = make_optimizer(self.module, self.config)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.config.precision == "float16")
        self.average = Average(self.module, self.config.ema) if self.config.ema else None
        self.sizes = self.task.sizes(self.train_items)
        self.plan = plan_run(self.config, self.sizes)
        self.total_steps = self.plan.total_steps
        self.progress = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad_evals": 0, "elapsed": 0.0}
        self.rng_after_step = self._rng_state()
        if resume:
            self._load_state()
        self.evaluated_at = self.progress["step"] if resume else -1

    # the loop
    def fit(self) -> dict:
        self.processes.barrier()  # every process has read and checked its inputs before the output appears
        main = self.processes.main
        if not self.resumed:
            self._save_state(create=True)
        self.log = open(self.out / "log.jsonl", "a", encoding="utf-8") if main else None
        if main:
            from tensorboardX import SummaryWriter

            self.board = SummaryWriter(str(self.out / "tensorboard"))
        self.bar = tqdm(
            total=self.total_steps,
            initial=self.progress["step"],
            unit="step",
            dynamic_ncols=True,
            disable=True if self.quiet else None,  # None: only on a terminal
        )
        if self.resumed:
            self._say(f"resuming {self.out} at step {self.progress['step']:,} of {self.total_steps:,}")
        elif self.started_fresh:
            self._say(f"nothing to resume: {self.out} does not exist yet; starting the run")
        self._say(self.plan.describe(self.dev_examples is not None))
        if not self.resumed and not self.config.init and self.task.name != "pretrain" and self.plan.examples < FEW:
            self._say(
                f"hint: {self.plan.examples:,} examples are few for a Transformer from scratch; fine-tuning a "
                "pretrained checkpoint (--init DIR) usually does better: see docs/choosing.md"
            )
        if self.processes.world > 1:
            self._say(f"{self.processes.world} processes ({self.processes.strategy}) on {self.device.type}")
        try:
            self._loop()
            if self.evaluated_at != self.progress["step"]:
                self._evaluate_and_keep_best()
        except KeyboardInterrupt:
            self._save_state()
            self._say(f"interrupted at step {self.progress['step']}; continue with --resume")
            raise
        finally:
            self.bar.close()
            if main:
                self.board.close()
        summary = self._finish()
        if self.log is not None:
            self.log.close()
        return summary

    def _loop(self) -> None:
        """Epochs of shuffled token-budget batches; `progress` moves only together with an optimizer step, so
        that the saved state always describes a step boundary."""
        p = self.progress
        started = time.perf_counter() - p["elapsed"]
        meter = _Meter()
        if self._budget_spent():  # resumed at (or past) max_steps
            return
        while p["epoch"] < self.config.epochs or self.config.max_steps is not None:
            batches = batches_by_tokens(self.sizes, self.plan.batch_tokens, True, self.config.seed + p["epoch"])
            while p["batch"] < len(batches):
                group = batches[p["batch"] : p["batch"] + self.config.accumulate]
                loss_sum, count = self._backward(group)
                if math.isfinite(loss_sum):
                    meter.add(loss_sum, count, sum(tokens_in(self.sizes[i]) for indices in group for i in indices))
                p["batch"] += len(group)
                end_of_epoch = p["batch"] == len(batches)
                if end_of_epoch:
                    p["epoch"], p["batch"] = p["epoch"] + 1, 0
                self._step(loss_sum, count)
                p["elapsed"] = time.perf_counter() - started
                if p["step"] % self.config.log_every == 0:
                    self._log_train(*meter.take())
                if self._evaluation_due(end_of_epoch) and self._evaluate_and_keep_best():
                    return
                if self._budget_spent():
                    return
                if end_of_epoch:
                    break

    def _backward(self, group: list[list[int]]) -> tuple[float, float]:
        """Gradients of the summed loss of this process's share of each batch in `group`; returns the loss
        summed over all processes and the number of targets it sums over."""
        totals = torch.zeros(2, device=self.device)
        for n, indices in enumerate(group):
            share = self.processes.share(indices)
            weight = 1.0 if share else 0.0  # a batch smaller than the world: a process idle on it runs one for 0
            items = [self.train_items[i] for i in share or indices[:1]]
            with runtime.gradient_sync(self.model, sync=n == len(group) - 1):
                with runtime.autocast(self.device, self.config.precision):
                    batch = runtime.to_device(self.task.collate(items), self.device)
                    loss, count = self.task.loss(self.model, batch, self.config.label_smoothing)
                self.scaler.scale(loss * weight).backward()
            totals += torch.stack([loss.detach().float(), count.float()]) * weight
        loss_sum, count = self.processes.all_sum(totals).tolist()
        return loss_sum, count

    def _step(self, loss_sum: float, count: float) -> None:
        """Turn the summed gradients into the step's mean (processes average theirs, hence the world), clip,
        update; or skip the update when the loss or the gradient is not finite."""
        grads = [p.grad for p in self.module.parameters() if p.grad is not None]
        torch._foreach_mul_(grads, self.processes.world / max(count, 1.0))
        self.scaler.unscale_(self.optimizer)
        norm = nn.utils.clip_grad_norm_(self.module.parameters(), self.config.clip_norm or math.inf)
        lr = learning_rate(self.config, self.progress["step"], self.total_steps, self.plan.warmup_steps)
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
        self.progress["step"] += 1
        self._count_nonfinite(finite, "loss" if not math.isfinite(loss_sum) else "gradient")
        self.rng_after_step = self._rng_state()  # a resumed run draws the same dropout masks from here
        self.bar.update(1)
        if self.progress["step"] % TRIM_EVERY == 0:
            runtime.return_freed_memory()

    def _count_nonfinite(self, finite: bool, what: str) -> None:
        """Warn of a skipped step; stop the run when `nonfinite_limit` steps in a row were skipped."""
        p = self.progress
        p["nonfinite"] = 0 if finite else p.get("nonfinite", 0) + 1
        if finite:
            return
        limit = self.config.nonfinite_limit
        self._say(
            f"warning: step {p['step']}: the {what} is not finite; the step is skipped ({p['nonfinite']} in a row)"
        )
        if p["nonfinite"] >= limit:
            saved = max(self.evaluated_at, 0)  # a run's directory holds its state from step 0 on
            raise AttnkitError(
                f"step {p['step']}: the {what} was not finite at {limit} steps in a row (train.nonfinite_limit), "
                f"so the run stopped; {self.out} holds step {saved} (--resume continues from it). Lower train.lr, "
                "or train in float32 or bfloat16 instead of float16"
            )

    def _evaluation_due(self, end_of_epoch: bool) -> bool:
        every = self.plan.eval_every
        return (every is None and end_of_epoch) or (every is not None and self.progress["step"] % every == 0)

    def _budget_spent(self) -> bool:
        p = self.progress
        if self.config.max_steps is not None and p["step"] >= self.config.max_steps:
            return True
        if self.config.max_minutes is None:
            return False
        late = torch.tensor([float(p["elapsed"] >= 60 * self.config.max_minutes)], device=self.device)
        return bool(self.processes.all_sum(late).item())  # the processes' clocks differ; any one stops them all

    def _evaluate_and_keep_best(self) -> bool:
        """Score dev (if any), keep the best weights, save the trainer state; True when patience ran out."""
        p = self.progress
        self.evaluated_at = p["step"]
        if self.dev_examples is None:
            self._save_weights()
        else:
            metrics = self._score(self.dev_items, self.dev_examples)
            value = metrics[self.task.metric]
            improved = p["best"] is None or self.task.better(value, p["best"][self.task.metric])
            self._record({"step": p["step"], "epoch": p["epoch"], "dev": metrics, "best": improved})
            self._say(f"step {p['step']}: dev {self._summary(metrics)}" + ("  (best)" if improved else ""))
            if improved:
                p["best"], p["bad_evals"] = metrics, 0
                self._save_weights()
            elif p["step"] >= self.plan.warmup_steps:  # a rate still rising is no reason to stop
                p["bad_evals"] += 1
        self._save_state()
        patience = self.config.patience
        return self.dev_examples is not None and patience is not None and p["bad_evals"] >= patience

    def _score(self, items: list, examples: list, averaged: bool = True) -> dict[str, float]:
        """The task's metrics on encoded `items`; each process predicts every world-th item and all of them get
        every prediction, so the figure is the one a single process gives."""
        world, rank = self.processes.world, self.processes.rank
        weights = self._averaged() if averaged else contextlib.nullcontext()
        with weights, self._whole() as model, runtime.autocast(self.device, self.config.precision):
            mine = predict_items(self.task, model, items[rank::world], self.plan.batch_tokens)
        shares = self.processes.gather(mine)
        predictions = [shares[i % world][i // world] for i in range(len(items))]
        return _numbers(self.task.metrics(predictions, examples))

    @contextlib.contextmanager
    def _whole(self):
        """The model with all its weights on this process: itself, or with FSDP a full copy gathered from the
        shards (every process must enter the block together)."""
        if not self.processes.sharded:
            yield self.module
            return
        copy = self.task.build_model().to(self.device)
        copy.load_state_dict(runtime.full_state(self.module))
        yield copy

    def _load_best(self) -> None:
        """The model takes the best weights saved (for the test score)."""
        if not self.processes.sharded:
            load_weights(self.module, self.out / WEIGHTS_FILE)
            return
        copy = self.task.build_model()
        load_weights(copy, self.out / WEIGHTS_FILE)
        runtime.load_full_state(self.module, copy.to(self.device).state_dict())

    def _averaged(self) -> contextlib.AbstractContextManager:
        """The model holds the averaged weights inside the block (with train.ema), its own ones after."""
        return self.average.swapped() if self.average is not None else contextlib.nullcontext()

    def _finish(self) -> dict:
        p = self.progress
        summary: dict = {"steps": p["step"], "epochs": p["epoch"], "minutes": p["elapsed"] / 60, "dev": p["best"]}
        if self.test_examples is not None:
            self.processes.barrier()  # the best weights are written
            self._load_best()
            items = self.task.encode(self.test_examples, training=False)
            summary["test"] = self._score(items, self.test_examples, averaged=False)  # the best ones are averaged
            self._record({"step": p["step"], "test": summary["test"]})
        summary["peak_memory_mib"] = runtime.peak_memory_mib(self.device)  # after testing, which may hold more
        self._record({"summary": summary})
        return summary

    # files (the first process writes them)

    def _save_weights(self) -> None:
        with self._averaged(), self._whole() as model:
            if self.processes.main:
                with write_errors(self.out / WEIGHTS_FILE):
                    save_weights(model, self.out)

    def _save_state(self, create: bool = False) -> None:
        """Weights, optimizer, gradient scaler, each process's random state and the progress, for --resume. With
        `create`, the output directory appears whole: config, tokenizer, the initial weights and their state."""
        every = self.processes.gather(self.rng_after_step)  # each process's generators: cpu (and cuda)
        rng = {f"rng.{rank}.{i}": state for rank, states in enumerate(every) for i, state in enumerate(states)}
        # before the first step the optimizer has no state, and asking torch for it would make one with a step
        empty = {"state": {}, "param_groups": []}
        optimizer = runtime.optimizer_state(self.module, self.optimizer) if self.optimizer.state else empty
        with self._whole() as model:
            if not self.processes.main:
                return
            with atomic_directory(self.out if create else self.out / STATE_DIR) as tmp:
                if create:
                    sections = {**to_dict(self.run), "task_state": self.task.state()}
                    del sections["model"]  # the model's own configuration (an init checkpoint's) is written
                    write_checkpoint(tmp, model, self.tokenizer, sections)
                    tmp = tmp / STATE_DIR
                    tmp.mkdir()
                save_weights(model, tmp)
                tensors = {
                    f"{name}:{slot}": t for name, slots in optimizer["state"].items() for slot, t in slots.items()
                }
                if self.average is not None:
                    tensors.update({f"ema.{i}": t for i, t in enumerate(self.average.weights)})
                safetensors.torch.save_file({**tensors, **rng}, str(tmp / "optimizer.safetensors"))
                state = {"format": FORMAT, "version": STATE_VERSION, "progress": self.progress}
                state |= {"plan": dataclasses.asdict(self.plan), "scaler": self.scaler.state_dict()}
                write_json(tmp / STATE_FILE, {**state, "param_groups": optimizer["param_groups"]})

    def _load_state(self) -> None:
        """What `_save_state` wrote (the weights are loaded before the model is placed and wrapped); a state that
        is not what it wrote (damaged, edited) is one line naming it."""
        state_dir = self.out / STATE_DIR
        state = read_json(state_dir / STATE_FILE)
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise AttnkitError(f"{state_dir / STATE_FILE}: not an attnkit trainer state")
        if state.get("version") != STATE_VERSION:
            raise AttnkitError(f"{state_dir}: written by an older attnkit; it cannot be resumed by this one")
        wrong = [
            key
            for key in ("progress", "plan", "scaler", "param_groups")
            if not isinstance(state.get(key), list if key == "param_groups" else dict)
        ]
        wrong = wrong or [
            f"progress.{key}" for key, value in state["progress"].items() if not _progress_value(key, value)
        ]
        if wrong:
            raise AttnkitError(f"{state_dir / STATE_FILE}: damaged ({wrong[0]} is not what attnkit writes); {GONE}")
        optimizer_file = state_dir / "optimizer.safetensors"
        try:
            tensors = safetensors.torch.load_file(str(optimizer_file))
        except (OSError, SafetensorError) as error:
            raise AttnkitError(f"{optimizer_file}: unreadable ({error}); {GONE}") from None
        poisoned = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())), None)
        if poisoned is not None:
            raise AttnkitError(f"{optimizer_file}: tensor {poisoned!r} holds NaN or infinity; {GONE}")
        try:
            self._restore_state(state, state_dir, tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            where = f"{optimizer_file} (with {STATE_FILE})"
            raise AttnkitError(f"{where}: damaged ({type(error).__name__}: {error}); {GONE}") from None

    def _restore_state(self, state: dict, state_dir: Path, tensors: dict[str, torch.Tensor]) -> None:
        generators = {
            tuple(map(int, k.split(".")[1:])): tensors.pop(k) for k in [k for k in tensors if k.startswith("rng.")]
        }
        world = 1 + max(rank for rank, _ in generators)
        if world != self.processes.world:
            raise AttnkitError(
                f"{state_dir}: saved by {world} processes; resume with as many (torchrun --nproc_per_node)"
            )
        rank = self.processes.rank
        self._set_rng_state([generators[rank, i] for i in range(2) if (rank, i) in generators])
        if self.average is not None:
            self.average.weights = [tensors.pop(f"ema.{i}").to(self.device) for i in range(len(self.average.weights))]
        slots: dict[str, dict] = {}
        for key, value in tensors.items():
            name, slot = key.rsplit(":", 1)
            slots.setdefault(name, {})[slot] = value
        if slots:  # a state saved before the first step has none: the new optimizer is as it was then
            runtime.load_optimizer_state(
                self.module, self.optimizer, {"state": slots, "param_groups": state["param_groups"]}
            )
            for group in self.optimizer.param_groups:  # torch takes slots of any shape, and fails at the next step
                for parameter in group["params"]:
                    for slot, value in self.optimizer.state.get(parameter, {}).items():
                        if torch.is_tensor(value) and value.dim() > 0 and value.shape != parameter.shape:
                            raise ValueError(f"a {slot} of shape {list(value.shape)} for {list(parameter.shape)}")
        self.scaler.load_state_dict(state["scaler"])
        self.progress = state["progress"]
        self.rng_after_step = self._rng_state()
        saved = state["plan"]
        changed = [f"{k} {saved[k]} -> {v}" for k, v in dataclasses.asdict(self.plan).items() if saved.get(k) != v]
        if changed:  # e.g. a larger max_steps to train on: allowed, but the batches or the schedule move
            self._say(f"warning: the run's plan differs from the one it was started with ({', '.join(changed)})")

    def _rng_state(self) -> list[torch.Tensor]:
        """The random generators that dropout draws from: the CPU's, and the GPU's on CUDA."""
        cuda = [torch.cuda.get_rng_state(self.device)] if self.device.type == "cuda" else []
        return [torch.get_rng_state(), *cuda]

    def _set_rng_state(self, states: list[torch.Tensor]) -> None:
        """What `_rng_state` gave (a CPU run resumed on a GPU starts the GPU's generator from its seed)."""
        torch.set_rng_state(states[0])
        if self.device.type == "cuda" and len(states) > 1:
            torch.cuda.set_rng_state(states[1], self.device)

    def _record(self, entry: dict) -> None:
        if self.log is not None:
            self.log.write(json.dumps(entry) + "\n")
            self.log.flush()
        if self.processes.main and "dev" in entry:
            for name, number in entry["dev"].items():
                self.board.add_scalar(f"dev/{name}", number, entry["step"])

    def _log_train(self, loss: float, speed: float) -> None:
        p = self.progress
        lr = self.optimizer.param_groups[0]["lr"]
        record = {"step": p["step"], "epoch": p["epoch"], "loss": loss, "lr": lr, "tokens_per_s": speed}
        self._record({**record, "elapsed": p["elapsed"]})
        if self.processes.main:
            for name in ("loss", "lr", "tokens_per_s"):
                self.board.add_scalar(f"train/{name}", record[name], p["step"])
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", epoch=p["epoch"], refresh=False)
        if self.bar.disable:  # off a terminal (a log file, CI): a line instead of the bar
            self._say(
                f"step {p['step']:,}/{self.total_steps:,}  epoch {p['epoch']}  loss {loss:.4f}  lr {lr:.2e}  "
                f"{speed:,.0f} tokens/s  {p['elapsed'] / 60:.1f} min"
            )

    def _say(self, message: str) -> None:
        """A progress message, on stderr beside the bar (stdout is for results); the first process only."""
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)  # above the bar, if there is one

    def _summary(self, metrics: dict) -> str:
        return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())


class _Meter:
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


def _progress_value(key: str, value: object) -> bool:
    """Whether `value` is what Trainer.progress holds under `key`: counts, seconds, the best dev metrics."""
    if key == "best":
        return value is None or isinstance(value, dict)
    number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    if key == "elapsed":
        return number
    return number and isinstance(value, int) and key in ("step", "epoch", "batch", "bad_evals", "nonfinite")


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _numbers(metrics: dict) -> dict[str, float]:
    """The scalar metrics (tables such as the confusion matrix stay out of logs)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
