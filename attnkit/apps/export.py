"""`attnkit export`: a trained or pretrained attnkit model (or an imported one) written as a Hugging Face directory
(config.json, model.safetensors, tokenizer.json) that transformers loads with the same predictions, or as a
checkpoint that carries a CTranslate2 model; the ONNX form is attnkit.apps.onnx_export's. What is written for a task,
its head and settings, is the task's to say."""

from __future__ import annotations

import os
from pathlib import Path

from attnkit.apps.card import model_card, read_facts
from attnkit.errors import AttnkitError
from attnkit.files import GENERATION_FILE, atomic_directory, write_json
from attnkit.inference.checkpoint import (
    copy_checkpoint,
    merged_sections,
    read_ensemble,
    read_model,
    read_trained,
    write_checkpoint,
)
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.ct2 import CT2_DIR, ct2_core, write_ct2
from attnkit.interop.hf import export_hf, is_hf_directory
from attnkit.interop.peft import write_peft


def export(path: str | os.PathLike, out: str | os.PathLike, trust_pickle: bool = False) -> str:
    """Write the model at `path` as a Hugging Face checkpoint in `out`; returns the family it was written as.
    A task model goes with its head (classify, pair and regress as the family's sequence classifier, tag as its
    token classifier), seq2seq with its decoding; a pretrained one as the family's plain model."""
    pipeline = Pipeline.load(path, trust_pickle)
    _refuse_an_ensemble(pipeline, path)
    task, facts, arch = pipeline.task.hf_export(pipeline.model), read_facts(path), pipeline.model.config.arch
    task.generation = task.generation or pipeline.generation  # a task's own decoding, else the checkpoint's defaults

    def readme(family: str) -> str:
        return model_card(facts, family, task, arch, str(out), pipeline.task.columns)

    return export_hf(task, pipeline.tokenizer, out, where=str(path), readme=readme)


def export_peft(path: str | os.PathLike, out: str | os.PathLike, trust_pickle: bool = False) -> str:
    """Write the LoRA run at `path` as a PEFT adapter folder in `out` (its adapters and head, for the Hugging Face
    model of its base); returns PEFT's task type (SEQ_CLS, ...)."""
    try:
        trained = read_trained(path) if read_ensemble(path) is None else None
    except AttnkitError:  # a Hugging Face folder, a GGUF file
        trained = None
    if trained is None or trained.base is None:
        raise AttnkitError(f"{path}: not a LoRA run (attnkit train --lora RANK); export it whole with --out alone")
    base = trained.base["path"]
    if "adapter" in trained.base:
        raise AttnkitError(
            f"{path}: its base had a PEFT adapter merged in (train.adapter), which PEFT cannot stack beneath these "
            "adapters; export the run merged instead"
        )
    if not is_hf_directory(base):
        raise AttnkitError(
            f"{path}: its base {base} is no Hugging Face folder, and PEFT adapts transformers models; export the "
            "run merged instead"
        )
    read = read_model(Path(path), trust_pickle, merged=False)
    task = read.task.hf_export(read.model)
    lora = trained.lora
    return write_peft(task, read.tokenizer, lora.rank, lora.effective_alpha, base, out, str(path))


def export_ct2(path: str | os.PathLike, out: str | os.PathLike, quantization: str, trust_pickle: bool = False) -> None:
    """`out`: the checkpoint at `path` as attnkit loads it (config.json, model.safetensors, tokenizer.json; an
    imported one as attnkit's) and its CTranslate2 model in `out`/ctranslate2, weights stored as `quantization`.
    attnkit runs such a folder on CTranslate2 by default; ctranslate2.Translator (or Generator, Encoder) reads the
    subfolder directly. A task model's head stays in model.safetensors: CTranslate2 runs the encoder under it."""
    pipeline = Pipeline.load(path, trust_pickle, device="cpu")
    _refuse_an_ensemble(pipeline, path)
    core = ct2_core(pipeline.model, str(path))  # what CTranslate2 cannot run is refused before anything is written
    with atomic_directory(out) as tmp:
        sections = merged_sections(path)
        if sections is not None:  # a LoRA run: its merged weights, which need no base
            write_checkpoint(tmp, pipeline.model, pipeline.tokenizer, sections)
        elif pipeline.origin != "attnkit":  # a Hugging Face folder or a GGUF file: written as an attnkit checkpoint
            write_checkpoint(tmp, pipeline.model, pipeline.tokenizer)
            if pipeline.generation:  # its end tokens and sampling defaults, as transformers writes them
                write_json(tmp / GENERATION_FILE, pipeline.generation)
        else:
            copy_checkpoint(Path(path), tmp)
        write_ct2(core, pipeline.tokenizer, tmp / CT2_DIR, quantization, str(path))


def _refuse_an_ensemble(pipeline: Pipeline, path: str | os.PathLike) -> None:
    if len(pipeline.members) > 1:
        raise AttnkitError(
            f"{path}: an ensemble of {len(pipeline.members)} models is no one Hugging Face model; export each of "
            f"{path}/members/0, {path}/members/1, ... (or the ensemble with --onnx: every member, one manifest)"
        )
