"""Training under torchrun (2 CPU processes, gloo) equals training in one process: the same losses and weights,
one writer, exact resume, and a mistake in the input stops every process with exit code 2."""

import functools
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import safetensors.torch
import torch

from tests.conftest import PRETRAIN_SETTINGS, TINY, corpus, sentiment_rows, write_tsv

TOLERANCE = 1e-4  # relative, on each step's loss and on the final weights (float32 sums in another order)
SETTINGS = [*TINY, "train.max_steps=20", "train.log_every=1", "train.eval_every=5", "train.patience=null"]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    data = tmp_path_factory.mktemp("data")
    return {
        "train": write_tsv(data / "train.tsv", ("label", "text"), sentiment_rows(200, 1)),
        "dev": write_tsv(data / "dev.tsv", ("label", "text"), sentiment_rows(41, 2)),  # odd: uneven shares
    }


@pytest.fixture(scope="module")
def in_one_process(files, tmp_path_factory):
    """`in_one_process(*settings)`: the --out of `attnkit train` in one process with `settings`, and what it said;
    each run once in the module, since the tests of both strategies compare with the same one."""

    @functools.cache
    def run(*settings: str) -> tuple[Path, str]:
        out = tmp_path_factory.mktemp("one") / "run"
        result = attnkit(1, files, out, *settings)
        assert result.returncode == 0, result.stderr[-3000:]
        return out, result.stderr

    return run


def attnkit(
    processes: int, files: dict, out: Path, *settings: str, resume: bool = False
) -> subprocess.CompletedProcess:
    """`attnkit train` in one process, or under torchrun in `processes` processes of one thread each."""
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)]
    command = [sys.executable, *(launcher if processes > 1 else []), "-m", "attnkit", "train", "--task", "classify"]
    command += ["--train", str(files["train"]), "--dev", str(files["dev"]), "--out", str(out), "--device", "cpu"]
    command += [f"--set={s}" for s in settings] + (["--resume"] if resume else [])
    environment = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, timeout=300, env=environment)


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]


def losses(out: Path) -> list[float]:
    return [r["loss"] for r in records(out) if "loss" in r]


def last_weights(out: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(out / "trainer_state" / "model.safetensors"))


def assert_same_training(one: Path, two: Path) -> None:
    assert losses(one) == pytest.approx(losses(two), rel=TOLERANCE) and len(losses(one)) == 20
    single, double = last_weights(one), last_weights(two)
    for name, tensor in single.items():
        assert torch.allclose(tensor, double[name], rtol=TOLERANCE, atol=TOLERANCE), name


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_train_as_one(files, in_one_process, tmp_path, strategy):
    one, said = in_one_process(*SETTINGS)
    two = attnkit(2, files, tmp_path / "two", *SETTINGS, f"train.strategy={strategy}")
    assert two.returncode == 0, two.stderr[-3000:]
    assert f"2 processes ({strategy}) on cpu" in two.stderr and " processes (" not in said
    assert_same_training(one, tmp_path / "two")
    dev_one, dev_two = ([r["dev"]["accuracy"] for r in records(out) if "dev" in r] for out in (one, tmp_path / "two"))
    assert dev_two == dev_one and len(dev_two) == 4  # every dev example scored once, split between the processes
    # one writer: one record per step in the log, one event file, no temporary leftovers
    assert [r["step"] for r in records(tmp_path / "two") if "loss" in r] == list(range(1, 21))
    assert len(list((tmp_path / "two" / "tensorboard").iterdir())) == 1
    assert not [p for p in (tmp_path / "two").rglob("*") if p.name.startswith(".")]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_lora_trains_under_torchrun_as_in_one_process(files, in_one_process, tmp_path, strategy):
    base, _ = in_one_process(*TINY, "train.max_steps=5")
    fine_tuning = [s for s in SETTINGS if not s.startswith(("model.", "tokenizer."))]  # the base's architecture
    lora = [*fine_tuning, "model.dropout=0.0", f"train.init={base}", "train.lora.rank=4", "train.lr=1e-2"]
    one, _ = in_one_process(*lora)
    two = attnkit(2, files, tmp_path / "two", *lora, f"train.strategy={strategy}")
    assert two.returncode == 0, two.stderr[-3000:]
    assert_same_training(one, tmp_path / "two")
    saved = last_weights(tmp_path / "two")  # the adapters and the head alone, gathered from every process
    assert saved and all(name.endswith((".lora_a", ".lora_b")) or name.startswith("head.") for name in saved)


def test_resume_under_torchrun_continues_exactly(files, tmp_path):
    settings = [*SETTINGS, "model.dropout=0.1", "train.schedule=constant"]  # each process's dropout masks resume
    whole = attnkit(2, files, tmp_path / "whole", *settings)
    first = attnkit(2, files, tmp_path / "split", *settings, "train.max_steps=10")
    second = attnkit(2, files, tmp_path / "split", *settings, resume=True)
    assert whole.returncode == first.returncode == second.returncode == 0, second.stderr[-3000:]
    assert "resuming" in second.stderr and "at step 10 of 20" in second.stderr
    assert losses(tmp_path / "split") == losses(tmp_path / "whole")
    split, uninterrupted = last_weights(tmp_path / "split"), last_weights(tmp_path / "whole")
    assert all(torch.equal(split[name], uninterrupted[name]) for name in uninterrupted)


def test_a_bad_file_stops_every_process_with_exit_code_2(files, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("label\ttext\ngood\tfine\nbad line without a tab\n")
    started = time.monotonic()
    result = attnkit(2, {**files, "train": bad}, tmp_path / "out", *SETTINGS)
    assert time.monotonic() - started < 60
    assert result.returncode != 0 and not (tmp_path / "out").exists()
    assert f"attnkit: error: {bad}:3: expected 2 tab-separated fields" in result.stderr
    # torchrun's report: each process exited with code 2, or was stopped by torchrun (SIGTERM, -15) when the
    # other one's exit came first
    codes = dict(re.findall(r"rank\s*: (\d) \(local_rank.*\n\s*exitcode\s*: (-?\d+)", result.stderr))
    assert set(codes) == {"0", "1"} and "2" in codes.values() and set(codes.values()) <= {"2", "-15"}


def test_pretraining_runs_under_torchrun(tmp_path):
    corpus(tmp_path / "text")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "attnkit"]
    command += ["pretrain", "--text", str(tmp_path / "text"), "--arch", "encoder", "--out", str(tmp_path / "lm")]
    command += ["--max-steps", "6", "--device", "cpu", *(f"--set={s}" for s in PRETRAIN_SETTINGS)]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("trained 6 steps") == 1 and "perplexity" in result.stdout  # one summary, not two
    assert sorted(p.name for p in (tmp_path / "lm.corpus").iterdir()) == [
        "dev.u16",
        "manifest.json",
        "tokenizer.json",
        "train.u16",
    ]
