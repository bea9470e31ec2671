"""What a model attends to: the attention probabilities of every layer and head for one input, as PNG heatmaps
and one self-contained HTML page (`attnkit attention DIR "text" --out DIR`, and GET /attention of the server).

An encoder model shows its self-attention over the input's tokens; a decoder-only model its causal
self-attention; an encoder-decoder model three maps: the encoder's self-attention, the decoder's (causal)
self-attention over the target, and the cross-attention from target tokens to source tokens. The target is the
one the user gives, else the model's own output; the decoder reads it as in training (teacher forcing): the start
token and the target's tokens, each position attending as it does when predicting the next token.
"""

from __future__ import annotations

import dataclasses
import os
import re
import warnings
from pathlib import Path

import torch
from torch import Tensor

from attnkit.apps.attention_page import render_page
from attnkit.errors import AttnkitError, install
from attnkit.inference.pipeline import Pipeline
from attnkit.nn import record_attention
from attnkit.runtime import to_device

PAGE_FILE = "attention.html"
SLUGS = ("encoder-self", "decoder-self", "cross")  # the heatmaps' folders, one per kind of map
MAX_TOKENS = 128  # a map per head of up to 128 x 128 weights: 6 layers x 12 heads of them make a page of ~6 MB


@dataclasses.dataclass
class AttentionMap:
    """One kind of attention in every layer and head: `weights` (layers, heads, queries, keys), rows sum to 1."""

    name: str  # "encoder self-attention", "decoder self-attention" or "cross-attention"
    kind: str  # "self" or "cross"
    queries: list[str]  # the tokens that attend (rows)
    keys: list[str]  # the tokens attended to (columns)
    weights: Tensor

    @property
    def slug(self) -> str:
        """A file-name form of the name: encoder-self, decoder-self, cross (SLUGS)."""
        return self.name.replace(" self-attention", "-self").replace("-attention", "")


@dataclasses.dataclass
class Attention:
    model: str
    text: str
    target: str | None
    prediction: str | None
    maps: list[AttentionMap]

    def to_json(self, digits: int = 4) -> dict:
        """The page's data: the maps' weights as nested lists [layer][head][query][key], rounded."""
        return {
            "model": self.model,
            "text": self.text,
            "target": self.target,
            "prediction": self.prediction,
            "maps": [
                {
                    "name": m.name,
                    "kind": m.kind,
                    "queries": m.queries,
                    "keys": m.keys,
                    "weights": m.weights.float().round(decimals=digits).tolist(),
                }
                for m in self.maps
            ],
        }


@torch.no_grad()
def attention(pipeline: Pipeline, text: str, target: str | None = None, model_name: str = "") -> Attention:
    """The attention maps of `pipeline`'s model reading `text` as its task reads an input (and, for an
    encoder-decoder, `target`, by default its own output for `text`)."""
    if pipeline.engine.startswith("ctranslate2"):
        raise AttnkitError(
            f"attention maps are read from attnkit's own layers, not {pipeline.engine}'s: run the model on attnkit's "
            "engine (--engine torch; attnkit.load(path, engine='torch'))"
        )
    if not text.strip():
        raise AttnkitError("no text to look at: give a text with at least one word")
    if target is not None and not target.strip():
        raise AttnkitError("the target is blank: give a target text, or leave --target out for the model's output")
    _check_length("text", len(pipeline.tokenizer.encode(text)) + 2)
    model = pipeline.model
    read = pipeline.task.attention_input(model, text, target)
    if read.target is not None:
        _check_length("target", len(read.tokens["target"]))
    batch = to_device(read.batch, next(model.parameters()).device)
    with record_attention(model) as recorded:
        pipeline.task.forward(model, batch)
    token = pipeline.tokenizer.backend.id_to_token
    tokens = {key: [token(int(i)) or f"<{int(i)}>" for i in ids] for key, ids in read.tokens.items()}
    return Attention(model_name, text, read.target, read.prediction, _maps(recorded, tokens, read.stack))


def _check_length(name: str, tokens: int) -> None:
    """Maps of more tokens would make pages of tens of megabytes, and grids too dense to read."""
    if tokens > MAX_TOKENS:
        raise AttnkitError(f"{name}: {tokens:,} tokens; attention maps are drawn for at most {MAX_TOKENS}")


