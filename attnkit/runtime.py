"""Where a run computes: the device (cpu, cuda, mps), mixed precision, and under torchrun its share of the work
among processes. Everything here is what torch documents: the env:// rendezvous that torchrun sets up,
DistributedDataParallel or FSDP around the model, autocast and a gradient scaler for float16."""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import os
import sys
import time
import warnings
from collections.abc import Callable
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

from attnkit.errors import AttnkitError

T = TypeVar("T")
DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """The device `name` means: auto is cuda if a GPU is there, else mps (Apple), else cpu."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda", "mps"):
        raise AttnkitError(f"device {name!r} (--device, train.device): expected one of {', '.join(DEVICES)}")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise AttnkitError(f"device {name!r}: torch sees no CUDA GPU here; use cpu or auto")
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise AttnkitError(f"device {name!r}: there are {torch.cuda.device_count()} CUDA devices (cuda:0 ...)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise AttnkitError(f"device {name!r}: MPS is not available here; use cpu or auto")
    return device


@dataclasses.dataclass(frozen=True)
class Processes:
    """This process's place in the run: rank among world processes (1 without torchrun)."""

    rank: int = 0
    world: int = 1
    strategy: str = "ddp"  # how the model is shared among processes: ddp (copies) or fsdp (shards)

    @property
    def sharded(self) -> bool:
        """Whether each process holds only a shard of the weights (FSDP among several processes)."""
        return self.world > 1 and self.strategy == "fsdp"

    @property
    def main(self) -> bool:
        """The process that writes checkpoints, logs and the progress bar."""
        return self.rank == 0

    def share(self, indices: list[int]) -> list[int]:
        """This process's part of a batch: every world-th example (batches are sorted by length, so the parts
        are balanced)."""
        return indices[self.rank :: self.world]

    def all_sum(self, values: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            dist.all_reduce(values)
        return values

    def gather(self, objects: list) -> list[list]:
        """Each process's list of objects, in rank order."""
        if self.world == 1:
            return [objects]
        gathered: list = [None] * self.world
        dist.all_gather_object(gathered, objects)
        return gathered

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def first_does(self, work: Callable[[], T]) -> T:
        """`work()` done by the first process while the others wait, and its result given to all; a mistake it
        meets (AttnkitError) stops every process with the same message."""
        result, error = None, None
        if self.main:
            try:
                result = work()
            except AttnkitError as mistake:
                error = str(mistake)
        if self.world > 1:
            shared = [result, error]
            dist.broadcast_object_list(shared, src=0)
            result, error = shared
        if error is not None:
            raise AttnkitError(error)
        return result


def start(device_name: str, strategy: str = "ddp") -> tuple[torch.device, Processes]:
    """The device and processes of this run. Under torchrun (WORLD_SIZE > 1), join the process group (nccl on
    CUDA, gloo otherwise); each process takes the GPU of its LOCAL_RANK."""
    device = resolve_device(device_name)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return device, Processes(strategy=strategy)
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device, Processes(dist.get_rank(), dist.get_world_size(), strategy)


def stop() -> None:
    """Leave the process group that `start` joined (at the end of a run under torchrun)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, device: torch.device, processes: Processes) -> nn.Module:
    """The model as the processes share it: itself alone; DistributedDataParallel (a copy each, gradients
    averaged); or FSDP (each layer of a `layers` stack and the rest sharded among the processes)."""
    if processes.world == 1:
        return model
    if processes.sharded:
        from torch.distributed.fsdp import fully_shard

        for stack in [m for m in model.modules() if isinstance(m, nn.ModuleList)]:
            for layer in stack:
                fully_shard(layer)
        return fully_shard(model)
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def gradient_sync(model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
    """Inside the block, backward() accumulates gradients without exchanging them among processes (the batches
    of a step before its last one)."""
    if sync or not dist.is_initialized():
        return contextlib.nullcontext()
    if isinstance(model, nn.parallel.DistributedDataParallel):
        return model.no_sync()
    return _fsdp_no_sync(model)


@contextlib.contextmanager
def _fsdp_no_sync(model: nn.Module):
    model.set_requires_gradient_sync(False)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def full_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole state dict of a sharded (FSDP) model on every process; every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True))


def load_full_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Fill a sharded (FSDP) model from a whole state dict that every process holds."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(model, state, options=StateDictOptions(full_state_dict=True))


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """The optimizer's whole state keyed by parameter name ({"state": {name: {slot: tensor}}, "param_groups"}), on
    the CPU of the first process, whatever the model's device and sharding; every process must call it."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict) -> None:
    """The inverse of `optimizer_state`: each process takes its part (and device) of the whole state."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=StateDictOptions(full_state_dict=True))


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """Mixed precision for the forward pass: bfloat16 or float16 autocast on any device; float32 computes plainly."""
    dtype = PRECISIONS[precision]
    return contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def quantize_int8(model: nn.Module) -> nn.Module:
    """`model` (in place) with every linear layer in int8 for inference on the CPU: weights quantized once, each
    layer's input quantized as it comes (PyTorch's dynamic quantization, fbgemm kernels). Matrix products are
    most of the work at inference, so this is about 2-3x faster; the accuracy it costs is measured in
    docs/benchmarks.md. Training stays in float32 or bfloat16."""
    if next(model.parameters()).device.type != "cpu":
        raise AttnkitError("int8 runs on the CPU: add --device cpu")
    with warnings.catch_warnings():  # its deprecation notices are PyTorch's plans, not the user's business
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:  # deprecated for torchao, whose int8 is no faster on the CPU without torch.compile
            from torch.ao.quantization import quantize_dynamic
        except ImportError:
            raise AttnkitError(f"torch {torch.__version__} has no dynamic int8 quantization (torch.ao)") from None
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


FUSED_ACTIVATIONS = {"relu": torch.relu, "gelu": nn.functional.gelu}  # oneDNN's in-product ones, the same bits
PACKING_ROWS = 64  # the rows oneDNN lays the packed weights out for; any count runs (measured: as fast from 1 to 200)


class PackedLinear(nn.Linear):
    """An nn.Linear that, for float32 inference on the CPU, also keeps its weight in oneDNN's packed layout and
    multiplies with it, as torch.compile's freezing does: 2-3x PyTorch's default matrix product on 2 to 200 rows
    (docs/benchmarks.md). A single row (a decoding step at batch 1) multiplies the weight itself, laid out column
    by column at its first such product (the same values, transposed in memory) unless it narrows its input (a
    feed-forward's down projection, which streams 1.15-1.3x as fast row by row): that product reads a large weight
    (an output projection) 1.5x as fast as oneDNN's and 2x a row-major one's, a widening layer's 1.4-1.7x as fast
    as row-major, a square one's 1.1x (benchmarks/one_row_products.py). Its parameters stay the same tensors (a
    tied weight stays tied, the state dict has the same values); training, another dtype or device, and export
    tracing take the plain product, and a weight changed since packing (an optimizer step, load_state_dict) is
    packed again."""

    packed: torch.Tensor | None = None
    packed_version: int = -1

    @classmethod
    def of(cls, linear: nn.Linear) -> PackedLinear:
        packed = cls.__new__(cls)
        nn.Module.__init__(packed)
        packed.in_features, packed.out_features = linear.in_features, linear.out_features
        packed.weight, packed.bias = linear.weight, linear.bias
        return packed.train(linear.training)

    def forward(self, x: torch.Tensor, activation: str | None = None) -> torch.Tensor:
        """x W^T + b, then `activation` (one of FUSED_ACTIVATIONS, or None), which oneDNN applies within its
        product: the same bits as applying it after, without another pass over the output."""
        weight = self.weight
        plain = self.training or torch.compiler.is_compiling() or torch.jit.is_tracing() or torch.is_grad_enabled()
        if plain or x.dtype != torch.float32 or weight.dtype != torch.float32 or x.device.type != "cpu":
            return self._activated(nn.functional.linear(x, weight, self.bias), activation)
        if x.numel() == self.in_features:
            if weight.is_contiguous() and self.out_features >= self.in_features:
                with torch.inference_mode(False):  # a plain tensor, which training may use later
                    weight.data = weight.detach().t().contiguous().t()
            return self._activated(nn.functional.linear(x, weight, self.bias), activation)
        if self.packed is None or self.packed_version != weight._version:
            self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach().contiguous(), PACKING_ROWS)
            self.packed_version = weight._version
        algorithm = "none" if activation == "gelu" else ""  # gelu's exact (erf) form
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, activation or "none", [], algorithm)

    @staticmethod
    def _activated(y: torch.Tensor, activation: str | None) -> torch.Tensor:
        return y if activation is None else FUSED_ACTIVATIONS[activation](y)

    def __getstate__(self) -> dict:
        return {**super().__getstate__(), "packed": None, "packed_version": -1}  # packed again where it runs


def pack_linear_weights(model: nn.Module) -> nn.Module:
    """`model` (in place) with each float32 nn.Linear on the CPU a PackedLinear, where PyTorch has oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return model
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear and child.weight.dtype == torch.float32 and child.weight.device.type == "cpu":
                setattr(parent, name, PackedLinear.of(child))
    return model


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """A batch on `device`: on CUDA a non-blocking copy from pinned memory, so that the copy overlaps compute."""
    if device.type == "cpu":
        return batch
    pinned = device.type == "cuda"
    return {k: (v.pin_memory() if pinned else v).to(device, non_blocking=pinned) for k, v in batch.items()}


