"""The training loop: AdamW with warmup and decay, gradient accumulation and clipping, bfloat16 autocast, batches
by token budget, evaluation on dev with early stopping and the best checkpoint kept, exact resume, logs.

The loop moves tensors and steps the optimizer; what a label or a target means lives in attnkit.tasks.

Output directory (a complete checkpoint from the first moment it exists):
  config.json, tokenizer.json, model.safetensors   the best model so far (the last one without dev data)
  trainer_state/                                   the latest step, for --resume
  log.jsonl, tensorboard/                          training and evaluation records
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import safetensors.torch
import torch
from torch import nn
from tqdm import tqdm

from attnkit.checkpoint import load_weights
from attnkit.config import FINE_TUNABLE, ModelConfig, RunConfig, TrainConfig, to_dict
from attnkit.data.batching import BATCH_TOKENS, batches_by_tokens
from attnkit.errors import AttnkitError
from attnkit.files import (
    CONFIG_FILE,
    FORMAT,
    STATE_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    atomic_directory,
    read_json,
    write_json,
)
from attnkit.interop.hf import is_hf_directory, read_hf_pooler
from attnkit.nn import EncoderDecoder
from attnkit.pipeline import Pipeline, encoder_of, predict_items, read_run
from attnkit.tasks import Task, make_task
from attnkit.tokenization import TOKENIZER_FILE, Tokenizer

TRIM_EVERY = 10  # optimizer steps between returns of freed memory to the system
# what unset settings become: derived from the data and the run's length, so that every size of data learns;
# a setting given in the config is used as it is
MIN_BATCHES = 16  # batches hold BATCH_TOKENS at most, fewer so that an epoch has 16 batches
WARMUP_STEPS, WARMUP_SHARE = 200, 0.1  # 200 steps of warmup, or a tenth of the run if that is shorter
# dev is scored each epoch, the usual cadence (scored more often, a small dev set picks checkpoints on its noise),
# but at least this many times in a run: a run of one or two epochs (or max_steps within one) still gets a choice
EVALUATIONS = 4


def train(run: RunConfig, *, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train as `run` says and return a summary (steps, best dev metrics, test metrics if data.test is set).
    With `resume`, continue the interrupted run in run.out exactly where its last saved step left off;
    `quiet` keeps the progress bar and evaluation lines off stderr."""
    return Trainer(run, resume=resume, overwrite=overwrite, quiet=quiet).fit()


@dataclasses.dataclass(frozen=True)
class Plan:
    """The run's shape, derived from the data and the settings, so that every size of data gets steps to learn
    from: batches, steps, warmup and evaluation cadence."""

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


