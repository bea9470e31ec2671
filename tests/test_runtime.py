"""Devices and processes: what `auto` chooses, what a wrong name says, and a checkpoint placed where it is asked."""

import ctypes
import json
import os
import subprocess
import sys

import pytest
import safetensors.torch
import torch

from attnkit import runtime
from attnkit.apps.cli import main
from attnkit.errors import AttnkitError
from attnkit.inference.checkpoint import save_weights
from attnkit.inference.pipeline import Pipeline
from attnkit.training.loop import train
from tests.conftest import run_config


@pytest.fixture
def no_accelerator(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_auto_is_the_cpu_without_an_accelerator(no_accelerator):
    assert runtime.resolve_device("auto") == torch.device("cpu")


def test_auto_prefers_cuda_then_mps(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert runtime.resolve_device("auto") == torch.device("cuda")
    assert runtime.resolve_device("cuda:1") == torch.device("cuda", 1)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.resolve_device("auto") == torch.device("mps")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("gpu", "expected one of auto, cpu, cuda, cuda:N, mps"),
        ("cuda", "torch sees no CUDA GPU here"),
        ("mps", "MPS is not available here"),
        ("xla", "expected one of"),
    ],
)
def test_a_device_that_is_not_there_is_one_clear_error(no_accelerator, name, message):
    with pytest.raises(AttnkitError, match=message):
        runtime.resolve_device(name)


def test_a_missing_gpu_index_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(AttnkitError, match=r"there are 1 CUDA devices"):
        runtime.resolve_device("cuda:1")


def test_each_process_takes_every_world_th_example():
    batch = [7, 3, 9, 1, 4]
    shares = [runtime.Processes(rank, 2).share(batch) for rank in range(2)]
    assert shares == [[7, 9, 4], [3, 1]]
    assert runtime.Processes(0, 1).share(batch) == batch


