"""N->M: a new sequence of another length (translation, summarization) from the encoder-decoder, trained with
teacher forcing and label smoothing, decoded by beam search."""

from __future__ import annotations

import os
from collections.abc import Iterator

import torch.nn.functional as F
from torch import Tensor, nn

from attnkit import metrics as scoring
from attnkit.config import DataConfig, ModelConfig
from attnkit.data.batching import pad
from attnkit.data.readers import Pair, read_pairs
from attnkit.errors import AttnkitError
from attnkit.generate import generate
from attnkit.nn import EncoderDecoder
from attnkit.tasks.base import Batch, Task
from attnkit.tokenization import Tokenizer


def decoder_start(config: ModelConfig, tokenizer: Tokenizer) -> int:
    """The first decoder input: the model's own convention (BART </s>, T5 and Marian <pad>) or <s>."""
    if config.decoder_start_id is not None:
        return config.decoder_start_id
    if tokenizer.bos_id is None:
        raise AttnkitError("tokenizer: no start token <s>, and the model names no decoder_start_id")
    return tokenizer.bos_id


def suppressed(tokenizer: Tokenizer) -> list[int]:
    """The tokens an output never holds: padding and the start token (unless it also ends a sequence)."""
    return sorted({tokenizer.pad_id, tokenizer.bos_id} - {None, tokenizer.eos_id})


class Seq2SeqTask(Task):
    name = "seq2seq"
    specials = "end"
    main_metric = "bleu"

    @staticmethod
    def read(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> list[Pair]:
        settings = ("data.source_column", "data.target_column")
        return read_pairs(path, data.source_column, data.target_column, need_targets, settings)

    def inputs(self, texts: list[str]) -> list[Pair]:
        return [Pair(text, "", i + 1) for i, text in enumerate(texts)]

    @staticmethod
    def tokenizer_texts(examples: list[Pair]) -> Iterator[str]:
        for e in examples:  # one vocabulary for both sides, so that embeddings can be shared
            yield e.source
            yield e.target

    def encode(self, examples: list[Pair], training: bool) -> list[dict]:
        tokenizer = self.tokenizer
        sources = tokenizer.encode_batch([e.source for e in examples])
        targets = tokenizer.encode_batch([e.target for e in examples])
        source_keep, target_keep = self.data.max_length - 1, self.data.max_target_length
        start = decoder_start(self.model_config, tokenizer)
        return [
            {
                "source": [*source[:source_keep], tokenizer.eos_id],
                "target": [start, *target[:target_keep], tokenizer.eos_id],
            }
            for source, target in zip(sources, targets)
        ]

    def size(self, item: dict) -> tuple[int, int]:
        return len(item["target"]), len(item["source"])

    def collate(self, items: list[dict]) -> Batch:
        source, source_mask = pad([item["source"] for item in items], self.tokenizer.pad_id)
        target, target_mask = pad([item["target"] for item in items], self.tokenizer.pad_id)
        return {"source": source, "source_mask": source_mask, "target": target, "target_mask": target_mask}

    def build_model(self) -> EncoderDecoder:
        config = self.model_config
        return EncoderDecoder(config)

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Teacher forcing: the decoder reads target[:-1] and predicts target[1:]."""
        inputs, mask = batch["target"][:, :-1], batch["target_mask"][:, :-1]
        chosen = batch["target_mask"][:, 1:]  # positions with a next token to predict: padding is not scored
        logits = model(batch["source"], inputs, batch["source_mask"], mask, chosen)
        labels = batch["target"][:, 1:][chosen]
        total = F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing, reduction="sum")
        return total, chosen.sum()

    def decode(self, model: nn.Module, batch: Batch) -> list[str]:
        tokenizer = self.tokenizer
        source_length = int(batch["source_mask"].sum(1).max())
        outputs = generate(
            model,
            batch["source"],
            batch["source_mask"],
            start_id=decoder_start(self.model_config, tokenizer),
            eos_id=tokenizer.eos_id,
            suppress=suppressed(tokenizer),
            max_length=min(self.data.max_target_length, 2 * source_length + 10),
            beam_size=self.config.beam_size,
            length_penalty=self.config.length_penalty,
            no_repeat_ngram=self.config.no_repeat_ngram,
        )
        return [tokenizer.decode(ids) for ids in outputs]

    def metrics(self, predictions: list[str], examples: list[Pair]) -> dict:
        return scoring.generation(predictions, [e.target for e in examples])

    def render(self, prediction: str) -> str:
        return prediction

    def record(self, example: Pair, prediction: str) -> dict:
        return {"source": example.source, "output": prediction}
