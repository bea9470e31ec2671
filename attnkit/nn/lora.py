"""LoRA (Hu et al., ICLR 2022): a pretrained linear layer y = x W^T + b stays as it is and learns a low-rank update,
y = x W^T + b + (alpha / rank) * x A^T B^T, with A (rank, in) and B (out, rank) the only weights that train. B starts
at zero, so an adapted model starts as the pretrained one; merged (W + (alpha / rank) B A) it is a plain model again,
as fast as the pretrained one. PEFT's LoraLayer computes the same (its lora_A, lora_B, scaling)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.nn.attention import MultiHeadAttention
from attnkit.nn.layers import FeedForward

# what train.lora.targets names: the modules whose linear layers take adapters
TARGETS = {"attention": MultiHeadAttention, "feed_forward": FeedForward}


class LoRALinear(nn.Module):
    """A linear layer's weight and bias (the same tensors, frozen by the caller) with a LoRA update beside them."""

    def __init__(self, linear: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.weight, self.bias = linear.weight, linear.bias
        device, dtype = linear.weight.device, linear.weight.dtype
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # nn.Linear's and PEFT's start for A
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout) if dropout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        update = F.linear(F.linear(self.dropout(x), self.lora_a), self.lora_b)
        return F.linear(x, self.weight, self.bias) + self.scaling * update

    def delta(self) -> Tensor:
        """The update to the weight, (alpha / rank) B A, shaped as it."""
        return self.scaling * (self.lora_b @ self.lora_a)

    def merged(self) -> nn.Linear:
        """A plain linear layer whose weight holds the update."""
        linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None, device="meta")
        linear.weight = nn.Parameter((self.weight + self.delta()).detach(), requires_grad=False)
        linear.bias = self.bias
        return linear


def add_lora(model: nn.Module, rank: int, alpha: float, dropout: float, targets: list[str]) -> list[str]:
    """Replace each linear layer of the `targets` modules (attention, feed_forward) of `model` by a LoRALinear of
    the same weights; the names of the adapters' parameters."""
    kinds = tuple(TARGETS[target] for target in targets)
    for module in [m for m in model.modules() if isinstance(m, kinds)]:
        for name, child in list(module.named_children()):
            if type(child) is nn.Linear:
                setattr(module, name, LoRALinear(child, rank, alpha, dropout))
    return adapter_names(model)


def adapter_names(model: nn.Module) -> list[str]:
    """The names of the LoRA parameters in `model`."""
    return [name for name, _ in model.named_parameters() if name.rsplit(".", 1)[-1] in ("lora_a", "lora_b")]


def adapted_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The adapted linear layers of `model`, by name."""
    return {name: module for name, module in model.named_modules() if isinstance(module, LoRALinear)}


def store_frozen_weights(model: nn.Module, dtype: torch.dtype) -> None:
    """The frozen weights of `model`'s adapted layers kept in `dtype`: under an autocast to `dtype`, which casts
    them so at every product, a run computes the same and holds them in half the memory, once (the casts' copies,
    kept for the backward pass, were a second half)."""
    for layer in adapted_layers(model).values():
        layer.weight.data = layer.weight.data.to(dtype)


@torch.no_grad()
def merge_lora(model: nn.Module) -> nn.Module:
    """`model` (in place) with each LoRALinear a plain linear layer holding its update: the same outputs, no
    adapter left to compute."""
    for name, layer in adapted_layers(model).items():
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, layer.merged())
    return model