def plan_run(config: TrainConfig, sizes: list[int]) -> Plan:
    """The Plan for training examples of `sizes` tokens under `config`."""
    # unset: BATCH_TOKENS, or fewer for small data (an example longer than the budget is a batch of its own)
    batch_tokens = config.batch_tokens or max(min(BATCH_TOKENS, sum(sizes) // MIN_BATCHES), 1)
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


def learning_rate(config: TrainConfig, step: int, total_steps: int, warmup_steps: int) -> float:
    """Linear warmup over warmup_steps, then the schedule's decay (to zero at total_steps for linear and cosine)."""
    warmup = max(warmup_steps, 1)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    if config.schedule == "inverse_sqrt":
        return config.lr * math.sqrt(warmup / (step + 1))
    progress = min((step - warmup) / max(total_steps - warmup, 1), 1.0)
    if config.schedule == "linear":
        return config.lr * (1.0 - progress)
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1.0 + math.cos(math.pi * progress))
    return config.lr


class Trainer:
    """One training run: reads and checks every input first (nothing is written for bad input), then `fit`."""

    def __init__(self, run: RunConfig, *, resume: bool, overwrite: bool, quiet: bool = False) -> None:
        self.run, self.config, self.out = run, run.train, Path(run.out)
        self.quiet, self.resumed = quiet, resume
        self._check_out(resume, overwrite)
        _seed_everything(self.config.seed)
        self._read_data(resume)
        self._build_model(resume)
        self.train_items = self.task.encode(self.train_examples, self.tokenizer, training=True)
        self.dev_items = (
            self.task.encode(self.dev_examples, self.tokenizer, training=False) if self.dev_examples else None
        )
        self.optimizer = _adamw(self.model, self.config)
        self.average = _Average(self.model, self.config.ema) if self.config.ema else None
        self.sizes = self.task.sizes(self.train_items)
        self.plan = plan_run(self.config, self.sizes)
        self.total_steps = self.plan.total_steps
        self.progress = {"step": 0, "epoch": 0, "batch": 0, "best": None, "bad_evals": 0, "elapsed": 0.0}
        self.rng_after_step = torch.get_rng_state()
        if resume:
            self._load_state()
        self.evaluated_at = self.progress["step"] if resume else -1

    def _read_data(self, resume: bool) -> None:
        """The task (with the labels of the run being resumed) and the train/dev/test examples, all checked."""
        if not self.run.data.train:
            raise AttnkitError("data.train: no training file given")
        data = self.run.data
        self.task: Task = make_task(self.run.task, data, read_run(self.out)[1] if resume else None)
        examples = self.task.read(data.train)
        held_out = _hold_out(examples, data.dev_fraction, data.test_fraction, self.config.seed)
        self.train_examples = held_out["train"]
        if not resume:
            self.task.fit(self.train_examples)
        self.dev_examples = held_out["dev"] or self._read_checked(data.dev)
        self.test_examples = held_out["test"] or self._read_checked(data.test)
        if self.dev_examples is not None and self.config.eval_examples:
            self.dev_examples = self.dev_examples[: self.config.eval_examples]

    def _build_model(self, resume: bool) -> None:
        """Tokenizer, model configuration and model: from the checkpoint being fine-tuned (train.init), from
        the run being resumed, or new."""
        init = self.config.init
        source = Pipeline.load(init, self.config.trust_pickle) if init and not resume else None
        self.tokenizer = source.tokenizer if source else self._tokenizer(resume)
        self.model_config = self._model_config(resume, source)
        self.task.model_config = self.model_config
        self.model = self.task.build_model(self.model_config)
        if source is not None:
            _initialize(self.model, source.model, init, self.config.trust_pickle)
        if self.config.freeze_embeddings:
            for module in _embedding_modules(self.model):
                module.requires_grad_(False)

    def _check_out(self, resume: bool, overwrite: bool) -> None:
        if resume and not (self.out / STATE_DIR / STATE_FILE).is_file():
            raise AttnkitError(f"{self.out}: nothing to resume (no {STATE_DIR}/{STATE_FILE})")
        if not resume and self.out.exists() and not overwrite:
            raise AttnkitError(f"{self.out}: already exists; pass --resume to continue it or --overwrite to replace it")

    def _read_checked(self, path: str | None) -> list | None:
        if not path:
            return None
        examples = self.task.read(path)
        self.task.check(examples, path)
        return examples

    def _model_config(self, resume: bool, source: Pipeline | None) -> ModelConfig:
        """The saved one when resuming; the init checkpoint's (with this run's dropout) when fine-tuning;
        else the run's, sized to the tokenizer."""
        if resume:
            return read_run(self.out)[0].model
        if source is not None:
            dropouts = {name: getattr(self.run.model, name) for name in FINE_TUNABLE}
            arch = self.run.model.arch  # the task's: an encoder-decoder's encoder can start a classifier
            same = arch == source.model.config.arch  # a BART encoder alone is no family's architecture
            preset = source.model.config.preset if same else None
            return dataclasses.replace(source.model.config, arch=arch, preset=preset, **dropouts)
        return dataclasses.replace(self.run.model, vocab_size=self.tokenizer.vocab_size, pad_id=self.tokenizer.pad_id)

    def _tokenizer(self, resume: bool) -> Tokenizer:
        if resume:
            return Tokenizer.load(self.out)
        if self.run.tokenizer.path:
            return Tokenizer.load(self.run.tokenizer.path)
        return Tokenizer.train(self.task.tokenizer_texts(self.train_examples), self.run.tokenizer)

    # the loop
    def fit(self) -> dict:
        if not self.resumed:
            self._create_out()
        self.log = open(self.out / "log.jsonl", "a", encoding="utf-8")
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
        self._say(self.plan.describe(self.dev_examples is not None))
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
            self.board.close()
        summary = self._finish()
        self.log.close()
        return summary

    def _loop(self) -> None:
        """Epochs of shuffled token-budget batches; `progress` moves only together with an optimizer step, so
        that the saved state always describes a step boundary."""
        p = self.progress
        started = time.perf_counter() - p["elapsed"]
        meter = _Meter()
        while p["epoch"] < self.config.epochs or self.config.max_steps is not None:
            batches = batches_by_tokens(self.sizes, self.plan.batch_tokens, True, self.config.seed + p["epoch"])
            while p["batch"] < len(batches):
                group = batches[p["batch"] : p["batch"] + self.config.accumulate]
                for indices in group:
                    with self._autocast():
                        batch = self.task.collate([self.train_items[i] for i in indices])
                        loss = self.task.loss(self.model, batch, self.config.label_smoothing)
                    (loss / len(group)).backward()
                    meter.add(loss.item(), sum(self.sizes[i] for i in indices))
                p["batch"] += len(group)
                end_of_epoch = p["batch"] == len(batches)
                if end_of_epoch:
                    p["epoch"], p["batch"] = p["epoch"] + 1, 0
                self._step()
                p["elapsed"] = time.perf_counter() - started
                if p["step"] % self.config.log_every == 0:
                    self._log_train(*meter.take())
                if self._evaluation_due(end_of_epoch) and self._evaluate_and_keep_best():
                    return
                if self._budget_spent():
                    return
                if end_of_epoch:
                    break

    def _step(self) -> None:
        if self.config.clip_norm:
            nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        lr = learning_rate(self.config, self.progress["step"], self.total_steps, self.plan.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_scale"]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.average is not None:
            self.average.update()
        self.progress["step"] += 1
        self.rng_after_step = torch.get_rng_state()  # a resumed run draws the same dropout masks from here
        self.bar.update(1)
        if self.progress["step"] % TRIM_EVERY == 0:
            _return_freed_memory()

    def _evaluation_due(self, end_of_epoch: bool) -> bool:
        every = self.plan.eval_every
        return (every is None and end_of_epoch) or (every is not None and self.progress["step"] % every == 0)

    def _budget_spent(self) -> bool:
        p = self.progress
        if self.config.max_steps is not None and p["step"] >= self.config.max_steps:
            return True
        return self.config.max_minutes is not None and p["elapsed"] >= 60 * self.config.max_minutes

    def _evaluate_and_keep_best(self) -> bool:
        """Score dev (if any), keep the best weights, save the trainer state; True when patience ran out."""
        p = self.progress
        self.evaluated_at = p["step"]
        if self.dev_examples is None:
            self._save_weights()
        else:
            metrics = self._score_dev()
            value = metrics[self.task.metric]
            improved = p["best"] is None or self.task.better(value, p["best"][self.task.metric])
            self._record({"step": p["step"], "epoch": p["epoch"], "dev": metrics, "best": improved})
            for name, number in metrics.items():
                self.board.add_scalar(f"dev/{name}", number, p["step"])
            self._say(f"step {p['step']}: dev {self._summary(metrics)}" + ("  (best)" if improved else ""))
            if improved:
                p["best"], p["bad_evals"] = metrics, 0
                self._save_weights()
            elif p["step"] >= self.plan.warmup_steps:  # a rate still rising is no reason to stop
                p["bad_evals"] += 1
        self._save_state()
        patience = self.config.patience
        return self.dev_examples is not None and patience is not None and p["bad_evals"] >= patience

    def _score_dev(self) -> dict:
        with self._autocast(), self._averaged():
            predictions = predict_items(self.task, self.model, self.tokenizer, self.dev_items, self.plan.batch_tokens)
        return _numbers(self.task.metrics(predictions, self.dev_examples))

    def _averaged(self) -> contextlib.AbstractContextManager:
        """The model holds the averaged weights inside the block (with train.ema), its own ones after."""
        return self.average.swapped() if self.average is not None else contextlib.nullcontext()

    def _finish(self) -> dict:
        p = self.progress
        summary: dict = {"steps": p["step"], "epochs": p["epoch"], "minutes": p["elapsed"] / 60, "dev": p["best"]}
        if self.test_examples is not None:
            load_weights(self.model, self.out / WEIGHTS_FILE)
            items = self.task.encode(self.test_examples, self.tokenizer, training=False)
            with self._autocast():
                predictions = predict_items(self.task, self.model, self.tokenizer, items, self.plan.batch_tokens)
            summary["test"] = _numbers(self.task.metrics(predictions, self.test_examples))
            self._record({"step": p["step"], "test": summary["test"]})
        self._record({"summary": summary})
        return summary

    # files
    def _create_out(self) -> None:
        """The output directory appears whole: config, tokenizer and the initial weights."""
        with atomic_directory(self.out) as tmp:
            run = dataclasses.replace(self.run, model=self.model_config)
            write_json(tmp / CONFIG_FILE, {"format": FORMAT, **to_dict(run), "task_state": self.task.state()})
            self.tokenizer.save(tmp / TOKENIZER_FILE)
            safetensors.torch.save_model(self.model, str(tmp / WEIGHTS_FILE))

    def _save_weights(self) -> None:
        tmp = self.out / f".{WEIGHTS_FILE}.tmp"
        with self._averaged():
            safetensors.torch.save_model(self.model, str(tmp))
        os.replace(tmp, self.out / WEIGHTS_FILE)

    def _save_state(self) -> None:
        with atomic_directory(self.out / STATE_DIR) as tmp:
            safetensors.torch.save_model(self.model, str(tmp / WEIGHTS_FILE))
            tensors, groups = _optimizer_tensors(self.optimizer)
            if self.average is not None:
                tensors.update({f"ema.{i}": t for i, t in enumerate(self.average.weights)})
            safetensors.torch.save_file({**tensors, "rng": self.rng_after_step}, str(tmp / "optimizer.safetensors"))
            state = {"format": FORMAT, "progress": self.progress, "plan": dataclasses.asdict(self.plan)}
            write_json(tmp / STATE_FILE, {**state, "param_groups": groups})

    def _load_state(self) -> None:
        state_dir = self.out / STATE_DIR
        state = read_json(state_dir / STATE_FILE)
        load_weights(self.model, state_dir / WEIGHTS_FILE)
        tensors = safetensors.torch.load_file(str(state_dir / "optimizer.safetensors"))
        torch.set_rng_state(tensors.pop("rng"))
        if self.average is not None:
            self.average.weights = [tensors.pop(f"ema.{i}") for i in range(len(self.average.weights))]
        self.optimizer.load_state_dict(_optimizer_state(tensors, state["param_groups"]))
        self.progress = state["progress"]
        saved = state.get("plan") or dataclasses.asdict(self.plan)  # runs saved before plans were recorded have none
        changed = [f"{k} {saved[k]} -> {v}" for k, v in dataclasses.asdict(self.plan).items() if saved.get(k) != v]
        if changed:  # e.g. a larger max_steps to train on: allowed, but the batches or the schedule move
            self._say(f"warning: the run's plan differs from the one it was started with ({', '.join(changed)})")

    def _record(self, entry: dict) -> None:
        self.log.write(json.dumps(entry) + "\n")
        self.log.flush()

    def _log_train(self, loss: float, speed: float) -> None:
        p = self.progress
        lr = self.optimizer.param_groups[0]["lr"]
        self._record(
            {
                "step": p["step"],
                "epoch": p["epoch"],
                "loss": loss,
                "lr": lr,
                "tokens_per_s": speed,
                "elapsed": p["elapsed"],
            }
        )
        for name, value in (("loss", loss), ("lr", lr), ("tokens_per_s", speed)):
            self.board.add_scalar(f"train/{name}", value, p["step"])
        self.bar.set_postfix(loss=f"{loss:.3f}", tok_s=f"{speed:,.0f}", epoch=p["epoch"], refresh=False)
        if self.bar.disable:  # off a terminal (a log file, CI): a line instead of the bar
            self._say(
                f"step {p['step']:,}/{self.total_steps:,}  epoch {p['epoch']}  loss {loss:.4f}  lr {lr:.2e}  "
                f"{speed:,.0f} tokens/s  {p['elapsed'] / 60:.1f} min"
            )

    def _say(self, message: str) -> None:
        """A progress message, on stderr beside the bar (stdout is for results)."""
        if not self.quiet:
            tqdm.write(message, file=sys.stderr)  # above the bar, if there is one

    def _summary(self, metrics: dict) -> str:
        return "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bfloat16":
            device = next(self.model.parameters()).device.type
            return torch.autocast(device, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _hold_out(examples: list, dev_fraction: float | None, test_fraction: float | None, seed: int) -> dict:
    """Split one file into train/dev/test at random (the same split for the same seed); the held-out parts are
    None when their fraction is unset."""
    if not dev_fraction and not test_fraction:
        return {"train": examples, "dev": None, "test": None}
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    dev_count, test_count = (round(len(shuffled) * (f or 0)) for f in (dev_fraction, test_fraction))
    if (
        len(shuffled) - dev_count - test_count < 1
        or (dev_fraction and not dev_count)
        or (test_fraction and not test_count)
    ):
        raise AttnkitError(f"data: {len(examples)} examples are too few to hold out dev/test fractions")
    return {
        "dev": shuffled[:dev_count] or None,
        "test": shuffled[dev_count : dev_count + test_count] or None,
        "train": shuffled[dev_count + test_count :],
    }


class _Average:
    """An exponential moving average of the trainable weights: after each step, avg += (1 - decay) (w - avg)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.parameters = [p for p in model.parameters() if p.requires_grad]
        self.weights = [p.detach().clone() for p in self.parameters]
        self.decay = decay

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.weights, [p.detach() for p in self.parameters], 1.0 - self.decay)

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        for p, w in zip(self.parameters, self.weights):
            p.data, w.data = w.data, p.data
        try:
            yield
        finally:
            for p, w in zip(self.parameters, self.weights):
                p.data, w.data = w.data, p.data


class _Meter:
    """Mean loss and tokens per second since the last report."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.loss, self.batches, self.tokens, self.start = 0.0, 0, 0, time.perf_counter()

    def add(self, loss: float, tokens: int) -> None:
        self.loss, self.batches, self.tokens = self.loss + loss, self.batches + 1, self.tokens + tokens

    def take(self) -> tuple[float, float]:
        result = self.loss / max(self.batches, 1), self.tokens / (time.perf_counter() - self.start)
        self.reset()
        return result


def _glibc_malloc_trim():
    """glibc's malloc_trim, or None under another C library (musl, macOS, Windows)."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


_MALLOC_TRIM = _glibc_malloc_trim()


def _return_freed_memory() -> None:
    """Give the pages of freed tensors back to the system. glibc raises its mmap threshold after each large free
    and from then on keeps freed blocks on its heap: without this, the resident memory of a long run grows by
    gigabytes over what its tensors use (benchmarks/trim_memory.py; docs/benchmarks.md, note 5)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _adamw(model: nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW over the trainable parameters; biases and norm weights (1-D) are not decayed. Each group has an
    lr_scale: with layer_decay < 1, layer i of a stack of N learns at layer_decay ** (N - i) of the rate, the
    embeddings at layer_decay ** (N + 1), the rest (final norm, task head) at the full rate."""
    groups: dict[tuple[float, bool], list] = {}
    for name, parameter in model.named_parameters():
        if parameter.requires_grad:
            key = (_lr_scale(model, name, config.layer_decay), parameter.dim() >= 2)
            groups.setdefault(key, []).append(parameter)
    param_groups = [
        {"params": params, "lr_scale": scale, "weight_decay": config.weight_decay if decayed else 0.0}
        for (scale, decayed), params in groups.items()
    ]
    return torch.optim.AdamW(param_groups, lr=config.lr, betas=(0.9, 0.98), eps=1e-8)


def _lr_scale(model: nn.Module, name: str, decay: float) -> float:
    if decay == 1.0:
        return 1.0
    parts = name.split(".")
    stack = model
    for i, part in enumerate(parts):
        if part == "layers" and i + 1 < len(parts) and isinstance(stack, nn.Module):
            return decay ** (len(stack.layers) - int(parts[i + 1]))
        if part in ("embedding", "positions", "embed_norm"):
            return decay ** (len(getattr(stack, "layers", [])) + 1)
        stack = getattr(stack, part, None)
    return 1.0


def _embedding_modules(model: nn.Module) -> list[nn.Module]:
    return [m for name, m in model.named_modules() if name.split(".")[-1] in ("embedding", "positions")]


def _initialize(model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
    """Copy the pretrained part into a task model: the whole encoder-decoder, or the encoder (and BERT's pooler
    into a classifier that pools with one, when the checkpoint has it)."""
    if isinstance(model, EncoderDecoder):
        if not isinstance(source, EncoderDecoder):
            raise AttnkitError(f"{where}: a seq2seq model needs an encoder-decoder checkpoint to start from")
        model.load_state_dict(source.state_dict())
        return
    encoder = encoder_of(source)
    if encoder is None:
        raise AttnkitError(f"{where}: has no encoder to start a {type(model).__name__.lower()} from")
    model.encoder.load_state_dict(encoder.state_dict())
    if getattr(model, "pooler", None) is not None:
        if getattr(source, "pooler", None) is not None:
            model.pooler.load_state_dict(source.pooler.state_dict())
        elif is_hf_directory(where) and (pooler := read_hf_pooler(where, trust_pickle)) is not None:
            model.pooler.load_state_dict(pooler)


def _numbers(metrics: dict) -> dict[str, float]:
    """The scalar metrics (tables such as the confusion matrix stay out of logs)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))}


def _optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict, list]:
    """The optimizer state as flat tensors (for safetensors) and its JSON-ready parameter groups."""
    state = optimizer.state_dict()
    tensors = {f"{index}.{name}": value for index, slots in state["state"].items() for name, value in slots.items()}
    return tensors, state["param_groups"]


def _optimizer_state(tensors: dict, groups: list) -> dict:
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    return {"state": state, "param_groups": groups}
