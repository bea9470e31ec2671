"""Text -> a vector: sentence embeddings whose cosine says how alike two texts are (sentence-transformers'
bi-encoder). Each text is read alone and its states pooled (the mean by default) into a vector of unit length, so
that vectors can be stored and searched. It learns from pairs of texts: with a score per pair (data.label_column:
a similarity, a relatedness), the CoSENT loss ranks the pairs' cosines as their scores rank; without one (pairs that
belong together: a question and its answer, a title and its text), the multiple-negatives ranking loss picks each
first text's second among the batch's (and the hard negatives of data.negative_column, where the file has them).
Its dev metric is the Spearman correlation of the cosines with the scores, or recall@1 of the second texts."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.config import DataConfig
from attnkit.data.batching import Size, pad
from attnkit.data.readers import Labelled, TextPair, read_text_pairs, table_columns
from attnkit.errors import AttnkitError, require_finite
from attnkit.interop.hf import TaskExport
from attnkit.interop.sentence_transformers import Embedding, st_files
from attnkit.tasks import metrics as scoring
from attnkit.tasks.base import Batch, Task, TaskModel
from attnkit.tasks.classify import pool
from attnkit.tasks.graphs import Graph, IdsAndMask, encoder_graph
from attnkit.tasks.regress import number_in

SCALE = 20.0  # cosines times this before the loss (sentence-transformers' CoSENT and multiple-negatives scale)
POOLINGS = ("mean", "max", "first", "last")


class Embedder(TaskModel):
    """Encoder (or decoder) states pooled into one vector per text, of unit length if `normalize`."""

    def __init__(self, config, pooling: str, normalize: bool = True) -> None:
        super().__init__(config)
        if pooling not in POOLINGS or (self.decoder is not None and pooling == "first"):
            allowed = ", ".join(p for p in POOLINGS if self.decoder is None or p != "first")
            raise AttnkitError(f"task.pooling={pooling}: an embedding pools with one of {allowed}")
        self.pooling, self.normalize = pooling, normalize

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        # ids, mask: (batch, time) -> vectors (batch, dim)
        vectors = pool(self.states(ids, mask, first_only=self.pooling == "first"), mask, self.pooling)
        return F.normalize(vectors.float(), dim=-1) if self.normalize else vectors


@dataclass
class Similarity:
    """What an embedder makes of a pair: the two vectors, and their cosine."""

    a: Tensor
    b: Tensor

    @property
    def cosine(self) -> float:
        return float(F.cosine_similarity(self.a, self.b, dim=0))


class EmbedTask(Task):
    name = "embed"
    reads_decoders = True  # a decoder's states pooled: the mean, or its last token's
    gold_name = "score"
    similar = True

    def __init__(self, config, data, tokenizer, model_config, state=None) -> None:
        super().__init__(config, data, tokenizer, model_config, state)
        state = state or {}
        self.scored, self.normalize = state.get("scored", True), state.get("normalize", True)
        self.pooled = state.get("pooling")  # a sentence-transformers checkpoint's, where task.pooling is not set
        if (
            not isinstance(self.scored, bool)
            or not isinstance(self.normalize, bool)
            or self.pooled not in (None, *POOLINGS)
        ):
            raise AttnkitError(
                f"task_state: expected scored and normalize, true or false, and a pooling; got {state!r}"
            )

    def state(self) -> dict:
        return {"scored": self.scored, "normalize": self.normalize, "pooling": self.pooling}

    @property
    def main_metric(self) -> str:  # type: ignore[override]
        return "spearman" if self.scored else "recall@1"

    @property
    def pooling(self) -> str:
        return self.config.pooling or self.pooled or "mean"

    @property
    def columns(self) -> str:
        data = self.data
        return f"{data.text_a_column}, {data.text_b_column}" + (f" -> {data.label_column}" if self.scored else "")

    @property
    def verbs(self) -> frozenset[str]:
        return frozenset({"predict", "encode", "attention"})

    def describe(self) -> str:
        return f"embed: {self.pooling} pooling, cosine"

    # data
    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator[TextPair]:
        """Pairs, each with its score where the file has data.label_column (else "": pairs that belong together)
        and its hard negative where it has data.negative_column."""
        columns = table_columns(path)
        scored = need_targets and data.label_column in columns
        negative = data.negative_column if data.negative_column in columns else None
        settings = ("data.text_a_column", "data.text_b_column", "data.label_column")
        pairs = read_text_pairs(
            path, data.text_a_column, data.text_b_column, data.label_column, scored, settings, negative
        )
        for pair in pairs:
            if scored:
                number_in(pair, path, data.label_column, columns)
            yield pair

    def inputs(self, raw: list, where: str = "input") -> list[Labelled]:
        return [Labelled(text, "", line) for line, text in enumerate(raw, start=1)]

    def fit(self, examples) -> None:
        first = next(iter(examples), None)
        self.scored = first is not None and first.label != ""

    def check(self, examples: list, path: str | os.PathLike) -> None:
        """Dev and test pairs are scored as the training pairs are (or not), so that one metric ranks them."""
        if examples and self.scored != (examples[0].label != ""):
            scores = f"scores (column {self.data.label_column!r})"
            which = f"have {scores} and this file's not" if self.scored else f"have no {scores} and this file's have"
            raise AttnkitError(f"{path}: the training pairs {which}; one metric ranks a run's checkpoints")

    @staticmethod
    def tokenizer_texts(examples: list[TextPair]) -> Iterator[str]:
        for e in examples:
            yield e.text_a
            yield e.text_b
            if e.negative:
                yield e.negative

    def encode(self, examples: list, training: bool) -> list[dict]:
        """A text's ids (`framed`, cut to data.max_length); a pair's two (and its negative's) and its score (NaN
        without one)."""
        if not examples or isinstance(examples[0], Labelled):
            return [{"ids": ids} for ids in self._ids([e.text for e in examples])]
        firsts, seconds = self._ids([e.text_a for e in examples]), self._ids([e.text_b for e in examples])
        negatives = self._ids([e.negative for e in examples]) if examples[0].negative else [None] * len(examples)
        items = []
        for e, a, b, n in zip(examples, firsts, seconds, negatives):
            item = {"a": a, "b": b, "score": float(e.label) if e.label != "" else float("nan")}
            items.append(item if n is None else {**item, "negative": n})
        return items

    def _ids(self, texts: list[str]) -> list[list[int]]:
        return [self.state_tokens(ids) for ids in self.tokenizer.encode_batch(texts)]

    def size(self, item: dict) -> Size:
        if "ids" in item:
            return len(item["ids"])
        return tuple(len(item[key]) for key in ("a", "b", "negative") if key in item)

    def collate(self, items: list[dict]) -> Batch:
        pad_id = self.tokenizer.pad_id
        if "ids" in items[0]:
            ids, mask = pad([item["ids"] for item in items], pad_id)
            return {"ids": ids, "mask": mask}
        batch = {"scores": torch.tensor([item["score"] for item in items], dtype=torch.float64)}
        for key in ("a", "b", "negative"):
            if key in items[0]:
                batch[f"{key}_ids"], batch[f"{key}_mask"] = pad([item[key] for item in items], pad_id)
        return batch

    # model
    def build_model(self) -> Embedder:
        return Embedder(self.model_config, self.pooling, self.normalize)

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """The checkpoint's body, and its pooling where it is an embedder (a sentence-transformers folder) and
        task.pooling is not set."""
        super().initialize(model, source, where, trust_pickle)
        if self.config.pooling is None and isinstance(source, Embedder):
            model.pooling = self.pooled = source.pooling

    def vectors(self, model: nn.Module, token_ids: list[list[int]]) -> Tensor:
        return model(*self.state_batch(model, token_ids))

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """CoSENT on a batch of scored pairs, else the multiple-negatives ranking loss; the batch's mean, weighed
        by its pairs (both compare a batch's pairs with one another: neither is a sum over pairs)."""
        a = F.normalize(model(batch["a_ids"], batch["a_mask"]).float(), dim=-1)
        b = F.normalize(model(batch["b_ids"], batch["b_mask"]).float(), dim=-1)
        scores, count = batch["scores"], torch.tensor(len(a), device=a.device)
        if bool(scores.isfinite().all()):
            return cosent((a * b).sum(-1), scores) * count, count
        if "negative_ids" in batch:
            b = torch.cat([b, F.normalize(model(batch["negative_ids"], batch["negative_mask"]).float(), dim=-1)])
        logits = SCALE * a @ b.T
        return F.cross_entropy(logits, torch.arange(len(a), device=a.device)) * count, count

    def outputs(self, model: nn.Module, batch: Batch) -> list:
        """A text's vector; a pair's two."""
        if "ids" in batch:
            return list(require_finite(model(batch["ids"], batch["mask"]).float()))
        a = require_finite(model(batch["a_ids"], batch["a_mask"]).float())
        b = require_finite(model(batch["b_ids"], batch["b_mask"]).float())
        return [Similarity(x, y) for x, y in zip(a, b)]

    def prediction(self, output: Tensor | Similarity) -> list[float] | Similarity:
        return output if isinstance(output, Similarity) else output.tolist()

    # results
    def metrics(self, predictions: list[Similarity], examples: list[TextPair]) -> dict:
        """Spearman's and Pearson's correlations of the cosines with the gold scores; without scores, how often a
        first text's nearest second text is its own (recall@1), is among its 10 nearest (recall@10), and the mean
        reciprocal rank of its own."""
        if examples and all(e.label != "" for e in examples):
            result = scoring.regression([p.cosine for p in predictions], [float(e.label) for e in examples])
            return {"spearman": result["spearman"], "pearson": result["pearson"]}
        return retrieval(torch.stack([p.a for p in predictions]), torch.stack([p.b for p in predictions]))

    def report(self, metrics: dict) -> str:
        return "   ".join(f"{name} {value:.4f}" for name, value in metrics.items())

    def render(self, prediction: list[float] | Similarity) -> str:
        if isinstance(prediction, Similarity):
            return f"{prediction.cosine:.6g}"
        return " ".join(f"{x:.6g}" for x in prediction)

    def caption(self, prediction: list[float]) -> str:
        return f"a vector of {len(prediction)} numbers"

    def record(self, example: Labelled | TextPair, prediction: list[float] | Similarity | None) -> dict:
        if isinstance(example, TextPair):
            cosine = prediction.cosine if prediction is not None else None
            return {"text_a": example.text_a, "text_b": example.text_b, "cosine": cosine}
        return {"text": example.text, "vector": prediction}

    def hf_export(self, model: nn.Module) -> TaskExport:
        """The family's bare model, and the files that make its folder a sentence-transformers one."""
        embedding = Embedding(model.pooling, model.normalize, self.data.max_length)
        return TaskExport(
            model.body,
            self.name,
            specials=self.exported_specials,
            max_length=self.data.max_length,
            files=st_files(embedding, self.model_config.dim),
            library="sentence-transformers",
            usage=[
                'a, b = model.encode(["A text.", "Another text."])',
                "print(float(model.similarity(a, b)))  # their cosine",
            ],
        )

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        vocab, pad_id, meaning = self.tokenizer.vocab_size, self.tokenizer.pad_id, "vectors (batch, dim)"
        return [encoder_graph(IdsAndMask(model), vocab, pad_id, "vectors", meaning, per_token=False)], {}


def cosent(cosines: Tensor, scores: Tensor) -> Tensor:
    """log(1 + sum over pairs i, j with score i > score j of exp(SCALE (cos j - cos i))): the pairs' cosines ranked
    as their scores are (Su, 2022; sentence-transformers' CoSENTLoss)."""
    differences = SCALE * (cosines[None, :] - cosines[:, None])  # [i, j]: cos j - cos i
    ranked = scores[:, None] > scores[None, :]
    differences = differences.masked_fill(~ranked, float("-inf")).flatten()
    return torch.logsumexp(torch.cat([differences.new_zeros(1), differences]), dim=0)


def retrieval(firsts: Tensor, seconds: Tensor) -> dict:
    """recall@1, recall@10 and the mean reciprocal rank of each first text's own second text among all seconds,
    by cosine."""
    similarity = F.normalize(firsts, dim=-1) @ F.normalize(seconds, dim=-1).T
    own = similarity.diagonal()
    ranks = (similarity > own[:, None]).sum(1).numpy() + 1  # 1: nothing scores above its own
    return {
        "recall@1": float(np.mean(ranks <= 1)),
        "recall@10": float(np.mean(ranks <= 10)),
        "mrr": float(np.mean(1.0 / ranks)),
    }
