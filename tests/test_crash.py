"""Killed with SIGKILL at any moment, even in the middle of writing a checkpoint, a run continued with `--resume`
ends with the weights of the run that was never interrupted: bit for bit, on the CPU with the same seed; in one
process, and under torchrun (2 CPU processes) whether the whole job is killed or one of its processes."""

import concurrent.futures
import functools
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import safetensors.torch
import torch

from tests.conftest import PRETRAIN_SETTINGS, TINY, corpus, sentiment_rows, write_tsv

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX")

CLASSIFY = [*TINY, "train.max_steps=30", "train.eval_every=4", "train.patience=null", "model.dropout=0.1"]
PRETRAIN = [*PRETRAIN_SETTINGS, "train.max_steps=30", "train.eval_every=4", "train.patience=null"]
# run in a child process instead of `python -m attnkit`: the process kills itself the Nth time (argv[2]) it writes
# the file named argv[1], half way through the write; or, for a directory named argv[1], the Nth time it has put
# the old version aside, before the new one is renamed into its place
KILLED_WHILE_WRITING = """
import os, signal, sys
import safetensors.torch
from attnkit.apps.cli import main

name, when, calls = sys.argv[1], int(sys.argv[2]), [0]
save_file, replace = safetensors.torch.save_file, os.replace

def counted():
    calls[0] += 1
    return calls[0] == when

def half_written(tensors, filename, *args, **kwargs):
    save_file(tensors, filename, *args, **kwargs)
    if os.path.basename(filename).lstrip(".").startswith(name) and counted():
        with open(filename, "r+b") as file:
            file.truncate(os.path.getsize(filename) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

def put_aside(source, target):
    replace(source, target)
    if os.path.basename(target) == name and str(os.path.dirname(target)).endswith(".old") and counted():
        os.kill(os.getpid(), signal.SIGKILL)

safetensors.torch.save_file, os.replace = half_written, put_aside
sys.exit(main(sys.argv[3:]))
"""


@pytest.fixture(scope="module")
def arguments(tmp_path_factory) -> dict[str, list[str]]:
    """The `attnkit train` arguments, but --out, of a tiny classifier and a tiny masked-LM pretraining."""
    data = tmp_path_factory.mktemp("data")
    train = write_tsv(data / "train.tsv", ("label", "text"), sentiment_rows(200, 1))
    dev = write_tsv(data / "dev.tsv", ("label", "text"), sentiment_rows(40, 2))
    text = corpus(data / "text")
    return {
        "classify": ["train", "--task", "classify", "--train", str(train), "--dev", str(dev), "--device", "cpu"]
        + [f"--set={s}" for s in CLASSIFY],
        "pretrain": ["pretrain", "--text", text, "--arch", "encoder", "--device", "cpu"]
        + [f"--set={s}" for s in PRETRAIN],
    }


@pytest.fixture(scope="module")
def uninterrupted(arguments, tmp_path_factory):
    """`uninterrupted(task, processes)`: the --out of the run that nothing stops, and its time in seconds; each run
    once in the module, since the interrupted runs of every test must end as it does."""

    @functools.cache
    def run(task: str, processes: int = 1) -> tuple[Path, float]:
        out = tmp_path_factory.mktemp(f"whole-{task}-{processes}") / "run"
        started = time.perf_counter()
        whole = subprocess.run(
            attnkit(arguments[task], out, processes=processes), capture_output=True, text=True, env=one_thread()
        )
        assert whole.returncode == 0, whole.stderr[-2000:]
        return out, time.perf_counter() - started

    return run


def one_thread() -> dict[str, str]:
    """The environment of the runs: one thread each; read when a run starts, so that the suite's TMPDIR is in it."""
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def attnkit(args: list[str], out: Path, *extra: str, processes: int = 1) -> list[str]:
    """The command line of `attnkit ARGS --out OUT`, under torchrun with `processes` > 1."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    return [sys.executable, *(launcher if processes > 1 else []), "-m", "attnkit", *args, "--out", str(out), *extra]


def finish(args: list[str], out: Path, processes: int = 1) -> None:
    """--resume until the run ends (one call, since nothing kills it any more)."""
    command = attnkit(args, out, "--resume", processes=processes)
    result = subprocess.run(command, capture_output=True, text=True, env=one_thread(), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def weights(out: Path) -> dict[str, dict[str, torch.Tensor]]:
    """The best weights and the last ones."""
    files = {"best": out / "model.safetensors", "last": out / "trainer_state" / "model.safetensors"}
    return {kind: safetensors.torch.load_file(str(file)) for kind, file in files.items()}


def assert_identical(one: Path, two: Path) -> None:
    first, second = weights(one), weights(two)
    for kind in first:
        assert first[kind].keys() == second[kind].keys()
        assert all(torch.equal(first[kind][name], second[kind][name]) for name in first[kind]), kind


def two_at_a_time(trial: Callable[[int, float], None], moments: list[float]) -> None:
    """`trial(n, moment)` for each moment, two at once: the runs take one thread each, and the machine has two."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(trial, range(len(moments)), moments))  # raises what a trial raised


