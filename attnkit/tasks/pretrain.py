"""Pretraining on raw text, by architecture: masked LM for encoders (BERT: 15% of tokens chosen, 80% of those
masked, 10% replaced at random, 10% kept), span infilling for encoder-decoders (BART: 30% of the tokens in spans
of Poisson(3) length, each replaced by one <mask>, the decoder restores the text), next-token prediction for
decoders. task.mask_fraction changes the 15% or 30%.

Examples are fixed-length blocks of a token file that attnkit.pretrain wrote once and reads memory-mapped,
so that memory does not grow with the corpus. The dev metric is held-out perplexity."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig
from attnkit.data.batching import pad
from attnkit.errors import AttnkitError, require_finite
from attnkit.nn import Decoder, Encoder, EncoderDecoder
from attnkit.tasks.base import IGNORE_INDEX, Batch, Task
from attnkit.tokenization import Tokenizer


class Blocks(Sequence):
    """Consecutive blocks of `length` tokens from a memory-mapped token file (the last one may be shorter)."""

    def __init__(self, ids: np.ndarray, length: int, indices: range | None = None) -> None:
        self.ids, self.length = ids, length
        # every full block, and the rest if it holds at least two tokens (one prediction for a causal LM)
        count = len(ids) // length + (len(ids) % length >= 2)
        self.indices = indices if indices is not None else range(count)

    @classmethod
    def open(cls, path: str | os.PathLike, length: int) -> Blocks:
        dtype = np.uint32 if str(path).endswith(".u32") else np.uint16
        try:
            ids = np.memmap(path, dtype=dtype, mode="r")
        except (OSError, ValueError) as error:
            raise AttnkitError(f"{path}: unreadable token file ({error})") from None
        if len(ids) < 2:
            raise AttnkitError(f"{path}: fewer than two tokens")
        return cls(ids, length)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return Blocks(self.ids, self.length, self.indices[i])
        index = self.indices[i]
        start = index * self.length
        return {"ids": self.ids[start : start + self.length].astype(np.int64), "index": index}


class MaskedLM(nn.Module):
    """An encoder with BERT's prediction head: dense, GELU, norm, then the embedding matrix (tied) plus a bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.transform = nn.Linear(config.dim, config.dim)
        self.norm = nn.LayerNorm(config.dim, eps=config.norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, ids: Tensor, mask: Tensor, chosen: Tensor | None = None) -> Tensor:
        # ids, mask: (batch, time) -> hidden states (batch, time, dim); with `chosen` (batch, time), the scores
        # (chosen positions, vocab) at those positions (inside forward, so DistributedDataParallel sees them)
        hidden = self.encoder(ids, mask)
        return hidden if chosen is None else self.logits(hidden[chosen])

    def logits(self, hidden: Tensor) -> Tensor:
        # hidden: (..., dim) -> (..., vocab)
        return F.linear(self.norm(F.gelu(self.transform(hidden))), self.encoder.embedding.weight, self.bias)


def mask_tokens(
    ids: Tensor, real: Tensor, tokenizer: Tokenizer, fraction: float, generator: torch.Generator | None
) -> tuple[Tensor, Tensor]:
    """BERT's masking: (inputs, labels); labels hold the original token where one was chosen, else IGNORE_INDEX."""
    if tokenizer.mask_id is None:
        raise AttnkitError("tokenizer: no mask token (<mask> or [MASK]) for masked-LM pretraining")
    # drawn on the CPU (a generator belongs to one device) whatever device the batch is on
    chosen = (torch.rand(ids.shape, generator=generator).to(ids.device) < fraction) & real
    chosen &= ~torch.isin(ids, torch.tensor(sorted(tokenizer.special_ids), device=ids.device))
    labels = ids.masked_fill(~chosen, IGNORE_INDEX)
    action = torch.rand(ids.shape, generator=generator).to(ids.device)
    inputs = ids.masked_fill(chosen & (action < 0.8), tokenizer.mask_id)
    replace = chosen & (action >= 0.8) & (action < 0.9)
    random_tokens = torch.randint(tokenizer.vocab_size, ids.shape, generator=generator).to(ids.device)
    return torch.where(replace, random_tokens, inputs), labels


def infill_spans(
    ids: list[int], mask_id: int, fraction: float, mean_span: float, generator: torch.Generator | None
) -> list[int]:
    """BART's text infilling: spans with Poisson(mean_span) lengths (at least 1) cover about `fraction` of the
    tokens, none touching another; each span becomes one `mask_id`."""
    n = len(ids)
    budget = round(fraction * n)
    masked = np.zeros(n + 2, dtype=bool)  # one slot of margin on each side
    covered, attempts = 0, 0
    while covered < budget and attempts < 10 * n:
        attempts += 1
        length = max(1, int(torch.poisson(torch.tensor(float(mean_span)), generator=generator)))
        length = min(length, budget - covered)
        start = int(torch.randint(0, n - length + 1, (1,), generator=generator))
        if masked[start : start + length + 2].any():  # overlaps or touches a span already there
            continue
        masked[start + 1 : start + length + 1] = True
        covered += length
    corrupted = []
    for i, token in enumerate(ids):
        if not masked[i + 1]:
            corrupted.append(token)
        elif not masked[i]:
            corrupted.append(mask_id)
    return corrupted


