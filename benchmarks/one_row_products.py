"""One-row matrix products (a decoding step at batch 1): how fast one core streams a weight through the product in
each layout attnkit could keep it in. SmolLM2-135M's shapes (30 layers of Q/K/V 960 x 576, output 576 x 576,
gate/up 3,072 x 576, down 576 x 1,536; the 49,152 x 576 output projection), each layer's weights distinct, so that
none stays in the cache between products as none does in a real model.

- row-major: the weight as nn.Linear holds it, through PyTorch's default product (F.linear)
- oneDNN packed: the weight packed once for oneDNN (torch.ops.mkldnn), as PackedLinear multiplies 2+ rows
- column-major: the same weight laid out column by column, through F.linear: what PackedLinear multiplies one row with

    python benchmarks/one_row_products.py [--repeats 5]

Prints GB/s of weights read per layout (the median of the repeats), for the layers, each layer shape (out x in)
and the output projection.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

LAYERS = 30
LAYER_SHAPES = [(960, 576), (576, 576), (3072, 576), (576, 1536)]
OUTPUT_SHAPE = (49152, 576)


def layouts(weight: torch.Tensor) -> dict[str, tuple[torch.Tensor, object]]:
    """layout name -> (the weight so laid out, its one-row product)"""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, 64)
    return {
        "row-major": (weight, F.linear),
        "oneDNN packed": (packed, lambda x, w: torch.ops.mkldnn._linear_pointwise(x, w, None, "none", [], "")),
        "column-major": (weight.t().contiguous().t(), F.linear),
    }


def gb_per_s(shapes: list[tuple[int, int]], copies: int, repeats: int) -> dict[str, float]:
    weights = [torch.randn(*shape) for shape in shapes for _ in range(copies)]
    laid = [layouts(w) for w in weights]
    size = sum(w.numel() * 4 for w in weights) / 1e9
    inputs = [torch.randn(1, w.shape[1]) for w in weights]
    speeds = {}
    for name in laid[0]:
        times = []
        for _ in range(repeats + 1):  # the first warms up
            began = time.perf_counter()
            for x, weight in zip(inputs, laid):
                tensor, product = weight[name]
                product(x, tensor)
            times.append(time.perf_counter() - began)
        speeds[name] = size / statistics.median(times[1:])
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with torch.inference_mode():
        rows = {
            f"{LAYERS} layers' weights": gb_per_s(LAYER_SHAPES, LAYERS, args.repeats),
            **{f"{LAYERS} x {out} x {inp}": gb_per_s([(out, inp)], LAYERS, args.repeats) for out, inp in LAYER_SHAPES},
            "output projection (113 MB)": gb_per_s([OUTPUT_SHAPE], 1, args.repeats),
        }
    names = list(next(iter(rows.values())))
    print(f"{'GB/s, one thread, one row':<30}" + "".join(f"{name:>16}" for name in names))
    for row, speeds in rows.items():
        print(f"{row:<30}" + "".join(f"{speeds[name]:>16.1f}" for name in names))


if __name__ == "__main__":
    main()