def _cpu_seconds() -> tuple[float, float, float] | None:
    """(now, busy CPU seconds of the cores this process may run on, this process's own CPU seconds), from Linux's
    /proc/stat (None elsewhere). Busy: user, nice, system, irq and softirq time; not another VM's steal."""
    try:
        cores = {f"cpu{core}" for core in os.sched_getaffinity(0)}
        with open("/proc/stat") as stat:
            rows = [line.split() for line in stat if line.startswith("cpu")]
    except (AttributeError, OSError):
        return None
    ticks = sum(int(row[i]) for row in rows if row[0] in cores for i in (1, 2, 3, 6, 7))
    return time.monotonic(), ticks / os.sysconf("SC_CLK_TCK"), sum(os.times()[:2])


_SINCE_IMPORT = _cpu_seconds()


def share_busy_cores(device: torch.device) -> str | None:
    """At a CPU run's start, as many threads as the cores that other processes have left free since attnkit
    loaded: two processes of two threads each on two cores wait for each other's turns at every parallel step
    (a tenth of the README's demo beside another 2-thread PyTorch process: 2.6x its idle time with two threads, 2.25x
    with one; docs/benchmarks.md, "A busy machine").
    Decided once per process, so that a run keeps one thread count throughout; after more than a minute since
    loading (a notebook), from half a second's look instead. The user's OMP_NUM_THREADS, a torchrun process or a
    window under a second leaves the count alone. Returns a line saying what it did, if it did anything."""
    global _SINCE_IMPORT
    if device.type != "cpu" or _SINCE_IMPORT is None or "OMP_NUM_THREADS" in os.environ or "WORLD_SIZE" in os.environ:
        return None
    now = _cpu_seconds()
    if now is None or now[0] - _SINCE_IMPORT[0] < 1:
        return None
    if now[0] - _SINCE_IMPORT[0] > 60:  # a long-lived process (a notebook): how busy the cores are now instead
        time.sleep(0.5)
        _SINCE_IMPORT, now = now, _cpu_seconds()
        if now is None:
            return None
    (began, busy_then, own_then), (ended, busy_now, own_now) = _SINCE_IMPORT, now
    _SINCE_IMPORT = None
    others = max(0.0, (busy_now - busy_then) - (own_now - own_then)) / (ended - began)
    threads = torch.get_num_threads()
    fitting = max(1, min(threads, round(len(os.sched_getaffinity(0)) - others)))
    if fitting >= threads:
        return None
    torch.set_num_threads(fitting)
    return (
        f"other processes keep {others:.1f} of this machine's cores busy: {fitting} thread{'s' * (fitting > 1)} "
        f"instead of {threads} (OMP_NUM_THREADS chooses)"
    )