class PretrainTask(Task):
    name = "pretrain"
    main_metric = "perplexity"
    lower_is_better = frozenset({"perplexity", "loss"})
    mean_span = 3.0  # span infilling

    def _fraction(self, default: float) -> float:
        """Share of tokens corrupted: task.mask_fraction if set, else the objective's default."""
        return default if self.config.mask_fraction is None else self.config.mask_fraction

    @staticmethod
    def read(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Blocks:
        return Blocks.open(path, data.max_length)

    def inputs(self, texts: list[str]) -> list:
        raise AttnkitError("a pretrained model predicts nothing itself; fine-tune it: attnkit train ... --init PATH")

    def encode(self, examples: Blocks, training: bool) -> Blocks:
        """The blocks are their own items: token ids already."""
        return examples

    def sizes(self, items: Blocks) -> list[int]:
        return [items.length] * len(items)

    def size(self, item: dict) -> int:
        return len(item["ids"])

    def collate(self, items: list[dict]) -> Batch:
        ids, mask = pad([item["ids"].tolist() for item in items], self.tokenizer.pad_id)
        return {"ids": ids, "mask": mask, "index": torch.tensor([item["index"] for item in items])}

    def build_model(self) -> nn.Module:
        config = self.model_config
        if config.arch == "encoder":
            return MaskedLM(config)
        return EncoderDecoder(config) if config.arch == "encoder-decoder" else Decoder(config)

    def _scores(self, model: nn.Module, batch: Batch, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        """Flat logits (n, vocab), labels (n,) and the batch row (n,) of each prediction the objective makes (only
        real targets: no padding, no ignored labels)."""
        ids, mask, arch = batch["ids"], batch["mask"], self.model_config.arch  # model may be wrapped (DDP, FSDP)
        if arch == "encoder":
            inputs, labels = mask_tokens(ids, mask, self.tokenizer, self._fraction(0.15), generator)  # BERT's rate
            chosen = labels != IGNORE_INDEX
            return model(inputs, mask, chosen), labels[chosen], chosen.nonzero()[:, 0]
        if arch == "encoder-decoder":
            return self._infilling_scores(model, ids, mask, generator)
        chosen = mask[:, 1:]  # positions with a next token to predict: padding is not scored
        return model(ids[:, :-1], mask[:, :-1], chosen=chosen), ids[:, 1:][chosen], chosen.nonzero()[:, 0]

    def _infilling_scores(
        self, model: nn.Module, ids: Tensor, mask: Tensor, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor, Tensor]:
        from attnkit.tasks.seq2seq import decoder_start

        if self.tokenizer.mask_id is None:
            raise AttnkitError("tokenizer: no mask token (<mask> or [MASK]) for span infilling")
        rows = [row[m].tolist() for row, m in zip(ids, mask)]
        eos, start = self.tokenizer.eos_id, decoder_start(self.model_config, self.tokenizer)
        fraction = self._fraction(0.3)  # BART's rate
        sources = [infill_spans(r, self.tokenizer.mask_id, fraction, self.mean_span, generator) + [eos] for r in rows]
        source, source_mask = (t.to(ids.device) for t in pad(sources, self.tokenizer.pad_id))
        target, target_mask = (t.to(ids.device) for t in pad([[start, *r, eos] for r in rows], self.tokenizer.pad_id))
        chosen = target_mask[:, 1:]
        logits = model(source, target[:, :-1], source_mask, target_mask[:, :-1], chosen)
        return logits, target[:, 1:][chosen], chosen.nonzero()[:, 0]

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        logits, labels, _ = self._scores(model, batch, None)  # training draws from the global (seeded) generator
        return F.cross_entropy(logits.float(), labels, reduction="sum"), labels.new_tensor(labels.numel())

    def decode(self, model: nn.Module, batch: Batch) -> list[tuple[float, int]]:
        """Per block: summed negative log-likelihood and the number of predicted tokens. Evaluation corrupts with
        a generator seeded by the batch's first block, so that every evaluation scores the same corruption."""
        generator = torch.Generator().manual_seed(int(batch["index"][0]))
        logits, labels, rows = self._scores(model, batch, generator)
        nll = F.cross_entropy(require_finite(logits.float()), labels, reduction="none")
        size = len(batch["ids"])
        sums = torch.zeros(size, device=nll.device).index_add_(0, rows, nll)
        counts = torch.zeros(size, device=nll.device).index_add_(0, rows, torch.ones_like(nll))
        return [(float(n), int(c)) for n, c in zip(sums, counts)]

    def metrics(self, predictions: list[tuple[float, int]], examples: object) -> dict:
        nll = sum(p[0] for p in predictions)
        count = max(sum(p[1] for p in predictions), 1)
        return {"perplexity": math.exp(min(nll / count, 50.0)), "loss": nll / count}
