"""CTranslate2 (github.com/OpenNMT/CTranslate2) as an engine: attnkit's weights written through its model
specifications (`ctranslate2.specs`), and models that run on it.

An encoder-decoder becomes a `ctranslate2.Translator`, a decoder a `ctranslate2.Generator`; both decode whole
outputs themselves (nn.decoding.DecodingEngine). A task model's encoder becomes a `ctranslate2.Encoder` whose last
states feed the task's own head, which stays in PyTorch. Tokens cross as strings: the vocabulary is the tokenizer's,
one entry per id, and every id is mapped both ways here, so that no text is re-tokenized.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from attnkit.config import ModelConfig
from attnkit.data.tokenizer import Tokenizer
from attnkit.errors import AttnkitError, install
from attnkit.nn import Decoder, Encoder, EncoderDecoder, EncoderEngine
from attnkit.nn.decoding import DecodingEngine, Sampling
from attnkit.nn.positions import SinusoidalPositions

QUANTIZATIONS = ("float32", "int8", "int8_float32", "int8_float16", "int8_bfloat16", "float16", "bfloat16")
CT2_DIR = "ctranslate2"  # inside an attnkit checkpoint written with `attnkit export --ct2`
INSTALL = f"the CTranslate2 engine needs the ct2 extra: {install('ct2')}"
# a folder written by `attnkit export --ct2` also holds its PyTorch weights
OR_TORCH = "; or run its PyTorch weights: --engine torch (attnkit.load(path, engine='torch'))"
SINUSOID_ROWS = (
    4096  # positions of the sinusoidal table written out (CTranslate2's own sinusoids differ from attnkit's)
)
_ACTIVATIONS = {  # attnkit's activation -> (CTranslate2's, gated)
    "relu": ("RELU", False),
    "gelu": ("GELU", False),
    "gelu_tanh": ("GELUTanh", False),
    "silu": ("SWISH", False),
    "swiglu": ("SWISH", True),
    "geglu": ("GELU", True),
    "geglu_tanh": ("GELUTanh", True),
}


def ctranslate2_module():  # noqa: ANN201 - the module, imported on first use
    try:
        import ctranslate2
    except ImportError:
        raise AttnkitError(INSTALL) from None
    return ctranslate2


def check_supported(config: ModelConfig, where: str) -> None:
    """One line on what of `config` CTranslate2 cannot represent, if anything."""
    reason = None
    if config.positions == "none":
        reason = "model.positions=none (CTranslate2 always adds positions)"
    elif config.positions == "learned+relative":
        reason = "model.positions=learned+relative (MPNet's: CTranslate2 has relative buckets or a table, not both)"
    elif config.positions == "alibi" and config.arch != "decoder":
        reason = "model.positions=alibi in an encoder (CTranslate2 has ALiBi in decoder-only models)"
    elif config.embedding_width != config.dim:
        reason = "model.embedding_dim (ELECTRA's projection of the embeddings)"
    if reason is not None:
        raise AttnkitError(f"{where}: CTranslate2 cannot represent {reason}; use the torch engine or ONNX")


def has_ct2(path: str | os.PathLike) -> bool:
    """Whether the checkpoint folder `path` holds a CTranslate2 model (`attnkit export --ct2`)."""
    return (Path(path) / CT2_DIR).is_dir()


def on_ct2(
    model: nn.Module, tokenizer: Tokenizer, folder: Path | None, place: torch.device, int8: bool, where: str
) -> nn.Module:
    """`model` run by CTranslate2 on `place`: an encoder-decoder or a decoder as a whole, a task model with its
    encoder replaced (its head stays). The CTranslate2 model is `folder`'s own, or (None) `model` converted now;
    `int8` computes in int8 (weights converted as they load, where they are not int8 already)."""
    try:
        core = ct2_core(model, where)
    except AttnkitError as error:
        raise AttnkitError(f"{error}{OR_TORCH}" if folder is not None else str(error)) from None
    options = {
        "device": place.type,
        "device_index": place.index or 0,
        "compute_type": ("int8" if place.type == "cpu" else "int8_float16") if int8 else "default",
        "intra_threads": torch.get_num_threads(),
    }
    with tempfile.TemporaryDirectory(prefix="attnkit-ct2-") as scratch:  # CTranslate2 reads it whole on loading
        if folder is None:
            write_ct2(core, tokenizer, scratch, "int8" if int8 else "float32", where)
            source = scratch
        else:
            source = str(folder / CT2_DIR)
        try:
            if isinstance(core, EncoderDecoder):
                return CT2Translator(source, core.config, tokenizer, options)
            if isinstance(core, Decoder):
                return CT2Generator(source, core.config, tokenizer, options)
            engine = CT2Encoder(source, core.config, core.segments is not None, options)
        except (RuntimeError, ValueError, OSError) as error:  # a damaged or partial folder
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise AttnkitError(f"{source}: CTranslate2 cannot read this model ({reason}){OR_TORCH}") from None
        if core is model:
            return engine
        name = next(name for name, module in model.named_modules() if module is core)
        parent, _, attribute = name.rpartition(".")
        setattr(model.get_submodule(parent), attribute, engine)
        return model


def ct2_core(model: nn.Module, where: str) -> nn.Module:
    """What of `model` CTranslate2 runs: an encoder-decoder or a decoder as a whole, a task model's encoder; one line
    on what it cannot represent, or without the ct2 extra, how to install it."""
    ctranslate2_module()
    core = model if isinstance(model, (EncoderDecoder, Decoder)) else _encoder_in(model, where)
    check_supported(core.config, where)
    return core


def ct2_installed() -> bool:
    """Whether the ct2 extra (CTranslate2) is installed."""
    try:
        ctranslate2_module()
    except AttnkitError:
        return False
    return True


def runs_on_ct2(model: nn.Module) -> bool:
    """Whether CTranslate2 is installed and has a form of `model` (what --int8 takes where it can)."""
    try:
        ct2_core(model, "")
    except AttnkitError:
        return False
    return True


def _encoder_in(model: nn.Module, where: str) -> Encoder:
    """The one attnkit Encoder inside a task model."""
    # a tagger's word shapes are added to the embeddings, which CTranslate2 reads from token ids only
    if isinstance(getattr(model, "shapes", None), nn.Module):
        raise AttnkitError(f"{where}: CTranslate2 cannot add word shapes to the embeddings (task.word_shapes)")
    if isinstance(getattr(model, "decoder", None), Decoder):
        raise AttnkitError(f"{where}: CTranslate2 runs a decoder for its next tokens, not its states for a task's head")
    found = [module for module in model.modules() if isinstance(module, Encoder)]
    if len(found) != 1:
        raise AttnkitError(
            f"{where}: CTranslate2 runs one encoder, a decoder or an encoder-decoder; this model has "
            f"{len(found)} encoders"
        )
    return found[0]


def vocabulary(tokenizer: Tokenizer, size: int) -> list[str]:
    """One token string per id up to `size`; holes and the ids past the tokenizer's get placeholder names."""
    tokens = [f"<ct2_unused_{i}>" for i in range(size)]
    for token, i in tokenizer.backend.get_vocab(with_added_tokens=True).items():
        if i < size:
            tokens[i] = token
    return tokens


