"""Text written by a model's decoder, for the tasks that generate: prompts as token rows, run in batches (or one at a
time while streaming) through attnkit.nn.decoding, decoded back to text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from attnkit.data.batching import BATCH_TOKENS, MAX_PADDING, batches_by_tokens, pad
from attnkit.data.tokenizer import TextStream, Tokenizer, cut_at_stop
from attnkit.errors import AttnkitError
from attnkit.nn.decoding import Sampling, check_beam, generate

Stream = Callable[[int, str], None]  # (input's index, a new piece of its output)


@dataclass(frozen=True)
class Generation:
    """How to generate, as a user asks: at most `max_new_tokens` (None: the task's default), the best of
    `beam_size` hypotheses (None: the task's default) or drawn with `sampling`; `stream(i, piece)` receives each
    new piece of output i as it is decoded. An output ends at the tokenizer's end token or any of `ends` (a chat
    model's end of turn), and before the first of its `stop` strings; a `repetition_penalty` above 1 makes tokens it
    already holds less likely. `templated` prompts are a chat template's rendering (they hold their own start token).
    `report(i, tokens, finish)` receives, for each output, how many tokens it generated and why it ended: "stop" (an
    end token or a stop string) or "length" (max_new_tokens)."""

    max_new_tokens: int | None = None
    beam_size: int | None = None
    sampling: Sampling | None = None
    stream: Stream | None = None
    stop: tuple[str, ...] = ()
    ends: tuple[int, ...] = ()
    repetition_penalty: float = 1.0
    templated: bool = False
    report: Callable[[int, int, str], None] | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise AttnkitError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        if not self.repetition_penalty > 0:
            raise AttnkitError(f"repetition_penalty must be above 0 (1: none), got {self.repetition_penalty}")
        check_beam(self.beam_size, self.sampling)


def suppressed(tokenizer: Tokenizer, ends: tuple[int, ...] = ()) -> list[int]:
    """The tokens an output never holds: padding and the start token (unless one also ends a sequence)."""
    return sorted({tokenizer.pad_id, tokenizer.bos_id} - {None, tokenizer.eos_id, *ends})


def generate_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    rows: list[list[int] | None],
    how: Generation,
    *,
    limit: Callable[[int], int],
    beam_size: int = 1,
    start_id: int | None = None,
    **settings: object,
) -> list[str | None]:
    """The output text for each row of token ids (None for a row that is None: a blank prompt), at most
    `limit(longest row of its batch)` new tokens each, generated `how` says with `beam_size` beams (sampling: one).
    With a `start_id` the model is an encoder-decoder that reads the rows as sources (padded, batched by length);
    without one, a decoder that continues them (unpadded: rows of one length go together). With `how.stream` the
    rows go one at a time, in order (beam search streams the whole output at its end)."""
    kept = [i for i, row in enumerate(rows) if row is not None]
    if how.stream is not None:
        groups = [[i] for i in kept]
    elif start_id is None:
        lengths = sorted({len(rows[i]) for i in kept})
        groups = [[i for i in kept if len(rows[i]) == length] for length in lengths]
    else:
        sizes = [len(rows[i]) for i in kept]
        groups = [
            [kept[j] for j in batch] for batch in batches_by_tokens(sizes, BATCH_TOKENS, False, max_padding=MAX_PADDING)
        ]
    outputs: list[str | None] = [None] * len(rows)
    device = next(model.parameters()).device
    beam_size = 1 if how.sampling is not None else beam_size
    ends = (tokenizer.eos_id, *(i for i in how.ends if i != tokenizer.eos_id))
    for group in groups:
        ids, mask = pad([rows[i] for i in group], tokenizer.pad_id)
        texts = _watchers(tokenizer, group, how, ends) if beam_size == 1 else None
        most = limit(ids.shape[1])
        tokens = generate(
            model,
            ids.to(device),
            mask.to(device) if start_id is not None else None,
            start_id=start_id,
            eos_id=list(ends),
            max_new_tokens=most,
            beam_size=beam_size,
            suppress=suppressed(tokenizer, ends),
            sampling=how.sampling,
            repetition_penalty=how.repetition_penalty,
            stream=None if texts is None else lambda chosen, texts=texts: _fed(texts, chosen),
            **settings,
        )
        for i, row in zip(group, tokens):
            outputs[i], stopped = cut_at_stop(tokenizer.decode(row), how.stop)
            if how.report is not None:
                how.report(i, len(row), "length" if len(row) >= most and not stopped else "stop")
        if texts is not None and how.stream is not None:
            texts[0].finish()
        elif how.stream is not None and outputs[group[0]]:
            how.stream(group[0], outputs[group[0]])
    return outputs


def _watchers(
    tokenizer: Tokenizer, group: list[int], how: Generation, ends: tuple[int, ...]
) -> list[TextStream] | None:
    """A TextStream per row of a batch where its text must be watched as it is decoded: to stream it, or to end it at
    a stop string; None where neither (the rows then leave the batch as they end)."""
    if how.stream is None and not how.stop:
        return None
    stream = how.stream
    return [
        TextStream(tokenizer, (lambda piece, i=i: stream(i, piece)) if stream else _ignored, ends, how.stop)
        for i in group
    ]


def _ignored(piece: str) -> None:
    return None


def _fed(texts: list[TextStream], chosen: Tensor) -> Tensor:
    """Each row's new token to its TextStream; the rows whose text reached a stop string."""
    for text, token in zip(texts, chosen[:, 0].tolist()):
        text(token)
    return torch.tensor([text.stopped for text in texts])
