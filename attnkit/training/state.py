"""A run's directory as training keeps it: complete from its first moment, the best weights replaced after each
better evaluation, and OUT/trainer_state, replaced whole after each evaluation, with the latest weights, the
optimizer's slots, the gradient scaler, every process's random generators and the run's progress, so that a resumed
run continues exactly where the saved step left it; and the checks that refuse a state attnkit did not write."""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterator
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import Tensor, nn

from attnkit import runtime
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.files import (
    FORMAT,
    STATE_DIR,
    STATE_FILE,
    WEIGHTS_FILE,
    atomic_directory,
    read_json,
    write_errors,
    write_json,
)
from attnkit.inference.checkpoint import load_weights, save_weights, write_checkpoint
from attnkit.training.optim import Average

STATE_VERSION = 2  # optimizer state keyed by parameter name (version 1: by position)
OPTIMIZER_FILE = "optimizer.safetensors"
GONE = "it cannot be resumed (--overwrite starts the run again)"  # a trainer state that is not what attnkit wrote


@dataclasses.dataclass
class Progress:
    """Where a run stands. It moves only together with an optimizer step, so that a saved state always describes
    a step boundary."""

    step: int = 0  # optimizer steps taken
    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch taken
    best: dict | None = None  # the best dev metrics so far
    bad_evals: int = 0  # evaluations since the best one (patience)
    elapsed: float = 0.0  # seconds of training, over every resumption
    nonfinite: int = 0  # steps skipped in a row because the loss or the gradient was not finite

    @classmethod
    def read(cls, values: dict, where: Path) -> Progress:
        """The progress saved in `where`; a value that is not what attnkit writes is one line naming it."""
        counts = {field.name for field in dataclasses.fields(cls)} - {"best", "elapsed"}
        for key, value in values.items():
            number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if key == "best":
                right = value is None or isinstance(value, dict)
            elif key == "elapsed":
                right = number and value >= 0
            else:
                right = key in counts and number and isinstance(value, int) and value >= 0
            if not right:
                raise AttnkitError(f"{where}: damaged (progress.{key} is not what attnkit writes); {GONE}")
        return cls(**values)


@dataclasses.dataclass
class Saved:
    """A trainer state as read: its JSON parts and its tensors, sorted by what they are."""

    progress: Progress
    plan: dict
    scaler: dict
    param_groups: list
    slots: dict[str, dict[str, Tensor]]  # the optimizer's, by parameter name
    average: dict[int, Tensor]  # the weight average's (train.ema), by position
    generators: dict[tuple[int, int], Tensor]  # (process, generator) -> its state