def write_ct2(model: nn.Module, tokenizer: Tokenizer, out: str | os.PathLike, quantization: str, where: str) -> None:
    """`model` (an Encoder, a Decoder or an EncoderDecoder) as a CTranslate2 model in `out`, its weights quantized
    as `quantization` says (one of QUANTIZATIONS). An encoder-decoder's config names no start token: the engine
    gives it as each output's prefix (its task's start)."""
    ctranslate2 = ctranslate2_module()
    config: ModelConfig = model.config
    if quantization not in QUANTIZATIONS:
        raise AttnkitError(f"quantization {quantization!r}: choose one of {', '.join(QUANTIZATIONS)}")
    specs = ctranslate2.specs
    tokens = vocabulary(tokenizer, config.vocab_size)
    names = {"unk_token": tokens[tokenizer.unk_id] if tokenizer.unk_id is not None else tokens[tokenizer.pad_id]}
    names.update(eos_token=tokens[tokenizer.eos_id], bos_token=tokens[tokenizer.bos_id or tokenizer.eos_id])
    if isinstance(model, EncoderDecoder):
        spec = specs.TransformerSpec(_encoder_spec(specs, model.encoder), _decoder_spec(specs, model.decoder, True))
        spec.register_source_vocabulary(tokens)
        spec.register_target_vocabulary(vocabulary(tokenizer, config.output_vocab_size))
        names["decoder_start_token"] = None
    elif isinstance(model, Decoder):
        spec = specs.TransformerDecoderModelSpec(_decoder_spec(specs, model, False))
        spec.register_vocabulary(tokens)
    else:
        spec = specs.TransformerEncoderModelSpec(_encoder_spec(specs, model))
        spec.register_vocabulary(tokens)
    for key, value in names.items():
        setattr(spec.config, key, value)
    spec.config.layer_norm_epsilon = config.norm_eps
    spec.validate()
    spec.optimize(quantization=quantization)
    Path(out).mkdir(parents=True, exist_ok=True)
    spec.save(str(out))