_MODULE = re.compile(r"^(?:(encoder|decoder)\.)?layers\.(\d+)\.(self|cross)_attn$")


def _maps(recorded: dict[str, list[Tensor]], tokens: dict[str, list[str]], bare_stack: str) -> list[AttentionMap]:
    """Group the recorded probabilities (module name -> [(1, heads, queries, keys)]) into maps, layers in order."""
    layers: dict[tuple[str, str], dict[int, Tensor]] = {}
    for name, calls in recorded.items():
        match = _MODULE.match(name)
        if match is None or not calls:
            continue
        stack, layer, kind = match.group(1) or bare_stack, int(match.group(2)), match.group(3)
        layers.setdefault((stack, kind), {})[layer] = calls[-1][0]
    source = tokens.get("source", tokens.get("ids"))
    target = tokens.get("target", source)
    order = [("encoder", "self"), ("decoder", "self"), ("decoder", "cross")]
    maps = []
    for stack, kind in order:
        if (stack, kind) not in layers:
            continue
        weights = torch.stack([w for _, w in sorted(layers[(stack, kind)].items())]).cpu()
        if kind == "cross":
            maps.append(AttentionMap("cross-attention", "cross", target, source, weights))
        else:
            queries = source if stack == "encoder" else target
            maps.append(AttentionMap(f"{stack} self-attention", "self", queries, queries, weights))
    return maps


def write_attention(result: Attention, out: str | os.PathLike, png: bool = True) -> list[Path]:
    """Write `out`/attention.html and, with `png`, a heatmap per map, layer and head
    (`out`/encoder-self/layer1-head1.png, ...); returns the files written."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise AttnkitError(f"{out}: exists and is not a directory; --out names a directory")
    if png:
        _heatmap_library()  # a missing matplotlib stops before any file is touched
    try:
        out.mkdir(parents=True, exist_ok=True)
        _remove_earlier(out)
        written = write_heatmaps(result, out) if png else []
        page = out / PAGE_FILE
        page.write_text(render_page(result.to_json()), encoding="utf-8")
    except OSError as error:
        raise AttnkitError(f"{out}: cannot write the maps there ({error.strerror or error})") from None
    return [page, *written]


def _remove_earlier(out: Path) -> None:
    """What an earlier `attnkit attention` wrote into `out` (its page, its heatmaps): a new text leaves no stale
    map behind. Nothing else in `out` is touched."""
    (out / PAGE_FILE).unlink(missing_ok=True)
    for slug in SLUGS:
        folder = out / slug
        for png in folder.glob("layer*-head*.png"):
            png.unlink()
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _heatmap_library():
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise AttnkitError(f"PNG heatmaps need matplotlib: {install('viz')} (or --no-png)") from None
    return Figure


def write_heatmaps(result: Attention, out: Path) -> list[Path]:
    Figure = _heatmap_library()
    written = []
    for m in result.maps:
        folder = out / m.slug
        folder.mkdir(parents=True, exist_ok=True)
        columns, rows = (_label(t) for t in m.keys), [_label(t) for t in m.queries]
        columns = list(columns)
        width, height = 2 + 0.22 * len(columns), 1.6 + 0.22 * len(rows)
        for layer, heads in enumerate(m.weights.float().numpy(), 1):
            for head, weights in enumerate(heads, 1):
                figure = Figure(figsize=(max(4.0, width), max(3.5, height)), dpi=100)
                axes = figure.add_subplot()
                image = axes.imshow(weights, cmap="viridis", vmin=0.0, aspect="auto")  # up to this head's largest
                axes.set_xticks(range(len(columns)), columns, rotation=90, fontsize=8)
                axes.set_yticks(range(len(rows)), rows, fontsize=8)
                axes.set_xlabel("attended to (keys)")
                axes.set_ylabel("attending (queries)")
                axes.set_title(f"{m.name}, layer {layer}, head {head}", fontsize=10)
                figure.colorbar(image, ax=axes, fraction=0.04)
                figure.tight_layout()
                path = folder / f"layer{layer}-head{head}.png"
                with warnings.catch_warnings():  # a token in a script the font lacks draws as a box, not an error
                    warnings.simplefilter("ignore", UserWarning)
                    figure.savefig(path)
                written.append(path)
    return written


def _label(token: str) -> str:
    """A token as an axis label: matplotlib reads $...$ as mathematics."""
    return token.replace("$", r"\$")