class Checkpointer:
    """Writes the run's directory `out` (the first process does; every process takes part in gathering what a
    sharded model holds) and reads it back for --resume."""

    def __init__(
        self,
        out: Path,
        processes: runtime.Processes,
        module: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        average: Average | None,
        build: Callable[[], nn.Module],
        only: set[str] | None = None,
    ) -> None:
        """`build` makes a new model of the run's shape; `only` names the weights a LoRA run saves (its adapters
        and head: the base's are the base's)."""
        self.out, self.processes, self.module, self.build = out, processes, module, build
        self.optimizer, self.scaler, self.average, self.only = optimizer, scaler, average, only

    @contextlib.contextmanager
    def whole(self) -> Iterator[nn.Module]:
        """The model with all its weights on this process: itself, or with FSDP a full copy gathered from the
        shards (every process must enter the block together)."""
        if not self.processes.sharded:
            yield self.module
            return
        copy = self.build().to(next(self.module.parameters()).device)
        copy.load_state_dict(runtime.full_state(self.module))
        yield copy

    def averaged(self) -> contextlib.AbstractContextManager:
        """The model holds the averaged weights inside the block (with train.ema), its own ones after."""
        return self.average.swapped() if self.average is not None else contextlib.nullcontext()

    def save_weights(self) -> None:
        """The best weights so far (the averaged ones, with train.ema), replacing the last."""
        with self.averaged(), self.whole() as model:
            if self.processes.main:
                with write_errors(self.out / WEIGHTS_FILE):
                    save_weights(model, self.out, self.only)

    def load_best(self) -> None:
        """The model takes the best weights saved (for the test score)."""
        if not self.processes.sharded:
            load_weights(self.module, self.out / WEIGHTS_FILE, self.only)
            return
        with self.whole() as copy:  # the weights a LoRA run does not save are the ones it holds
            load_weights(copy, self.out / WEIGHTS_FILE, self.only)
            runtime.load_full_state(self.module, copy.state_dict())

    def save_state(
        self,
        progress: Progress,
        plan: dict,
        generators: list[Tensor],
        create: tuple[Tokenizer, dict] | None = None,
    ) -> None:
        """The trainer state, for --resume; `generators` are this process's. With `create` (the tokenizer and the
        config.json sections of the run), the whole directory appears at once: config, tokenizer, the initial
        weights and their state."""
        every = self.processes.gather(generators)  # each process's: cpu (and cuda)
        # before the first step the optimizer has no state, and asking torch for it would make one with a step
        empty = {"state": {}, "param_groups": []}
        optimizer = runtime.optimizer_state(self.module, self.optimizer) if self.optimizer.state else empty
        with self.whole() as model:
            if not self.processes.main:
                return
            with atomic_directory(self.out if create else self.out / STATE_DIR) as tmp:
                if create is not None:
                    tokenizer, sections = create
                    write_checkpoint(tmp, model, tokenizer, sections, self.only)
                    tmp = tmp / STATE_DIR
                    tmp.mkdir()
                scaler = self.scaler.state_dict()
                write_state(tmp, model, optimizer, scaler, self.average, every, progress, plan, self.only)

    def load_state(self, device: torch.device) -> Saved:
        """What `save_state` wrote, put back into the optimizer, scaler, weight average and random generators
        (the weights are loaded before the model is placed and wrapped); a state that is not what it wrote
        (damaged, edited) is one line naming it."""
        directory = self.out / STATE_DIR
        saved = read_state(directory)
        try:
            restore(directory, saved, self.module, self.optimizer, self.scaler, self.average, self.processes, device)
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            where = f"{directory / OPTIMIZER_FILE} (with {STATE_FILE})"
            raise AttnkitError(f"{where}: damaged ({type(error).__name__}: {error}); {GONE}") from None
        return saved


def write_state(
    directory: Path,
    model: nn.Module,
    optimizer: dict,
    scaler: dict,
    average: Average | None,
    generators: list[list[Tensor]],
    progress: Progress,
    plan: dict,
    only: set[str] | None = None,
) -> None:
    """The files of a trainer state in `directory` (a temporary one, which the caller renames into place):
    `optimizer` is the optimizer's whole state keyed by parameter name, `generators` each process's; the weights
    of `only`'s names where given (a LoRA run's)."""
    save_weights(model, directory, only)
    tensors = {f"{name}:{slot}": t for name, slots in optimizer["state"].items() for slot, t in slots.items()}
    if average is not None:
        tensors.update({f"ema.{i}": t for i, t in enumerate(average.weights)})
    tensors.update({f"rng.{rank}.{i}": t for rank, states in enumerate(generators) for i, t in enumerate(states)})
    safetensors.torch.save_file(tensors, str(directory / OPTIMIZER_FILE))
    state = {"format": FORMAT, "version": STATE_VERSION, "progress": dataclasses.asdict(progress), "plan": plan}
    write_json(directory / STATE_FILE, {**state, "scaler": scaler, "param_groups": optimizer["param_groups"]})