def _numpy(tensor: Tensor) -> np.ndarray:
    """A copy: CTranslate2's quantization rewrites the arrays it is given, which would be the model's own weights."""
    return tensor.detach().float().cpu().numpy().copy()


def _stack_spec(spec, stack: Encoder | Decoder) -> None:  # noqa: ANN001
    """What encoder and decoder share: embeddings, their scale and norm, positions, the final norm, the layers."""
    config = stack.config
    table = stack.embedding.weight
    (spec.embeddings[0] if isinstance(spec.embeddings, list) else spec.embeddings).weight = _numpy(table)
    spec.scale_embeddings = float(stack.embed_scale) if stack.embed_scale != 1.0 else False
    if stack.embed_norm is not None:
        _norm(spec.layernorm_embedding, stack.embed_norm)
    if stack.final_norm is not None:
        _norm(spec.layer_norm, stack.final_norm)
    positions = stack.positions
    if isinstance(positions, SinusoidalPositions):
        rows = torch.zeros(1, SINUSOID_ROWS, config.embedding_width)
        spec.position_encodings.encodings = _numpy(positions.add_to(rows, 0)[0])
    elif config.positions == "learned":
        spec.position_encodings.encodings = _numpy(positions.table.weight)
    for layer_spec, layer in zip(spec.layer, stack.layers):
        _attention(layer_spec.self_attention, layer.self_attn, layer.self_attn_norm, config)
        if config.positions == "relative":
            layer_spec.self_attention.relative_attention_bias = _numpy(positions.bias.weight)
            layer_spec.self_attention.relative_attention_max_distance = np.int32(config.relative_max_distance)
        if getattr(layer, "cross_attn", None) is not None:
            _attention(layer_spec.attention, layer.cross_attn, layer.cross_attn_norm, config)
        ffn = layer_spec.ffn
        _norm(ffn.layer_norm, layer.ff_norm)
        weight, bias = layer.ff.in_proj.weight, layer.ff.in_proj.bias
        if layer.ff.gated:  # attnkit's [gate | up] -> CTranslate2's activated linear_0 and plain linear_0_noact
            half = weight.shape[0] // 2
            _linear(ffn.linear_0, weight[:half], None if bias is None else bias[:half])
            _linear(ffn.linear_0_noact, weight[half:], None if bias is None else bias[half:])
        else:
            _linear(ffn.linear_0, weight, bias)
        _linear(ffn.linear_1, layer.ff.out_proj.weight, layer.ff.out_proj.bias)


def _flags(specs, config: ModelConfig) -> dict:  # noqa: ANN001
    activation, gated = _ACTIVATIONS[config.activation]
    flags = {
        "pre_norm": config.norm_first,
        "activation": getattr(specs.Activation, activation),
        "layernorm_embedding": config.embedding_norm,
        "ffn_glu": gated,
        "rms_norm": config.norm == "rmsnorm",
        "relative_attention_bias": config.positions == "relative",
    }
    if config.positions == "rotary":  # attnkit rotates the two halves of each head (GPT-NeoX's layout)
        flags.update(rotary_dim=0, rotary_interleave=False, rotary_base=config.rotary_base)
        if config.rotary_scaling != "none":
            kind = {"linear": "Linear", "llama3": "Llama3"}[config.rotary_scaling]
            flags.update(
                rotary_scaling_type=getattr(specs.RotaryScalingType, kind),
                rotary_scaling_factor=config.rotary_factor,
                original_max_position_embeddings=config.rotary_original_positions,
            )
    if config.kv_heads != config.num_heads:  # grouped-query attention
        flags["num_heads_kv"] = config.kv_heads
    if config.head_dim * config.num_heads != config.dim:  # heads of a width of their own (Gemma)
        flags["head_dim"] = config.head_dim
    return flags


