"""`attnkit export`: a trained or pretrained attnkit model written in another format. Today: Hugging Face
directories (config.json, model.safetensors, tokenizer.json) that transformers loads with the same predictions."""

from __future__ import annotations

import os

from attnkit.interop.hf import TaskExport, export_hf
from attnkit.nn import Decoder, Encoder, EncoderDecoder
from attnkit.pipeline import Pipeline, encoder_of
from attnkit.tasks.seq2seq import decoder_start, suppressed


def export(path: str | os.PathLike, out: str | os.PathLike, trust_pickle: bool = False) -> str:
    """Write the model at `path` as a Hugging Face checkpoint in `out`; returns the family it was written as.
    A task model goes with its head: classify and tag as BERT's classes for them, seq2seq with its decoding; a
    pretrained one as the family's plain model."""
    pipeline = Pipeline.load(path, trust_pickle)
    if pipeline.task is None or pipeline.task.name == "pretrain":  # the pretrained model, without its LM head
        model = pipeline.model
        bare = model if isinstance(model, (Encoder, Decoder, EncoderDecoder)) else encoder_of(model)
        return export_hf(bare, pipeline.tokenizer, out, where=str(path))
    return export_hf(pipeline.model, pipeline.tokenizer, out, task_export(pipeline), where=str(path))


def task_export(pipeline: Pipeline) -> TaskExport:
    """What the exported directory must say for transformers to predict as `pipeline` does."""
    task, run, tokenizer = pipeline.task, pipeline.run, pipeline.tokenizer
    if task.name == "classify":
        return TaskExport("classify", task.specials, list(task.labels), max_length=run.data.max_length)
    if task.name == "tag":
        return TaskExport("tag", task.specials, list(task.tags))
    # attnkit's beam search as transformers' generate: the same start, end and suppressed tokens (as
    # Seq2SeqTask.decode), log-probabilities renormalized after suppression, no forced tokens
    generation = {
        "decoder_start_token_id": decoder_start(pipeline.model.config, tokenizer),
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "num_beams": run.task.beam_size,
        "no_repeat_ngram_size": run.task.no_repeat_ngram,
        "max_length": run.data.max_target_length + 1,  # the start token counts in transformers' max_length
        "suppress_tokens": suppressed(tokenizer),
        "renormalize_logits": True,
        "forced_bos_token_id": None,
        "forced_eos_token_id": None,
        "do_sample": False,
    }
    if run.task.beam_size > 1:  # transformers refuses beam settings without beams
        generation.update(length_penalty=run.task.length_penalty, early_stopping=False)
    return TaskExport("seq2seq", task.specials, max_length=run.data.max_length, generation=generation)