@pytest.mark.parametrize("task", ["classify", "pretrain"])
def test_killed_at_random_moments_and_resumed_ends_bit_identical(arguments, uninterrupted, tmp_path, task):
    args = arguments[task]
    whole, duration = uninterrupted(task)

    def trial(n: int, moment: float) -> None:
        out = tmp_path / f"killed{n}"
        process = subprocess.Popen(
            attnkit(args, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=one_thread()
        )
        time.sleep(moment)
        process.send_signal(signal.SIGKILL)
        process.wait()
        finish(args, out)
        assert_identical(whole, out)

    draw = random.Random(7)  # 6 moments between the start and the end of the uninterrupted run's time
    two_at_a_time(trial, [draw.uniform(0.1, 0.95) * duration for _ in range(6)])


def test_ctrl_c_at_random_moments_and_resumed_ends_bit_identical(arguments, uninterrupted, tmp_path):
    """Ctrl-C stops a run at the end of the step under way (its saved state a step boundary); --resume then ends
    where the uninterrupted run does, as after a kill."""
    args = arguments["classify"]
    whole, duration = uninterrupted("classify")

    def trial(n: int, moment: float) -> None:
        out = tmp_path / f"stopped{n}"
        process = subprocess.Popen(
            attnkit(args, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=one_thread()
        )
        time.sleep(moment)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=120)
        assert process.returncode in (0, 130), err[-2000:]  # 0: it had ended already
        assert err.decode().endswith("attnkit: interrupted\n") == (process.returncode == 130)
        finish(args, out)
        assert_identical(whole, out)

    draw = random.Random(11)
    two_at_a_time(trial, [draw.uniform(0.3, 0.9) * duration for _ in range(4)])


@pytest.mark.parametrize(
    ("file", "when"),
    [
        ("model.safetensors", 1),  # the first weights, while the run's directory is being made
        ("model.safetensors", 3),  # the best weights, at the first evaluation
        ("model.safetensors", 4),  # the trainer state's weights, at the first evaluation
        ("optimizer.safetensors", 3),  # the trainer state's optimizer, at the second evaluation
        ("trainer_state", 2),  # the second evaluation's state is complete, the first's put aside, none in place
    ],
)
def test_killed_while_writing_a_checkpoint_and_resumed_ends_bit_identical(
    arguments, uninterrupted, tmp_path, file, when
):
    args = arguments["classify"]
    whole, _ = uninterrupted("classify")
    out = tmp_path / "killed"
    command = [sys.executable, "-c", KILLED_WHILE_WRITING, file, str(when), *args, "--out", str(out)]
    killed = subprocess.run(command, capture_output=True, text=True, env=one_thread())
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    finish(args, out)
    assert_identical(whole, out)


def workers(launcher: int) -> list[int]:
    """The process ids of the children of process `launcher` (torchrun's workers)."""
    children = Path(f"/proc/{launcher}/task/{launcher}/children")
    return [int(pid) for pid in children.read_text().split()] if children.exists() else []


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="finds torchrun's workers in /proc")
@pytest.mark.parametrize("task", ["classify", "pretrain"])
def test_killed_under_torchrun_and_resumed_ends_bit_identical(arguments, uninterrupted, tmp_path, task):
    args = arguments[task]
    whole, duration = uninterrupted(task, processes=2)
    draw = random.Random(11)
    for trial, victim in enumerate(["the whole job", "one worker", "the whole job"]):
        out = tmp_path / f"killed{trial}"
        job = subprocess.Popen(
            attnkit(args, out, processes=2),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=one_thread(),
            start_new_session=True,  # its own process group: killing the job kills torchrun and its workers
        )
        time.sleep(draw.uniform(0.3, 0.95) * duration)
        if victim == "one worker":
            running = workers(job.pid)
            assert running or job.poll() is not None, "torchrun runs no workers in the middle of its run"
            for pid in draw.sample(running, min(1, len(running))):
                os.kill(pid, signal.SIGKILL)  # torchrun then stops the other one
        else:
            os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=120)
        finish(args, out, processes=2)
        assert_identical(whole, out)