def _encoder_spec(specs, encoder: Encoder):  # noqa: ANN001, ANN202
    config = encoder.config
    segments = 2 if encoder.segments is not None else 1
    flags = _flags(specs, config)
    flags.pop("original_max_position_embeddings", None)  # a decoder's setting only
    spec = specs.TransformerEncoderSpec(
        config.num_layers,
        config.num_heads,
        num_source_embeddings=segments,
        embeddings_merge=specs.EmbeddingsMerge.ADD,
        **flags,
    )
    _stack_spec(spec, encoder)
    if encoder.segments is not None:
        # CTranslate2 scales the sum of the embeddings; attnkit adds the segment's after scaling the token's
        spec.embeddings[1].weight = _numpy(encoder.segments.weight / encoder.embed_scale)
    return spec


def _decoder_spec(specs, decoder: Decoder, cross: bool):  # noqa: ANN001, ANN202
    config = decoder.config
    flags = _flags(specs, config)
    if not cross:
        flags["alibi"] = config.positions == "alibi"
    spec = specs.TransformerDecoderSpec(len(decoder.layers), config.num_heads, with_encoder_attention=cross, **flags)
    _stack_spec(spec, decoder)
    if config.rotary_scaling == "llama3":  # the scaling's other two settings, which the layers hold
        for layer in spec.layer:
            layer.self_attention.rotary_low_freq_factor = config.rotary_low_freq_factor
            layer.self_attention.rotary_high_freq_factor = config.rotary_high_freq_factor
    _linear(spec.projection, decoder.output.weight, decoder.output.bias)
    if config.output_scale != 1.0:
        spec.scale_outputs = np.float32(config.output_scale)
    return spec


def _attention(spec, attention: nn.Module, norm: nn.Module, config: ModelConfig) -> None:  # noqa: ANN001
    _norm(spec.layer_norm, norm)
    if config.attention_scale is not None:
        spec.queries_scale = np.float32(config.attention_scale)
    if attention.cross:
        _linear(spec.linear[0], attention.q_proj.weight, attention.q_proj.bias)
        _linear(spec.linear[1], attention.kv_proj.weight, attention.kv_proj.bias)
    else:
        _linear(spec.linear[0], attention.qkv_proj.weight, attention.qkv_proj.bias)
    _linear(spec.linear[-1], attention.out_proj.weight, attention.out_proj.bias)


def _linear(spec, weight: Tensor, bias: Tensor | None) -> None:  # noqa: ANN001
    spec.weight = _numpy(weight)
    if bias is not None:
        spec.bias = _numpy(bias)


def _norm(spec, norm: nn.Module) -> None:  # noqa: ANN001
    spec.gamma = _numpy(norm.weight)
    if getattr(norm, "bias", None) is not None:
        spec.beta = _numpy(norm.bias)


class _Vocabulary:
    """Token ids to CTranslate2's token strings and back."""

    def __init__(self, tokenizer: Tokenizer, size: int) -> None:
        self.tokens = vocabulary(tokenizer, size)
        self.ids = {token: i for i, token in enumerate(self.tokens)}

    def strings(self, rows: list[list[int]]) -> list[list[str]]:
        return [[self.tokens[i] for i in row] for row in rows]


def _rows(source: Tensor, mask: Tensor | None) -> list[list[int]]:
    """Each row's real tokens (padding dropped)."""
    rows = source.tolist()
    if mask is None:
        return rows
    return [row[:length] for row, length in zip(rows, mask.sum(1).tolist())]


def _options(vocab: _Vocabulary, eos_id: int, beam_size: int, sampling: Sampling | None, settings: dict) -> dict:
    """CTranslate2's decoding options for attnkit's settings."""
    options = {
        "beam_size": beam_size,
        "length_penalty": settings["length_penalty"],
        "no_repeat_ngram_size": settings["no_repeat_ngram"],
        "suppress_sequences": [[vocab.tokens[i]] for i in settings["suppress"]] or None,
        "end_token": [vocab.tokens[i] for i in settings.get("ends", [eos_id])],
        "repetition_penalty": settings.get("repetition_penalty", 1.0),
    }
    if sampling is not None:
        if sampling.seed is not None:  # github.com/OpenNMT/CTranslate2/issues/1757 (4.8.5 draws anew each time)
            raise AttnkitError(
                "CTranslate2 does not draw the same samples for the same seed: leave the seed out, or sample with "
                "--engine torch"
            )
        options.update(
            sampling_topk=sampling.top_k, sampling_topp=sampling.top_p, sampling_temperature=sampling.temperature
        )
    return options