def ready_for_training(device: torch.device) -> str | None:
    """This process's settings for a training run on `device`: the threads a busy machine leaves
    (share_busy_cores) and, on the CPU, freed tensors' memory kept for the next step's (reuse_freed_memory).
    Returns a line saying what it did, where that is worth saying."""
    if device.type == "cpu":
        reuse_freed_memory()
    return share_busy_cores(device)


def _glibc(name: str):
    """A function of glibc's allocator, or None under another C library (musl, macOS, Windows)."""
    try:
        return getattr(ctypes.CDLL(None), name)
    except (AttributeError, OSError, TypeError):
        return None


_MALLOC_TRIM, _MALLOPT = _glibc("malloc_trim"), _glibc("mallopt")
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)


def reuse_freed_memory() -> None:
    """Serve tensors of up to 1 GiB from glibc's heap and keep what they free there, for the next step's tensors of
    the same sizes, until return_freed_memory gives it back (the Trainer calls it every TRIM_EVERY steps). By
    default glibc maps each block over 32 MiB afresh and unmaps it when it is freed, and gives back the heap's top
    as soon as it is free: the system then faults in and zeroes every page of it again, a pass of its own over each
    of a step's largest tensors (a translation batch's logits: 2,000 x 10,000 float32, 80 MB). en-es bfloat16
    (benchmarks/train_speed.py's): page faults 3.3M -> 0.8M over 36 steps, 16% more tokens a second; the same
    numbers, only their memory comes from elsewhere. For the whole process from then on: glibc cannot be told
    to go back to its adaptive defaults."""
    if _MALLOPT is not None:
        _MALLOPT(M_MMAP_THRESHOLD, 1 << 30)
        _MALLOPT(M_TRIM_THRESHOLD, (1 << 31) - 1)


def peak_memory_mib(device: torch.device) -> float | None:
    """The most memory this process has held: on a GPU, what torch allocated there; else the peak resident
    memory of the process (None where the system does not say)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource
    except ImportError:  # Windows
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def return_freed_memory() -> None:
    """Give the pages of freed tensors back to the system. glibc raises its mmap threshold after each large free
    and from then on keeps freed blocks on its heap: without this, the resident memory of a long run grows by
    gigabytes over what its tensors use (benchmarks/trim_memory.py; docs/benchmarks.md, note 5)."""
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)
