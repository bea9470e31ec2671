"""What every benchmark prints about where it ran, and the machine's measured arithmetic peak."""

from __future__ import annotations

import functools
import platform
import time

import torch

PEAK_SHAPE = (1024, 1024, 1024)  # rows, inner, columns: large enough for every library's best kernel


def machine() -> dict:
    """CPU, threads, and the versions of torch (and transformers, where installed)."""
    info = {
        "cpu": _cpu_name(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def peak() -> dict[str, dict[str, float]]:
    """GFLOP/s of a 1024 x 1024 x 1024 product, per dtype, by PyTorch's default product (MKL for float32 on x86) and
    by oneDNN with its weight packed once; "peak" is the better of the two: the machine's measured limit that the
    benchmarks compare their products with."""
    rows, inner, columns = PEAK_SHAPE
    flops = 2 * rows * inner * columns
    result = {}
    for dtype in (torch.float32, torch.bfloat16):
        x, w = torch.randn(rows, inner, dtype=dtype), torch.randn(columns, inner, dtype=dtype)
        speeds = {"default": _gflops(torch.nn.functional.linear, (x, w), flops)}
        if torch.backends.mkldnn.is_available():
            packed = torch.ops.mkldnn._reorder_linear_weight(w, rows) if dtype == torch.float32 else w
            onednn = torch.ops.mkldnn._linear_pointwise
            speeds["onednn"] = _gflops(onednn, (x, packed, None, "none", [], ""), flops)
        speeds["peak"] = max(speeds.values())
        result[str(dtype).removeprefix("torch.")] = {k: round(v, 1) for k, v in speeds.items()}
    return result


def _gflops(product, arguments: tuple, flops: int, seconds: float = 1.0) -> float:
    """The best of several timed rounds (a busy machine slows some; the best is closest to what the cores do)."""
    for _ in range(3):
        product(*arguments)
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        product(*arguments)
        best = max(best, flops / (time.perf_counter() - started) / 1e9)
    return best


if __name__ == "__main__":
    import json

    print(json.dumps({**machine(), "peak_gflops": peak()}))
