"""Pretraining on raw text, by architecture: masked LM for encoders (BERT: 15% of tokens chosen, 80% of those
masked, 10% replaced at random, 10% kept), span infilling for encoder-decoders (BART: 30% of the tokens in spans
of Poisson(3) length, each replaced by one <mask>, the decoder restores the text), next-token prediction for
decoders. task.mask_fraction changes the 15% or 30%.

Examples are fixed-length blocks of a token file that attnkit.training.corpus wrote once and reads memory-mapped,
so that memory does not grow with the corpus. The dev metric is held-out perplexity.

A model that no attnkit run trained for a task (a Hugging Face checkpoint, a bare model) has this task too, as
NoTask: what such a model can do follows from its architecture, as its pretraining does."""

from __future__ import annotations

import math
import os

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig, TaskConfig
from attnkit.data.batching import pad
from attnkit.data.token_files import Blocks
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError, require_finite
from attnkit.interop.hf import TaskExport
from attnkit.nn import Decoder, Encoder, EncoderDecoder, encoder_of
from attnkit.tasks.base import NO_DECODER, NOT_TRAINED, AttentionInput, Batch, Task, outside
from attnkit.tasks.generation import Generation, generate_texts
from attnkit.tasks.graphs import Graph, IdsAndMask, cache_shape, encoder_graph, language_model_graph
from attnkit.tasks.losses import IGNORE_INDEX, cross_entropy_sum
from attnkit.tasks.seq2seq import Seq2SeqTask, decoder_start