class CT2Translator(DecodingEngine):
    """An encoder-decoder on `ctranslate2.Translator`."""

    def __init__(self, folder: str, config: ModelConfig, tokenizer: Tokenizer, options: dict) -> None:
        super().__init__(config)
        self.translator = ctranslate2_module().Translator(folder, **options)
        self.source = _Vocabulary(tokenizer, config.vocab_size)
        self.target = _Vocabulary(tokenizer, config.output_vocab_size)

    def decode(self, source, source_mask, eos_id, max_new_tokens, start_id, beam_size, sampling, stream, settings):  # noqa: ANN001, ANN201
        rows = self.source.strings(_rows(source, source_mask))
        prefix = [[self.target.tokens[start_id]] for _ in rows]  # the model's config names no start token
        options = _options(self.target, eos_id, beam_size, sampling, settings)
        options.update(max_decoding_length=max_new_tokens, min_decoding_length=0, max_input_length=0)
        if stream is not None:
            steps = self.translator.generate_tokens(rows[0], prefix[0], **_step_options(options))
            return [_streamed(steps, settings.get("ends", [eos_id]), stream)]
        results = self.translator.translate_batch(rows, prefix, **options)
        return [[self.target.ids[t] for t in result.hypotheses[0]] for result in results]


class CT2Generator(DecodingEngine):
    """A decoder-only language model on `ctranslate2.Generator`: it continues prompts."""

    def __init__(self, folder: str, config: ModelConfig, tokenizer: Tokenizer, options: dict) -> None:
        super().__init__(config)
        self.generator = ctranslate2_module().Generator(folder, **options)
        self.vocab = _Vocabulary(tokenizer, config.vocab_size)

    def decode(self, source, source_mask, eos_id, max_new_tokens, start_id, beam_size, sampling, stream, settings):  # noqa: ANN001, ANN201
        rows = self.vocab.strings(_rows(source, None))
        options = _options(self.vocab, eos_id, beam_size, sampling, settings)
        options.update(max_length=max_new_tokens, min_length=0)
        if stream is not None:
            steps = self.generator.generate_tokens(rows[0], **_step_options(options))
            return [_streamed(steps, settings.get("ends", [eos_id]), stream)]
        results = self.generator.generate_batch(rows, include_prompt_in_result=False, **options)
        return [list(result.sequences_ids[0]) for result in results]


def _step_options(options: dict) -> dict:
    """generate_tokens decodes one path: greedy or sampled, no beams."""
    return {key: value for key, value in options.items() if key not in ("beam_size", "length_penalty")}


def _streamed(steps, ends: list[int], stream: Callable[[Tensor], Tensor | None]) -> list[int]:  # noqa: ANN001
    """The ids of one streamed output, each passed to `stream` as attnkit's decoding does ((1, 1) tensors), until an
    end token or a stop that `stream` reports."""
    ids = []
    for step in steps:
        stopped = stream(torch.tensor([[step.token_id]]))
        if step.token_id in ends:
            break
        ids.append(step.token_id)
        if stopped is not None and bool(stopped.any()):
            break
    return ids


class CT2Encoder(EncoderEngine):
    """An attnkit Encoder's place (a bare one, or in a task model) run by `ctranslate2.Encoder`."""

    def __init__(self, folder: str, config: ModelConfig, segments: bool, options: dict) -> None:
        super().__init__(config)
        self.encoder = ctranslate2_module().Encoder(folder, **options)
        self.segments = segments

    def forward(
        self,
        tokens: Tensor,
        mask: Tensor | None = None,
        features: Tensor | None = None,
        segments: Tensor | None = None,
        first_only: bool = False,  # CTranslate2 computes every position; the first is among them
    ) -> Tensor:
        rows = _rows(tokens, mask)
        types = None
        if self.segments:
            types = _rows(segments, mask) if segments is not None else [[0] * len(row) for row in rows]
        states = self.encoder.forward_batch(rows, token_type_ids=types).last_hidden_state
        hidden = torch.as_tensor(np.asarray(states)) if states.device == "cpu" else torch.as_tensor(states)
        hidden = hidden.to(self.anchor.device, torch.float32)
        missing = tokens.shape[1] - hidden.shape[1]
        return hidden if missing <= 0 else nn.functional.pad(hidden, (0, 0, 0, missing))