def read_state(directory: Path) -> Saved:
    """What `write_state` wrote in `directory`; a state that is not that (damaged, edited) is one line naming it."""
    state = read_json(directory / STATE_FILE)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise AttnkitError(f"{directory / STATE_FILE}: not an attnkit trainer state")
    if state.get("version") != STATE_VERSION:
        raise AttnkitError(f"{directory}: written by an older attnkit; it cannot be resumed by this one")
    kinds = {"progress": dict, "plan": dict, "scaler": dict, "param_groups": list}
    wrong = [key for key, kind in kinds.items() if not isinstance(state.get(key), kind)]
    if wrong:
        raise AttnkitError(f"{directory / STATE_FILE}: damaged ({wrong[0]} is not what attnkit writes); {GONE}")
    progress = Progress.read(state["progress"], directory / STATE_FILE)
    file = directory / OPTIMIZER_FILE
    try:
        tensors = safetensors.torch.load_file(str(file))
    except (OSError, SafetensorError) as error:
        raise AttnkitError(f"{file}: unreadable ({error}); {GONE}") from None
    poisoned = next((k for k, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())), None)
    if poisoned is not None:
        raise AttnkitError(f"{file}: tensor {poisoned!r} holds NaN or infinity; {GONE}")
    try:
        generators = {tuple(map(int, k.split(".")[1:])): t for k, t in tensors.items() if k.startswith("rng.")}
        average = {int(k.split(".")[1]): t for k, t in tensors.items() if k.startswith("ema.")}
        slots: dict[str, dict[str, Tensor]] = {}
        for key, value in tensors.items():
            if not key.startswith(("rng.", "ema.")):
                name, slot = key.rsplit(":", 1)
                slots.setdefault(name, {})[slot] = value
    except ValueError as error:
        raise AttnkitError(f"{file}: damaged (a tensor's name: {error}); {GONE}") from None
    return Saved(progress, state["plan"], state["scaler"], state["param_groups"], slots, average, generators)


def restore(
    directory: Path,
    saved: Saved,
    module: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    average: Average | None,
    processes: runtime.Processes,
    device: torch.device,
) -> None:
    """Put back the optimizer, scaler, weight average and this process's random generators as `saved` (read from
    `directory`) holds them. A state that does not fit the run raises: a KeyError, TypeError, ValueError or
    RuntimeError."""
    world = 1 + max(rank for rank, _ in saved.generators)
    if world != processes.world:
        raise AttnkitError(f"{directory}: saved by {world} processes; resume with as many (torchrun --nproc_per_node)")
    rank = processes.rank
    set_rng_state([saved.generators[rank, i] for i in range(2) if (rank, i) in saved.generators], device)
    if average is not None:
        average.weights = [saved.average[i].to(device) for i in range(len(average.weights))]
    if saved.slots:  # a state saved before the first step has none: the new optimizer is as it was then
        state = {"state": saved.slots, "param_groups": saved.param_groups}
        runtime.load_optimizer_state(module, optimizer, state)
        for group in optimizer.param_groups:  # torch takes slots of any shape, and fails at the next step
            for parameter in group["params"]:
                for slot, value in optimizer.state.get(parameter, {}).items():
                    if torch.is_tensor(value) and value.dim() > 0 and value.shape != parameter.shape:
                        raise ValueError(f"a {slot} of shape {list(value.shape)} for {list(parameter.shape)}")
    scaler.load_state_dict(saved.scaler)


def rng_state(device: torch.device) -> list[Tensor]:
    """The random generators that dropout draws from: the CPU's, and the GPU's on CUDA."""
    cuda = [torch.cuda.get_rng_state(device)] if device.type == "cuda" else []
    return [torch.get_rng_state(), *cuda]


def set_rng_state(states: list[Tensor], device: torch.device) -> None:
    """What `rng_state` gave (a CPU run resumed on a GPU starts the GPU's generator from its seed)."""
    torch.set_rng_state(states[0])
    if device.type == "cuda" and len(states) > 1:
        torch.cuda.set_rng_state(states[1], device)
