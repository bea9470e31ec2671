"""N->M: a new sequence of another length (translation, summarization) from the encoder-decoder, trained with
teacher forcing and label smoothing, decoded by beam search."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from copy import copy

import torch
from torch import Tensor, nn

from attnkit.config import DataConfig, ModelConfig
from attnkit.data.batching import pad
from attnkit.data.chat import render
from attnkit.data.readers import Pair, read_pairs
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError
from attnkit.findings import Finding
from attnkit.interop.hf import TaskExport
from attnkit.nn import Decoder, EncoderDecoder
from attnkit.nn.decoding import generate
from attnkit.tasks import evaluation
from attnkit.tasks import metrics as scoring
from attnkit.tasks.base import AttentionInput, Batch, Task
from attnkit.tasks.generation import Generation, generate_texts, suppressed
from attnkit.tasks.graphs import Graph, cache_shape, language_model_graph, seq2seq_graphs
from attnkit.tasks.losses import cross_entropy_sum


def decoder_start(config: ModelConfig, tokenizer: Tokenizer) -> int:
    """The first decoder input: the model's own convention (BART </s>, T5 and Marian <pad>) or <s>."""
    if config.decoder_start_id is not None:
        return config.decoder_start_id
    if tokenizer.bos_id is None:
        raise AttnkitError("tokenizer: no start token <s>, and the model names no decoder_start_id")
    return tokenizer.bos_id


class Seq2SeqTask(Task):
    name = "seq2seq"
    arch = "encoder-decoder"
    specials = "end"
    main_metric = "bleu"
    reads_decoders = True  # a language model continues a prompt: PromptedSeq2SeqTask

    @classmethod
    def of_arch(cls, arch: str | None) -> type[Task]:
        return PromptedSeq2SeqTask if arch == "decoder" else cls

    @property
    def columns(self) -> str:
        return f"{self.data.source_column} -> {self.data.target_column}"

    @property
    def verbs(self) -> frozenset[str]:
        return frozenset({"generate", "encode", "attention"})

    @staticmethod
    def stream(data: DataConfig, path: str | os.PathLike, need_targets: bool = True) -> Iterator[Pair]:
        settings = ("data.source_column", "data.target_column")
        return read_pairs(path, data.source_column, data.target_column, need_targets, settings)

    def example(self, text: str, line: int) -> Pair:
        return Pair(text, "", line)

    @staticmethod
    def tokenizer_texts(examples: list[Pair]) -> Iterator[str]:
        for e in examples:  # one vocabulary for both sides, so that embeddings can be shared
            yield e.source
            yield e.target

    def count_tokens(self, raw: list) -> list[int]:
        """The source's tokens and </s>."""
        return [len(ids) + 1 for ids in self.tokenizer.encode_batch(list(raw))]

    def encode(self, examples: list[Pair], training: bool) -> list[dict]:
        tokenizer = self.tokenizer
        sources = tokenizer.encode_batch([e.source for e in examples])
        targets = tokenizer.encode_batch([e.target for e in examples])
        source_keep, target_keep = self.data.max_length - 1, self.data.max_new_tokens
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
        return EncoderDecoder(self.model_config)

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """The whole encoder-decoder."""
        if not isinstance(source, EncoderDecoder):
            raise AttnkitError(f"{where}: a seq2seq model needs an encoder-decoder checkpoint to start from")
        model.load_state_dict(source.state_dict())

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """Teacher forcing: next-token logits (batch, tgt - 1, vocab) for target[:-1] read after the source."""
        inputs, mask = batch["target"][:, :-1], batch["target_mask"][:, :-1]
        return model(batch["source"], inputs, batch["source_mask"], mask)

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """Teacher forcing: the decoder reads target[:-1] and predicts target[1:]."""
        inputs, mask = batch["target"][:, :-1], batch["target_mask"][:, :-1]
        chosen = batch["target_mask"][:, 1:]  # positions with a next token to predict: padding is not scored
        logits = model(batch["source"], inputs, batch["source_mask"], mask, chosen)
        labels = batch["target"][:, 1:][chosen]
        total = cross_entropy_sum(logits, labels, label_smoothing)
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
            max_new_tokens=min(self.data.max_new_tokens, 2 * source_length + 10),
            beam_size=self.config.beam_size,
            length_penalty=self.config.length_penalty,
            no_repeat_ngram=self.config.no_repeat_ngram,
        )
        return [tokenizer.decode(ids) for ids in outputs]

    def generate(self, model: nn.Module, prompts: list[str], how: Generation) -> list[str | None]:
        """The output for each input text, by the task's own beam search unless told otherwise; at most
        `how.max_new_tokens`, by default data.max_new_tokens and twice the input's length plus ten."""
        items = self.encode(self.inputs(prompts), training=False)
        rows = [None if self.blank(prompt) else item["source"] for prompt, item in zip(prompts, items)]
        most = self.data.max_new_tokens
        return generate_texts(
            model,
            self.tokenizer,
            rows,
            how,
            limit=lambda longest: how.max_new_tokens or min(most, 2 * longest + 10),
            start_id=decoder_start(self.model_config, self.tokenizer),
            beam_size=how.beam_size or self.config.beam_size,
            length_penalty=self.config.length_penalty,
            no_repeat_ngram=self.config.no_repeat_ngram,
        )

    def with_decoding(self, beam_size: int | None = None, max_new_tokens: int | None = None) -> Seq2SeqTask:
        changed = copy(self)
        if beam_size is not None:
            changed.config = dataclasses.replace(self.config, beam_size=beam_size)
        if max_new_tokens is not None:
            changed.data = dataclasses.replace(self.data, max_new_tokens=max_new_tokens)
        return changed

    def attention_input(self, model: nn.Module, text: str, target: str | None = None) -> AttentionInput:
        """The decoder reads the target as in training (teacher forcing): the start token and the target's
        tokens, each position attending as it does when predicting the next one; the target is the model's own
        output unless one is given."""
        prediction = None
        if target is None:
            target = prediction = self.predict(model, self.encode(self.inputs([text]), training=False))[0]
        item = self.encode([Pair(text, target, 1)], training=False)[0]
        tokens = {"source": item["source"], "target": item["target"][:-1]}  # </s> is predicted, never read
        return AttentionInput(self.collate([item]), tokens, prediction, target)

    def metrics(self, predictions: list[str], examples: list[Pair]) -> dict:
        return scoring.generation(predictions, [e.target for e in examples])

    def examine(self, metrics: dict, examples: list[Pair], predictions: list) -> list[Finding]:
        return evaluation.generated([(e.line, e.source, p or "", e.target) for e, p in zip(examples, predictions)])

    def render(self, prediction: str) -> str:
        return prediction

    def record(self, example: Pair, prediction: str) -> dict:
        return {"source": example.source, "output": prediction}

    def hf_export(self, model: nn.Module) -> TaskExport:
        """attnkit's beam search as transformers' generate: the same start, end and suppressed tokens (as
        `decode`), log-probabilities renormalized after suppression, no forced tokens."""
        tokenizer, config = self.tokenizer, self.config
        generation = {
            "decoder_start_token_id": decoder_start(self.model_config, tokenizer),
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
            "num_beams": config.beam_size,
            "no_repeat_ngram_size": config.no_repeat_ngram,
            "max_length": self.data.max_new_tokens + 1,  # the start token counts in transformers' max_length
            "suppress_tokens": suppressed(tokenizer),
            "renormalize_logits": True,
            "forced_bos_token_id": None,
            "forced_eos_token_id": None,
            "do_sample": False,
        }
        if config.beam_size > 1:  # transformers refuses beam settings without beams
            generation.update(length_penalty=config.length_penalty, early_stopping=False)
        return TaskExport(
            model, self.name, specials=self.specials, max_length=self.data.max_length, generation=generation
        )

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        graphs = seq2seq_graphs(model, self.tokenizer.vocab_size, self.tokenizer.pad_id)
        return graphs, {
            "decoder_start_id": decoder_start(self.model_config, self.tokenizer),
            "cache": cache_shape(model.decoder),
        }


