"""Text written by a model's decoder, for the tasks that generate: prompts as token rows, run in batches (or one at a
time while streaming) through attnkit.nn.decoding, decoded back to text."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from attnkit.data.batching import BATCH_TOKENS, MAX_PADDING, batches_by_tokens, pad
from attnkit.data.tokenizer import TextStream, Tokenizer
from attnkit.errors import AttnkitError
from attnkit.nn.decoding import Sampling, check_beam, generate

Stream = Callable[[int, str], None]  # (input's index, a new piece of its output)


@dataclass(frozen=True)
class Generation:
    """How to generate, as a user asks: at most `max_new_tokens` (None: the task's default), the best of
    `beam_size` hypotheses (None: the task's default) or drawn with `sampling`; `stream(i, piece)` receives each
    new piece of output i as it is decoded."""

    max_new_tokens: int | None = None
    beam_size: int | None = None
    sampling: Sampling | None = None
    stream: Stream | None = None

    def __post_init__(self) -> None:
        if self.max_new_tokens is not None and self.max_new_tokens < 1:
            raise AttnkitError(f"max_new_tokens must be at least 1, got {self.max_new_tokens}")
        check_beam(self.beam_size, self.sampling)


def suppressed(tokenizer: Tokenizer) -> list[int]:
    """The tokens an output never holds: padding and the start token (unless it also ends a sequence)."""
    return sorted({tokenizer.pad_id, tokenizer.bos_id} - {None, tokenizer.eos_id})


def generate_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    rows: list[list[int] | None],
    *,
    limit: Callable[[int], int],
    start_id: int | None = None,
    beam_size: int = 1,
    sampling: Sampling | None = None,
    stream: Stream | None = None,
    **settings: object,
) -> list[str | None]:
    """The output text for each row of token ids (None for a row that is None: a blank prompt), at most
    `limit(longest row of its batch)` new tokens each. With a `start_id` the model is an encoder-decoder that reads
    the rows as sources (padded, batched by length); without one, a decoder that continues them (unpadded: rows of
    one length go together). `stream(i, piece)` receives each new piece of output i as it is decoded (beam search:
    the whole output at its end); the rows then go one at a time, in order."""
    kept = [i for i, row in enumerate(rows) if row is not None]
    if stream is not None:
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
    for group in groups:
        ids, mask = pad([rows[i] for i in group], tokenizer.pad_id)
        # beam search knows its best output only at the end: it streams the whole of it then
        text = TextStream(tokenizer, lambda piece, i=group[0]: stream(i, piece)) if stream and beam_size == 1 else None
        tokens = generate(
            model,
            ids.to(device),
            mask.to(device) if start_id is not None else None,
            start_id=start_id,
            eos_id=tokenizer.eos_id,
            max_new_tokens=limit(ids.shape[1]),
            beam_size=beam_size,
            suppress=suppressed(tokenizer),
            sampling=sampling,
            stream=None if text is None else lambda chosen, text=text: text(int(chosen[0, 0])),
            **settings,
        )
        for i, row in zip(group, tokens):
            outputs[i] = tokenizer.decode(row)
        if text is not None:
            text.finish()
        elif stream is not None and outputs[group[0]]:
            stream(group[0], outputs[group[0]])
    return outputs
