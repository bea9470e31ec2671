"""LoRA layers: an adapted layer starts as the layer it adapts, computes W x + b + (alpha / rank) B A x, merges into a
plain layer with the same outputs, and keeps its frozen weight in the autocast type with the same outputs."""

import torch
from torch import nn

from attnkit.config import ModelConfig
from attnkit.nn import Encoder
from attnkit.nn.lora import LoRALinear, adapted_layers, adapter_names, add_lora, merge_lora, store_frozen_weights


def test_an_adapted_layer_starts_as_its_layer_and_adds_the_scaled_low_rank_update():
    torch.manual_seed(0)
    linear = nn.Linear(12, 7)
    adapted = LoRALinear(linear, rank=3, alpha=6.0, dropout=0.0)
    x = torch.randn(5, 12)
    assert adapted.weight is linear.weight and torch.equal(adapted(x), linear(x))  # B starts at zero
    with torch.no_grad():
        adapted.lora_b.normal_()
    expected = linear(x) + 2.0 * (x @ adapted.lora_a.T @ adapted.lora_b.T)
    torch.testing.assert_close(adapted(x), expected)
    torch.testing.assert_close(adapted.merged()(x), expected, rtol=0, atol=1e-5)


def test_a_model_takes_adapters_on_its_attention_and_feed_forward_and_merges_them_away():
    torch.manual_seed(0)
    model = Encoder(ModelConfig(vocab_size=50, dim=16, num_heads=2, ff_dim=32, num_layers=2)).eval()
    ids, mask = torch.randint(4, 50, (2, 7)), torch.ones(2, 7, dtype=torch.bool)
    before = model(ids, mask)
    names = add_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["attention", "feed_forward"])
    assert len(adapted_layers(model)) == 2 * 4 and names == adapter_names(model) and len(names) == 16
    torch.testing.assert_close(model(ids, mask), before)  # every B is zero
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.endswith("lora_b"):
                parameter.normal_(std=0.5)
    adapted = model(ids, mask)
    assert (adapted - before).abs().max() > 1e-2
    merge_lora(model)
    assert not adapted_layers(model) and not adapter_names(model)
    assert (model(ids, mask) - adapted).abs().max() <= 1e-5


def test_attention_alone_adapts_the_attention_alone():
    model = Encoder(ModelConfig(vocab_size=50, dim=16, num_heads=2, ff_dim=32, num_layers=1))
    add_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["attention"])
    assert sorted(adapted_layers(model)) == ["layers.0.self_attn.out_proj", "layers.0.self_attn.qkv_proj"]


def test_frozen_weights_kept_in_bfloat16_give_the_same_outputs_under_autocast():
    torch.manual_seed(0)
    model = Encoder(ModelConfig(vocab_size=50, dim=16, num_heads=2, ff_dim=32, num_layers=2)).eval()
    add_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["attention", "feed_forward"])
    ids, mask = torch.randint(4, 50, (2, 7)), torch.ones(2, 7, dtype=torch.bool)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        before = model(ids, mask)
        store_frozen_weights(model, torch.bfloat16)
        after = model(ids, mask)
    assert all(layer.weight.dtype == torch.bfloat16 for layer in adapted_layers(model).values())
    assert torch.equal(before, after)