class MaskedLM(nn.Module):
    """An encoder with BERT's prediction head: dense, GELU, norm, then the embedding matrix (tied) plus a bias."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        # down to the embeddings' width, to which the output is tied (ELECTRA's generator head, where narrower)
        self.transform = nn.Linear(config.dim, config.embedding_width)
        self.norm = nn.LayerNorm(config.embedding_width, eps=config.norm_eps)
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
    arch = None  # any: the architecture decides the objective
    main_metric = "perplexity"
    lower_is_better = frozenset({"perplexity", "loss"})
    mean_span = 3.0  # span infilling
    few_examples = None  # raw text is never too little to say so: it is what there is
    pretraining = True

    @property
    def verbs(self) -> frozenset[str]:
        arch = self.model_config.arch
        return frozenset({"attention", "encode"} | ({"generate"} if arch != "encoder" else set()))

    def state_tokens(self, ids: list[int], cut: bool = True) -> list[int]:
        """An encoder's as any task's; a language model reads a text as a prompt (its own start token, cut to its
        positions)."""
        if self.model_config.arch != "decoder":
            return super().state_tokens(ids, cut)
        return (self.tokenizer.prompt_start + ids)[: self.model_config.position_limit if cut else None]

    def encode_states(self, model: nn.Module, token_ids: list[list[int]]) -> tuple[Tensor, Tensor]:
        """An encoder's states as any task's; a language model's last layer (normed) over each text read as a
        prompt."""
        if self.model_config.arch != "decoder":
            return super().encode_states(model, token_ids)
        if not isinstance(model, Decoder):
            raise AttnkitError("a language model run by another engine gives no states: run it with --engine torch")
        ids, mask = pad([self.state_tokens(t) for t in token_ids], self.tokenizer.pad_id)
        device = next(model.parameters()).device
        ids, mask = ids.to(device), mask.to(device)
        return model.hidden_states(ids, mask), mask

    @property
    def specials(self) -> str | None:  # type: ignore[override]
        """An encoder reads <s> text </s>, an encoder-decoder text </s> (as seq2seq); a language model continues a
        prompt as it is (None: the tokenizer's)."""
        return {"encoder": "both", "encoder-decoder": "end"}.get(self.model_config.arch)

    def _fraction(self, default: float) -> float:
        """Share of tokens corrupted: task.mask_fraction if set, else the objective's default."""
        return default if self.config.mask_fraction is None else self.config.mask_fraction

    @staticmethod
    def read(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Blocks:
        return Blocks.open(path, data.max_length)

    def example(self, text: str, line: int) -> object:
        raise AttnkitError(NOT_TRAINED)

    @property
    def max_input_tokens(self) -> int | None:
        """The learned-position table, or None when positions extrapolate to any length."""
        config = self.model_config
        return config.position_limit

    def count_tokens(self, raw: list) -> list[int]:
        """The tokens a text is read as: an encoder's <s> text </s>, a language model's <s> prompt, an
        encoder-decoder's text </s>."""
        arch, tokenizer = self.model_config.arch, self.tokenizer
        around = {"encoder": len(tokenizer.add_specials([])), "decoder": len(tokenizer.prompt_start)}
        return [len(ids) + around.get(arch, 1) for ids in tokenizer.encode_batch(list(raw))]

    def encode(self, examples: Blocks, training: bool) -> Blocks:
        """The blocks are their own items: token ids already."""
        return examples

    def sizes(self, items: Blocks) -> list[int]:
        return [items.length] * len(items)

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
        return cross_entropy_sum(logits, labels), labels.new_tensor(labels.numel())

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

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """The hidden states of an encoder, the next-token logits of a language model, for the whole input; an
        encoder-decoder reads as seq2seq does (teacher forcing)."""
        arch = self.model_config.arch
        if arch == "encoder-decoder":
            return self._transducer().forward(model, batch)
        return model(batch["ids"]) if arch == "decoder" else model(batch["ids"], batch["mask"])

    def _transducer(self) -> Seq2SeqTask:
        """How an encoder-decoder without a trained task reads and writes: seq2seq's defaults."""
        return Seq2SeqTask(TaskConfig(name="seq2seq"), DataConfig(), self.tokenizer, self.model_config)

    def generate(self, model: nn.Module, prompts: list[str], how: Generation) -> list[str | None]:
        """An encoder-decoder's output for each input, as seq2seq's defaults write it; a language model's
        continuation of each prompt, greedy unless told otherwise, at most `how.max_new_tokens` (default 64, fewer
        where its learned positions run out)."""
        arch, tokenizer = self.model_config.arch, self.tokenizer
        if arch == "encoder-decoder":
            return self._transducer().generate(model, prompts, how)
        if arch == "encoder":
            raise AttnkitError(NO_DECODER)
        start = [] if how.templated else tokenizer.prompt_start  # a chat template writes its own start token
        rows = [None if self.blank(prompt) else start + tokenizer.encode(prompt) for prompt in prompts]
        limit = lambda longest: self._room(longest, how.max_new_tokens or 64)  # noqa: E731
        return generate_texts(model, tokenizer, rows, how, limit=limit, beam_size=how.beam_size or 1)

    def _room(self, prompt_tokens: int, wanted: int) -> int:
        """New tokens a language model can add to a prompt: `wanted`, or fewer when its learned positions run out."""
        config = self.model_config
        if config.position_limit is None:
            return wanted
        if prompt_tokens >= config.position_limit:
            raise AttnkitError(
                f"a prompt of {prompt_tokens} tokens leaves no room in this model's {config.position_limit} positions"
            )
        return min(wanted, config.position_limit - prompt_tokens)

    def attention_input(self, model: nn.Module, text: str, target: str | None = None) -> AttentionInput:
        """The text as in pretraining: an encoder reads it between its start and end tokens, a language model
        after its start token, an encoder-decoder as seq2seq does."""
        config, tokenizer = self.model_config, self.tokenizer
        if config.arch == "encoder-decoder":
            return self._transducer().attention_input(model, text, target)
        if target is not None:
            raise AttnkitError("--target is for encoder-decoder models; this model reads one text")
        ids = tokenizer.encode(text)
        ids = tokenizer.prompt_start + ids if config.arch == "decoder" else tokenizer.add_specials(ids)
        ids = ids[: config.position_limit]
        batch = {"ids": torch.tensor([ids]), "mask": torch.ones(1, len(ids), dtype=torch.bool)}
        stack = "decoder" if config.arch == "decoder" else "encoder"
        return AttentionInput(batch, {"ids": ids}, stack=stack)

    @classmethod
    def started_arch(cls, run_arch: str, checkpoint_arch: str) -> str:
        return checkpoint_arch

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """A masked LM starts from the checkpoint's encoder; a language model or an encoder-decoder from all of the
        checkpoint (a Llama's GGUF file, a GPT-2 folder: pretraining goes on, on the user's text)."""
        if isinstance(model, MaskedLM):
            return super().initialize(model, source, where, trust_pickle)
        if type(source) is not type(model):
            raise AttnkitError(
                f"{where}: a {type(source).__name__} cannot go on pretraining as a {type(model).__name__}"
            )
        model.load_state_dict(source.state_dict())
        return None

    def head(self, model: nn.Module) -> set[str]:
        """A masked LM's prediction head (its encoder is the checkpoint's); nothing of a language model or an
        encoder-decoder, which the checkpoint fills whole."""
        return outside(model, self.bare(model))

    def bare(self, model: nn.Module) -> nn.Module:
        """The architecture without the pretraining head: a masked LM's encoder; a decoder, an encoder-decoder."""
        return encoder_of(model) if isinstance(model, MaskedLM) else model

    def hf_export(self, model: nn.Module) -> TaskExport:
        return TaskExport(self.bare(model), "pretrained model")

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        arch, vocab, pad_id = self.model_config.arch, self.tokenizer.vocab_size, self.tokenizer.pad_id
        if arch == "encoder-decoder":
            return self._transducer().onnx_graphs(model)
        if arch == "decoder":
            return [language_model_graph(model, vocab, pad_id)], {"cache": cache_shape(model)}
        meaning = "last_hidden_state (batch, time, dim)"
        graph = encoder_graph(IdsAndMask(self.bare(model)), vocab, pad_id, "last_hidden_state", meaning, per_token=True)
        return [graph], {}


class NoTask(PretrainTask):
    """A model that no attnkit run trained for a task (a Hugging Face checkpoint, or a bare model): it encodes,
    generates and shows its attention as its architecture allows, and fine-tunes with --init."""

    name = None

    def describe(self) -> str:
        return f"{self.model_config.arch}, no task"