class PromptedSeq2SeqTask(Seq2SeqTask):
    """N->M on a decoder-only language model (GPT-2, Llama, SmolLM2): the source is a prompt and the target its
    continuation, the loss on the target's tokens alone. The prompt is the source and the end token after it, or
    with task.chat the source as the user's message through the model's chat template, the assistant's turn opened,
    so that an instruct model is fine-tuned as it was taught."""

    arch = "decoder"

    @property
    def verbs(self) -> frozenset[str]:
        return frozenset({"generate", "attention"})

    def prompt(self, source: str) -> list[int]:
        """The ids a decoder reads before it writes the target: the source cut to data.max_length tokens."""
        tokenizer = self.tokenizer
        ids = tokenizer.encode(source)[: self.data.max_length]
        if not self.config.chat:
            return [*tokenizer.prompt_start, *ids, tokenizer.eos_id]
        if tokenizer.chat_template is None:
            raise AttnkitError("task.chat: this model's tokenizer has no chat template; leave task.chat false")
        marker = "\x00"  # where the message goes: the template's text around it is encoded as the template gives it
        token = tokenizer.backend.id_to_token
        roles = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "unk": tokenizer.unk_id, "pad": tokenizer.pad_id}
        specials = {f"{role}_token": None if i is None else token(i) for role, i in roles.items()}
        before, after = render(tokenizer.chat_template, [{"role": "user", "content": marker}], specials).split(marker)
        return [*tokenizer.encode(before), *ids, *tokenizer.encode(after)]

    def count_tokens(self, raw: list) -> list[int]:
        return [len(self.prompt(text)) for text in raw]

    def encode(self, examples: list[Pair], training: bool) -> list[dict]:
        tokenizer, keep = self.tokenizer, self.data.max_new_tokens
        targets = tokenizer.encode_batch([e.target for e in examples])
        return [
            {"prompt": self.prompt(e.source), "target": [*target[:keep], tokenizer.eos_id]}
            for e, target in zip(examples, targets)
        ]

    def size(self, item: dict) -> int:
        return len(item["prompt"]) + len(item["target"])

    def collate(self, items: list[dict]) -> Batch:
        """The prompt and target as one row (right-padded); `chosen` marks the positions whose next token is the
        target's; the prompts alone too, for generation."""
        ids, mask = pad([item["prompt"] + item["target"] for item in items], self.tokenizer.pad_id)
        chosen = torch.zeros_like(mask)
        for row, item in enumerate(items):
            start = len(item["prompt"]) - 1  # the prompt's last position predicts the target's first token
            chosen[row, start : start + len(item["target"])] = True
        prompts, prompt_mask = pad([item["prompt"] for item in items], self.tokenizer.pad_id)
        return {"ids": ids, "mask": mask, "chosen": chosen[:, :-1], "prompt": prompts, "prompt_mask": prompt_mask}

    def build_model(self) -> Decoder:
        return Decoder(self.model_config)

    def initialize(self, model: nn.Module, source: nn.Module, where: str, trust_pickle: bool = False) -> None:
        """The whole language model."""
        if type(source) is not Decoder or source.output is None:
            raise AttnkitError(f"{where}: a seq2seq decoder starts from a language model (a decoder with its output)")
        model.load_state_dict(source.state_dict())

    def forward(self, model: nn.Module, batch: Batch) -> Tensor:
        """Next-token logits (batch, time - 1, vocab) of the prompt and target."""
        return model(batch["ids"][:, :-1], batch["mask"][:, :-1])

    def loss(self, model: nn.Module, batch: Batch, label_smoothing: float) -> tuple[Tensor, Tensor]:
        """The target's tokens, each predicted from the prompt and the target before it."""
        chosen = batch["chosen"]
        logits = model(batch["ids"][:, :-1], batch["mask"][:, :-1], chosen=chosen)
        labels = batch["ids"][:, 1:][chosen]
        total = cross_entropy_sum(logits, labels, label_smoothing)
        return total, chosen.sum()

    def decode(self, model: nn.Module, batch: Batch) -> list[str]:
        rows = [row[keep].tolist() for row, keep in zip(batch["prompt"], batch["prompt_mask"])]
        return self._continue(model, rows, Generation())

    def generate(self, model: nn.Module, prompts: list[str], how: Generation) -> list[str | None]:
        """Each source's target; a chat template's rendering (`how.templated`: a conversation) is read as it is."""
        frame = self.tokenizer.encode if how.templated else self.prompt
        rows = [None if self.blank(prompt) else frame(prompt) for prompt in prompts]
        return self._continue(model, rows, how)

    def _continue(self, model: nn.Module, rows: list[list[int] | None], how: Generation) -> list[str | None]:
        """Each prompt's continuation, by the task's beam search unless `how` says otherwise: at most
        `how.max_new_tokens`, by default data.max_new_tokens, fewer where the model's learned positions run out."""
        limit = self.model_config.position_limit

        def most(longest: int) -> int:
            wanted = how.max_new_tokens or self.data.max_new_tokens
            return wanted if limit is None else max(1, min(wanted, limit - longest))

        return generate_texts(
            model,
            self.tokenizer,
            rows,
            how,
            limit=most,
            beam_size=how.beam_size or self.config.beam_size,
            length_penalty=self.config.length_penalty,
            no_repeat_ngram=self.config.no_repeat_ngram,
        )

    def attention_input(self, model: nn.Module, text: str, target: str | None = None) -> AttentionInput:
        """The prompt and the target as the model reads them in training; the target is its own output unless one
        is given."""
        prediction = None
        if target is None:
            target = prediction = self.generate(model, [text], Generation())[0]
        item = self.encode([Pair(text, target, 1)], training=False)[0]
        ids = item["prompt"] + item["target"][:-1]  # the end token is predicted, never read
        batch = {"ids": torch.tensor([[*ids, self.tokenizer.eos_id]]), "mask": torch.ones(1, len(ids) + 1).bool()}
        return AttentionInput(batch, {"ids": ids}, prediction, target, stack="decoder")

    def hf_export(self, model: nn.Module) -> TaskExport:
        """The family's language model, with the task's decoding as its generation config (a prompt is framed as
        `prompt` frames it: the end token after the source, or the chat template)."""
        tokenizer, config = self.tokenizer, self.config
        generation = {
            "bos_token_id": tokenizer.bos_id,
            "eos_token_id": tokenizer.eos_id,
            "pad_token_id": tokenizer.pad_id,
            "num_beams": config.beam_size,
            "no_repeat_ngram_size": config.no_repeat_ngram,
            "max_new_tokens": self.data.max_new_tokens,
            "suppress_tokens": suppressed(tokenizer),
            "renormalize_logits": True,
            "do_sample": False,
        }
        if config.beam_size > 1:
            generation.update(length_penalty=config.length_penalty, early_stopping=False)
        return TaskExport(model, self.name, generation=generation)

    def onnx_graphs(self, model: nn.Module) -> tuple[list[Graph], dict]:
        return [language_model_graph(model, self.tokenizer.vocab_size, self.tokenizer.pad_id)], {
            "cache": cache_shape(model)
        }
