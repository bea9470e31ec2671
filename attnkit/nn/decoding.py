"""Decoding for encoder-decoder and decoder-only models: greedy, sampling (temperature, top-k, top-p, a seed) and
beam search, batched, each step reusing the KV cache so that only the newest token passes through the decoder."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from attnkit.errors import AttnkitError, require_finite
from attnkit.nn.transformer import Decoder, EncoderDecoder, EngineModule


@torch.no_grad()
def generate(
    model: EncoderDecoder | Decoder | DecodingEngine,
    source: Tensor,
    source_mask: Tensor | None = None,
    *,
    eos_id: int | Sequence[int],
    max_new_tokens: int,
    start_id: int | None = None,
    beam_size: int = 1,
    length_penalty: float = 1.0,
    suppress: Sequence[int] = (),
    no_repeat_ngram: int = 0,
    repetition_penalty: float = 1.0,
    sampling: Sampling | None = None,
    stream: Callable[[Tensor], Tensor | None] | None = None,
) -> list[list[int]]:
    """The output for each row, at most `max_new_tokens` tokens, without the start token and the end token: the most
    likely token at each step (greedy), a drawn one (`sampling`), or the best of `beam_size` hypotheses.

    An EncoderDecoder reads `source` (batch, src) with `source_mask` and starts its output with `start_id`.
    A Decoder continues `source` as a prompt (rows of equal length, unpadded) and returns only the new tokens.
    An output ends at `eos_id` (or at any of several: a chat model's end of text and end of turn). Beam hypotheses are
    ranked by log-probability / length ** length_penalty; `suppress` ids are never chosen, with no_repeat_ngram = n
    no n-gram occurs twice in an output, and a `repetition_penalty` above 1 makes the tokens a row already holds
    less likely (CTRL's, as transformers applies it). `stream` (greedy and sampling) receives each step's tokens
    (rows, 1) as they are chosen (a row that has ended receives its end token), and may return the rows (a boolean
    (rows,) tensor) that end there (at a stop string of theirs).
    """
    ends = [eos_id] if isinstance(eos_id, int) else list(eos_id)
    if isinstance(model, DecodingEngine):
        settings = {
            "length_penalty": length_penalty,
            "suppress": suppress,
            "no_repeat_ngram": no_repeat_ngram,
            "repetition_penalty": repetition_penalty,
            "ends": ends,
        }
        return model.decode(
            source, source_mask, ends[0], max_new_tokens, start_id, beam_size, sampling, stream, settings
        )
    penalties = (suppress, no_repeat_ngram, repetition_penalty)
    if isinstance(model, EncoderDecoder):
        if start_id is None:
            raise ValueError("an encoder-decoder needs start_id")
        step = _Step(model.decoder, model.encode(source, source_mask), source_mask, *penalties)
        first = torch.full((source.shape[0], 1), start_id, dtype=torch.long, device=source.device)
    else:
        step = _Step(model, None, None, *penalties)
        first = source
    if beam_size == 1:
        choose = _most_likely if sampling is None else sampling.chooser(source.device)
        return _one_path(step, first, ends, max_new_tokens, choose, stream)
    if sampling is not None or stream is not None:
        raise ValueError("beam search neither samples nor streams")
    return _beam_search(step, first, ends, max_new_tokens, beam_size, length_penalty)


class DecodingEngine(EngineModule):
    """A model that another engine runs and that decodes whole outputs itself (CTranslate2's Translator or
    Generator): `generate` hands it the job, with the same arguments and the same promise: the same tokens as
    attnkit's own greedy decoding."""

    def decode(
        self,
        source: Tensor,
        source_mask: Tensor | None,
        eos_id: int,
        max_new_tokens: int,
        start_id: int | None,
        beam_size: int,
        sampling: Sampling | None,
        stream: Callable[[Tensor], None] | None,
        settings: dict,
    ) -> list[list[int]]:
        """As `generate`; `settings` holds length_penalty, suppress and no_repeat_ngram."""
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Sampling:
    """Draw each token from the model's distribution sharpened by `temperature` (< 1: surer, > 1: more varied),
    among the `top_k` most likely tokens (0: all) and the smallest set whose probability reaches `top_p` (1: all).
    The same `seed` with the same inputs draws the same outputs; None draws a fresh seed."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    seed: int | None = None

    def __post_init__(self) -> None:
        if not self.temperature > 0:
            raise AttnkitError(f"sampling needs a temperature above 0, got {self.temperature}")
        if self.top_k < 0:
            raise AttnkitError(f"top-k must be 0 (no cut) or more, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise AttnkitError(f"top-p must be above 0 and at most 1 (no cut), got {self.top_p}")

    def chooser(self, device: torch.device) -> Callable[[Tensor], Tensor]:
        generator = torch.Generator(device=device)
        if self.seed is None:
            generator.seed()
        else:
            generator.manual_seed(self.seed)

        def choose(log_probs: Tensor) -> Tensor:
            return torch.multinomial(self.filtered(log_probs).softmax(-1), 1, generator=generator)

        return choose

    def filtered(self, log_probs: Tensor) -> Tensor:
        """(rows, vocab) log-probabilities -> scaled logits, -inf outside the top-k and the top-p nucleus."""
        logits = log_probs / self.temperature
        if 0 < self.top_k < logits.shape[-1]:
            kth = logits.topk(self.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.top_p < 1:
            ordered, order = logits.sort(dim=-1, descending=True)
            probs = ordered.softmax(-1)
            outside = probs.cumsum(-1) - probs >= self.top_p  # the mass before a token already reaches top_p
            logits = logits.masked_fill(outside.scatter(-1, order, outside), float("-inf"))
        return logits


def sampling_of(
    temperature: float | None = 0.0,
    top_k: int | None = 0,
    top_p: float | None = 1.0,
    seed: int | None = None,
    beam_size: int | None = None,
    defaults: dict | None = None,
) -> Sampling | None:
    """The sampling these settings ask for (None for a temperature of 0: greedy or beam search), or one line on
    what is wrong with them: `attnkit generate` and the server ask here (and every generation checks beams against
    sampling with `check_beam`). A setting left None takes the checkpoint's `defaults` (generation_config.json's
    do_sample, temperature, top_k, top_p), else attnkit's: without a temperature, a checkpoint that samples by
    default samples (unless beams are asked for), any other decodes greedily."""
    defaults = defaults or {}
    if temperature is None:
        samples = bool(defaults.get("do_sample")) and (beam_size or 1) == 1
        temperature = float(defaults.get("temperature", 1.0)) if samples else 0.0
        if not samples:  # the checkpoint's sampling settings do not apply to a greedy default
            defaults = {}
    if not temperature >= 0:
        raise AttnkitError(f"temperature must be 0 (no sampling) or more, got {temperature}")
    if temperature == 0:
        if top_k or top_p not in (None, 1.0) or seed is not None:
            raise AttnkitError("top_k, top_p and seed shape sampling: give a temperature above 0 to sample")
        return None
    top_k = top_k if top_k is not None else int(defaults.get("top_k") or 0)
    top_p = top_p if top_p is not None else float(defaults.get("top_p") or 1.0)
    sampling = Sampling(temperature, top_k, top_p, seed)
    check_beam(beam_size, sampling)
    return sampling


def check_beam(beam_size: int | None, sampling: Sampling | None) -> None:
    """Beam search keeps the likeliest hypotheses; sampling draws one: a decoding does one or the other."""
    if sampling is not None and (beam_size or 1) > 1:
        raise AttnkitError("beam search (beam_size > 1) and sampling (temperature > 0) exclude each other: choose one")


def _most_likely(log_probs: Tensor) -> Tensor:
    return log_probs.argmax(-1, keepdim=True)


class _Step:
    """One decoding step: the next-token log-probabilities of each row given its newest tokens, via the cache."""

    def __init__(
        self,
        decoder: Decoder,
        memory: Tensor | None,
        source_mask: Tensor | None,
        suppress: Sequence[int],
        no_repeat_ngram: int,
        repetition_penalty: float = 1.0,
    ) -> None:
        self.decoder, self.source_mask = decoder, source_mask
        self.suppress = list(suppress)
        self.no_repeat_ngram = no_repeat_ngram
        self.repetition_penalty = repetition_penalty
        self.cache = decoder.new_cache(memory)  # cross-attention's keys and values once per source row
        self.beams = 1  # rows per source

    def expand(self, times: int) -> None:
        """Make each source row `times` rows (row b * times + k is beam k of source b); its cross-attention keys and
        values and its mask stay one row, which the attention of all its beams reads."""
        self.beams = times

    def keep(self, rows: Tensor) -> None:
        """Go on with these rows only (whole groups of beams): the outputs and searches that have ended leave the
        batch."""
        sources = rows[:: self.beams] // self.beams
        self.cache.reorder(rows, sources)
        if self.source_mask is not None:
            self.source_mask = self.source_mask.index_select(0, sources)

    def __call__(self, newest: Tensor, history: Tensor) -> Tensor:
        # newest: (rows, new) tokens to feed; history: (rows, all so far) -> log-probs of the next token (rows, vocab)
        logits = require_finite(self.decoder(newest, None, None, self.source_mask, cache=self.cache)[:, -1].float())
        if self.repetition_penalty != 1.0:  # a held token's score shrinks towards "unlikely", whatever its sign
            held = logits.gather(1, history)
            penalty = self.repetition_penalty
            logits.scatter_(1, history, torch.where(held < 0, held * penalty, held / penalty))
        if self.suppress:
            logits[:, self.suppress] = float("-inf")
        if self.no_repeat_ngram:
            for row, banned in enumerate(_repeating(history.tolist(), self.no_repeat_ngram)):
                logits[row, banned] = float("-inf")
        return logits.log_softmax(-1)


def _repeating(rows: list[list[int]], n: int) -> list[list[int]]:
    """For each row, the tokens that would end an n-gram the row already holds."""
    banned = []
    for row in rows:
        prefix = row[len(row) - n + 1 :] if n > 1 else []
        banned.append([row[i + n - 1] for i in range(len(row) - n + 1) if row[i : i + n - 1] == prefix])
    return banned


def _one_path(
    step: _Step,
    first: Tensor,
    ends: list[int],
    max_new_tokens: int,
    choose: Callable[[Tensor], Tensor],
    stream: Callable[[Tensor], Tensor | None] | None,
) -> list[list[int]]:
    """Greedy decoding or sampling: one token per row and step, chosen by `choose` from the log-probabilities. A row
    that ends leaves the batch (unless streaming, which receives every row each step), so that the rows still
    decoding do not wait on ones that are done."""
    token, history = first, first
    outputs: list[list[int]] = [[] for _ in range(first.shape[0])]
    live = list(range(first.shape[0]))  # the output each row of the batch writes
    done = torch.zeros(first.shape[0], dtype=torch.bool, device=first.device)
    end_ids = torch.tensor(ends, device=first.device)
    for _ in range(max_new_tokens):
        token = choose(step(token, history)).masked_fill(done[:, None], ends[0])
        history = torch.cat([history, token], dim=1)
        for row, chosen in zip(live, token[:, 0].tolist()):
            outputs[row].append(chosen)
        done |= torch.isin(token[:, 0], end_ids)
        stopped = stream(token) if stream is not None else None
        if stopped is not None:
            done |= stopped.to(done.device)
        if done.all():
            break
        if stream is None and done.any():
            going = (~done).nonzero()[:, 0]
            step.keep(going)
            token, history, done = token[going], history[going], done[going]
            live = [live[i] for i in going.tolist()]
    return [_until_end(row, ends) for row in outputs]


def _until_end(row: list[int], ends: list[int]) -> list[int]:
    """The tokens of an output before its first end token."""
    return next((row[:i] for i, token in enumerate(row) if token in ends), row)


def _beam_search(
    step: _Step, first: Tensor, ends: list[int], max_new_tokens: int, beam_size: int, length_penalty: float
) -> list[list[int]]:
    """The first step reads each source (or prompt) once and its best beam_size continuations become the beams; each
    later step ranks beams x vocabulary continuations of each source in one top-k that also finds those that end."""
    batch, device, given = first.shape[0], first.device, first.shape[1]
    end_ids = torch.tensor(ends, device=device)
    tokens, beams = first, 1  # (groups * beams, length): row b * beams + k is beam k of search b
    scores = torch.zeros(batch, 1, device=device)
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]
    live = list(range(batch))  # the source each group of rows searches for; a finished search leaves

    for length in range(1, max_new_tokens + 2):  # tokens generated so far, counting the one chosen now
        groups = len(live)
        log_probs = step(tokens if length == 1 else tokens[:, -1:], tokens)
        vocab = log_probs.shape[-1]
        flat = log_probs.view(groups, beams, vocab).add_(scores[:, :, None]).view(groups, -1)  # in place
        # enough candidates that beam_size of them go on even if every beam's best are its end tokens
        wanted = beam_size + beams * len(ends)
        if flat.shape[1] < wanted:  # a vocabulary smaller than the beam: the missing candidates are dead ends
            flat = torch.nn.functional.pad(flat, (0, wanted - flat.shape[1]), value=float("-inf"))
        top_scores, top_index = flat.topk(wanted, dim=1)
        top_index = top_index.clamp(max=beams * vocab - 1)
        alive = top_scores > float("-inf")
        ending = torch.isin(top_index % vocab, end_ids) & alive
        rows_of = torch.arange(groups, device=device)[:, None] * beams + top_index // vocab
        # hypotheses that end here, if they rank among the best beam_size continuations
        for b, k in ending[:, :beam_size].nonzero().tolist():
            normalized = float(top_scores[b, k]) / length**length_penalty
            finished[live[b]].append((normalized, tokens[int(rows_of[b, k]), given:].tolist()))
        # the beams that go on: the best beam_size continuations other than an end
        going_on = ~ending & ((~ending).cumsum(1) <= beam_size)
        scores = top_scores[going_on].view(groups, beam_size)
        rows = rows_of[going_on]
        tokens = torch.cat([tokens[rows], (top_index[going_on] % vocab)[:, None]], dim=1)
        if beams == 1:  # the first step's rows become beam_size rows each; cross-attention stays one per source
            step.expand(beam_size)
            beams = beam_size
        step.cache.reorder(rows)
        # a search is done when its beam_size best finished hypotheses all rank above its best live beam
        # (as transformers); it leaves the batch
        best_alive = (scores[:, 0] / length**length_penalty).tolist()
        going = [
            b
            for b in range(groups)
            if len(finished[live[b]]) < beam_size or sorted(f[0] for f in finished[live[b]])[-beam_size] < best_alive[b]
        ]
        if not going or length > max_new_tokens:
            break
        if len(going) < groups:
            kept = torch.tensor(going, device=device)
            step.keep((kept[:, None] * beam_size + torch.arange(beam_size, device=device)).view(-1))
            tokens = tokens.view(groups, beam_size, -1)[kept].view(len(going) * beam_size, -1)
            scores = scores[kept]
            live = [live[b] for b in going]
    best_beam = {
        source: tokens[b * beam_size, given : given + max_new_tokens].tolist() for b, source in enumerate(live)
    }
    results = []
    for source in range(batch):
        if not finished[source]:  # nothing ended within max_new_tokens: take the best unfinished beam
            finished[source].append((0.0, best_beam[source]))
        results.append(max(finished[source], key=lambda f: f[0])[1])
    return results