def test_a_checkpoint_loads_onto_the_device_asked_for(sentiment_files, tmp_path, monkeypatch):
    """Weights are stored without a device (safetensors) and placed on load: a model trained here loads on any
    device. The meta device stands in for a GPU this machine lacks."""
    train(run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=2", "train.device=cpu"))
    assert {p.device.type for p in Pipeline.load(tmp_path / "out", device="cpu").model.parameters()} == {"cpu"}
    monkeypatch.setattr("attnkit.inference.pipeline.resolve_device", lambda name: torch.device("meta"))
    assert {p.device.type for p in Pipeline.load(tmp_path / "out", device="cuda").model.parameters()} == {"meta"}


@pytest.mark.parametrize(("precision", "dtype"), [("bfloat16", torch.bfloat16), ("float16", torch.float16)])
def test_autocast_computes_matrix_products_in_the_precision_set(precision, dtype):
    with runtime.autocast(torch.device("cpu"), precision):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == dtype
    with runtime.autocast(torch.device("cpu"), "float32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32


def test_float16_training_runs_with_a_gradient_scaler(sentiment_files, tmp_path):
    summary = train(
        run_config(sentiment_files, tmp_path / "out", "classify", "train.precision=float16", "train.epochs=8")
    )
    assert summary["dev"]["accuracy"] >= 0.9  # the scaler keeps float16 gradients from vanishing


def test_int8_replaces_every_linear_layer_and_predicts_about_the_same(sentiment_files, tmp_path, capsys):
    train(run_config(sentiment_files, tmp_path / "out", "classify", "train.epochs=8", "train.device=cpu"))
    exact = Pipeline.load(tmp_path / "out", device="cpu")
    fast = Pipeline.load(tmp_path / "out", int8=True)  # auto: the CPU, where int8 runs
    assert not any(type(m) is torch.nn.Linear for m in fast.model.modules())
    assert any(isinstance(m, torch.ao.nn.quantized.dynamic.Linear) for m in fast.model.modules())
    texts = [line.split("\t", 1)[1] for line in sentiment_files["dev"].read_text().splitlines()[1:]]
    ours, theirs = exact.predict(texts), fast.predict(texts)
    assert sum(a["label"] == b["label"] for a, b in zip(ours, theirs)) >= 0.95 * len(texts)
    assert max(abs(a["probability"] - b["probability"]) for a, b in zip(ours, theirs)) < 0.1
    assert main(["evaluate", str(tmp_path / "out"), "--data", str(sentiment_files["dev"]), "--int8", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] >= 0.9


def test_int8_is_for_the_cpu(sentiment_files, tmp_path):
    train(run_config(sentiment_files, tmp_path / "out", "classify", "train.max_steps=2", "train.device=cpu"))
    model = Pipeline.load(tmp_path / "out", device="cpu").model.to("meta")  # stands in for a GPU
    with pytest.raises(AttnkitError, match="int8 runs on the CPU: add --device cpu"):
        runtime.quantize_int8(model)


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
def test_packed_linear_layers_multiply_as_the_plain_ones_and_keep_their_parameters(tmp_path):
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(50, 24)
    model = torch.nn.Sequential(torch.nn.Linear(16, 24), torch.nn.Linear(24, 50, bias=False)).eval()
    model[1].weight = embedding.weight  # tied, as a decoder's output layer is to its embeddings
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    plain = {rows: model(torch.randn(rows, 16, generator=torch.Generator().manual_seed(rows))) for rows in (1, 3)}
    runtime.pack_linear_weights(model)
    assert all(type(layer) is runtime.PackedLinear for layer in model)
    assert model[1].weight is embedding.weight
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    with torch.inference_mode():
        for rows, expected in plain.items():  # one row: the column-major weight's product; three: oneDNN's
            x = torch.randn(rows, 16, generator=torch.Generator().manual_seed(rows))
            torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)
        assert model[0].packed is not None
        assert model[1].weight is embedding.weight and not embedding.weight.is_contiguous()  # column-major now
        assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
        model[0].weight.copy_(torch.zeros_like(model[0].weight))  # a changed weight is packed again
        assert torch.equal(model[0](torch.ones(3, 16)), model[0].bias.expand(3, -1))
    whole = torch.nn.ModuleDict({"embedding": embedding, "model": model})
    save_weights(whole, tmp_path)  # a tied weight laid out column-major saves as any, once
    saved, state = safetensors.torch.load_file(str(tmp_path / "model.safetensors")), whole.state_dict()
    assert all(torch.equal(state[name], saved[name]) for name in saved) and len(saved) == len(state) - 1
    model.train()(torch.randn(2, 16)).sum().backward()  # the relaid weights train as any
    assert embedding.weight.grad is not None


@pytest.mark.skipif(not torch.backends.mkldnn.is_available(), reason="PyTorch built without oneDNN")
@pytest.mark.parametrize("activation", sorted(runtime.FUSED_ACTIVATIONS))
def test_an_activation_fused_into_the_packed_product_gives_the_same_bits(activation):
    torch.manual_seed(0)
    layer = torch.nn.Linear(32, 8).eval()  # narrows its input: one row multiplies the row-major weight
    apply = runtime.FUSED_ACTIVATIONS[activation]
    inputs = {rows: torch.randn(rows, 32) for rows in (1, 5)}
    with torch.inference_mode():
        plain = {rows: apply(layer(x)) for rows, x in inputs.items()}
        packed = runtime.PackedLinear.of(layer)
        for rows, x in inputs.items():
            assert torch.equal(packed(x, activation), apply(packed(x)))  # oneDNN's product rounds as it will
            torch.testing.assert_close(packed(x, activation), plain[rows], rtol=1e-5, atol=1e-6)
        assert packed.weight.is_contiguous() and packed.packed is not None
    assert torch.equal(packed.train()(inputs[5], activation), plain[5])  # training: the plain product


@pytest.mark.parametrize(
    ("environment", "expected"),
    [({}, "10000"), ({"GOMP_SPINCOUNT": "5"}, "5"), ({"OMP_WAIT_POLICY": "PASSIVE"}, None)],
)
def test_openmp_waiting_is_set_before_torch_loads(environment, expected):
    """Importing attnkit shortens OpenMP's spinning (a busy machine's cure) unless the user chose, and does it before
    PyTorch (which libgomp reads it with) is imported."""
    code = "import os, sys, attnkit; print(os.environ.get('GOMP_SPINCOUNT'), 'torch' in sys.modules)"
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    shown = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **environment}, capture_output=True, text=True, check=True
    ).stdout.split()
    assert shown == [str(expected), "False"]


@pytest.mark.parametrize(
    ("others", "window", "environment", "threads"),
    [(1.8, 10, {}, 1), (0.3, 10, {}, 2), (1.8, 0.5, {}, 2), (1.8, 10, {"OMP_NUM_THREADS": "2"}, 2), (1.8, 100, {}, 1)],
)
def test_a_run_leaves_the_cores_other_processes_keep_busy(monkeypatch, others, window, environment, threads):
    """Other processes busy on 1.8 of 2 cores since attnkit loaded: a CPU run takes one thread, and says so; with
    0.3 busy, a window under a second, or the user's OMP_NUM_THREADS, it keeps two. After a long window (a
    notebook's) it looks at the cores for half a second instead: here the other processes are busy only then."""
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("Linux only")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    # (now, busy CPU seconds of both cores, own CPU seconds): this process busy on both cores throughout
    readings = [(100.0, 50.0, 3.0), (100 + window, 50 + (others + 2) * window, 3 + 2 * window)]
    if window > 60:  # idle until the run starts, then the half-second look
        readings[1] = (100 + window, 50 + 2 * window, 3 + 2 * window)
        readings.append((100.5 + window, readings[1][1] + (others + 2) * 0.5, readings[1][2] + 2 * 0.5))
    monkeypatch.setattr(runtime, "_SINCE_IMPORT", readings[0])
    monkeypatch.setattr(runtime, "_cpu_seconds", iter(readings[1:]).__next__)
    monkeypatch.setattr(runtime.time, "sleep", lambda seconds: None)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        said = runtime.share_busy_cores(torch.device("cpu"))
        assert torch.get_num_threads() == threads
        if threads == 1:
            assert said == (
                "other processes keep 1.8 of this machine's cores busy: 1 thread instead of 2 (OMP_NUM_THREADS chooses)"
            )
            assert runtime.share_busy_cores(torch.device("cpu")) is None  # once per process
        else:
            assert said is None
    finally:
        torch.set_num_threads(before)


HEAP_FACTS = """
import ctypes, torch
from attnkit import runtime
fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")
Facts = type("Facts", (ctypes.Structure,), dict(_fields_=[(name, ctypes.c_size_t) for name in fields]))
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Facts
def mib():  # (mapped blocks, heap, heap in use): glibc's own account
    facts = mallinfo2()
    return [facts.hblkhd >> 20, facts.arena >> 20, facts.uordblks >> 20]
if {reuse}:
    runtime.ready_for_training(torch.device("cpu"))
before = mib()
tensor = torch.ones(64 << 20, dtype=torch.uint8)
held = mib()
del tensor
print([before, held, mib()])
"""


@pytest.mark.parametrize("reuse", [False, True])
def test_a_cpu_training_run_keeps_large_tensors_memory_on_the_heap(reuse):
    """glibc maps a 64 MiB block afresh and unmaps it at free; in a CPU training run it comes from the heap and
    stays there for the next step's tensors (a fresh process: the suite's own trainings set this one's)."""
    if runtime._MALLOPT is None or not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("glibc 2.33 or later only")
    code = HEAP_FACTS.format(reuse=reuse)
    (mapped, _, used), (held_mapped, held_heap, held_used), (freed_mapped, freed_heap, _) = json.loads(
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    )
    if reuse:
        assert (held_mapped, freed_mapped) == (mapped, mapped)
        assert held_used >= used + 64 and freed_heap == held_heap  # from the heap, and kept there
    else:
        assert held_mapped >= mapped + 64 and freed_mapped == mapped
