"""Everything a training run needs before its first step, read and checked before anything is written: the task
and its data, the tokenizer, and the model (new, resumed, or started from a pretrained checkpoint)."""

from __future__ import annotations

import dataclasses
import random
import warnings
from pathlib import Path

from torch import nn

from attnkit.config import ModelConfig
from attnkit.data.arrow import split_path
from attnkit.data.tokenizer import SPECIALS, Tokenizer
from attnkit.errors import AttnkitError, AttnkitWarning
from attnkit.files import STATE_DIR, STATE_FILE, check_output
from attnkit.inference.checkpoint import Trained, read_trained
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.hf import FAMILIES
from attnkit.tasks import TASKS, Task, make_task
from attnkit.training.run import FINE_TUNABLE, RunConfig


@dataclasses.dataclass
class Prepared:
    """A run's inputs: examples as read (for metrics) and encoded (items, for batches)."""

    task: Task
    tokenizer: Tokenizer
    model: nn.Module
    train_items: list
    dev_examples: list | None
    dev_items: list | None
    test_examples: list | None
    files: dict[str, str]  # each split's file as read: a DatasetDict's split folder, a held-out fraction named


def prepare(run: RunConfig, resume: bool, overwrite: bool) -> Prepared:
    """Read and check the run's inputs; with `resume`, the task state, tokenizer and model configuration come
    from the interrupted run in run.out."""
    out = Path(run.out)
    if resume and not (out / STATE_DIR / STATE_FILE).is_file():
        raise AttnkitError(f"{out}: nothing to resume (no {STATE_DIR}/{STATE_FILE})")
    if not resume:  # checked here, by every process, before any writes
        check_output(out, overwrite, "pass --resume to continue it or --overwrite to replace it")
    if not run.data.train:
        raise AttnkitError("data.train: no training file given")
    data, shape = run.data, TASKS[run.task.name]
    # read before any task exists: a new tokenizer learns from the training examples, and the task needs it
    split_seed = data.split_seed if data.split_seed is not None else run.train.seed
    files = {"train": split_path(data.train, (data.split or "train",))}  # a DatasetDict: the split of each role
    held_out = hold_out(shape.read(data, files["train"]), data.dev_fraction, data.test_fraction, split_seed)
    for split, path, fraction in (("dev", data.dev, data.dev_fraction), ("test", data.test, data.test_fraction)):
        if held_out[split]:
            files[split] = f"{files['train']} ({fraction:g} held out)"
        elif path:
            files[split] = split_path(path, SPLITS[split])
    given = {
        split: shape.read(data, files[split]) for split in ("dev", "test") if split in files and not held_out[split]
    }
    init = run.train.init
    source = Pipeline.load(init, run.train.trust_pickle, device="cpu") if init and not resume else None
    if source is not None and len(source.members) > 1:
        raise AttnkitError(f"{init}: an ensemble; fine-tune one of its members ({init}/members/0, ...)")
    tokenizer = _tokenizer(run, resume, source, shape, held_out["train"])
    model_config = _model_config(run, resume, source, tokenizer)
    family = FAMILIES.get(model_config.preset or "")
    needs = family.differences(model_config) if family is not None else []  # what the tokenizer decides: its <pad>
    if needs:
        raise AttnkitError(
            f"tokenizer: model.preset {model_config.preset} needs {', '.join(needs)}, "
            f"and this tokenizer pads with id {tokenizer.pad_id}; leave tokenizer.path unset to train one for it"
        )
    task = make_task(run.task, data, tokenizer, model_config, _trained(out).state if resume else None)
    if not resume:
        try:
            task.fit(held_out["train"])
        except AttnkitError as error:  # what the training file as a whole lacks (a second label)
            raise AttnkitError(f"{data.train}: {error}") from None
    for split, examples in given.items():
        task.readable(examples, files[split])
        task.check(examples, files[split])
    dev_examples, test_examples = held_out["dev"] or given.get("dev"), held_out["test"] or given.get("test")
    if dev_examples is not None and run.train.eval_examples:
        dev_examples = dev_examples[: run.train.eval_examples]

    model = task.build_model()
    if source is not None:
        task.initialize(model, source.model, init, run.train.trust_pickle)
    if run.train.freeze_embeddings:
        for name, module in model.named_modules():
            if name.split(".")[-1] in ("embedding", "positions"):
                module.requires_grad_(False)

    return Prepared(
        task=task,
        tokenizer=tokenizer,
        model=model,
        train_items=task.encode(held_out["train"], training=True),
        dev_examples=dev_examples,
        dev_items=task.encode(dev_examples, training=False) if dev_examples else None,
        test_examples=test_examples,
        files=files,
    )


def _tokenizer(run: RunConfig, resume: bool, source: Pipeline | None, shape: type[Task], examples: list) -> Tokenizer:
    """The init checkpoint's, the interrupted run's, or tokenizer.path's; else one trained on the texts of the
    training `examples`."""
    if source is not None:
        return source.tokenizer
    if resume:
        return Tokenizer.load(run.out)
    if run.tokenizer.path:
        return Tokenizer.load(run.tokenizer.path)
    return Tokenizer.train(shape.tokenizer_texts(examples), run.tokenizer, special_tokens(run.model))


def special_tokens(model: ModelConfig) -> list[str]:
    """The special tokens of a vocabulary trained for `model`, in the order its family's code expects."""
    family = FAMILIES.get(model.preset or "")
    return (family.special_tokens if family is not None else None) or SPECIALS


def _model_config(run: RunConfig, resume: bool, source: Pipeline | None, tokenizer: Tokenizer) -> ModelConfig:
    """The saved one when resuming; the init checkpoint's (with this run's dropout) when fine-tuning; else the
    run's, sized to the tokenizer."""
    if resume:
        saved = _trained(Path(run.out)).model
        _warn_of_ignored_settings(run, saved)
        return saved
    if source is not None:
        dropouts = {name: getattr(run.model, name) for name in FINE_TUNABLE}
        arch = run.model.arch  # the task's: an encoder-decoder's encoder can start a classifier
        # a BART encoder alone is no family's architecture; a BERT's segments stay with an encoder of its own
        same = arch == source.model.config.arch
        kept = {"preset": source.model.config.preset, "segments": source.model.config.segments} if same else {}
        return dataclasses.replace(
            source.model.config, arch=arch, **{"preset": None, "segments": 0, **kept}, **dropouts
        )
    return dataclasses.replace(run.model, vocab_size=tokenizer.vocab_size, pad_id=tokenizer.pad_id)


TOKENIZER_DECIDES = {"vocab_size", "target_vocab_size", "pad_id"}
SPLITS = {"dev": ("validation", "dev"), "test": ("test",)}  # a DatasetDict's split for data.dev and data.test


def _warn_of_ignored_settings(run: RunConfig, saved: ModelConfig) -> None:
    """A resumed run keeps the model it was training: one warning names each model setting given now that differs."""
    given, kept = dataclasses.asdict(run.model), dataclasses.asdict(saved)
    settable = FINE_TUNABLE if run.train.init else set(kept) - TOKENIZER_DECIDES
    ignored = [
        f"model.{name}={given[name]!r} (it has {kept[name]!r})"
        for name in sorted(settable)
        if given[name] != kept[name]
    ]
    if ignored:
        warnings.warn(
            f"{run.out}: --resume continues the model it was training and ignores {', '.join(ignored)}; "
            "train into a new --out to change them",
            AttnkitWarning,
            stacklevel=3,
        )


def hold_out(examples: list, dev_fraction: float | None, test_fraction: float | None, seed: int) -> dict:
    """Split one file into train/dev/test at random (the same split for the same seed); the held-out parts are
    None when their fraction is unset."""
    if not dev_fraction and not test_fraction:
        return {"train": examples, "dev": None, "test": None}
    shuffled = list(examples)
    random.Random(seed).shuffle(shuffled)
    dev_count, test_count = (round(len(shuffled) * (f or 0)) for f in (dev_fraction, test_fraction))
    if (
        len(shuffled) - dev_count - test_count < 1
        or (dev_fraction and not dev_count)
        or (test_fraction and not test_count)
    ):
        raise AttnkitError(f"data: {len(examples)} examples are too few to hold out dev/test fractions")
    return {
        "dev": shuffled[:dev_count] or None,
        "test": shuffled[dev_count : dev_count + test_count] or None,
        "train": shuffled[dev_count + test_count :],
    }


def _trained(out: Path) -> Trained:
    """The interrupted run's saved configuration (its task state and model), which --resume continues."""
    trained = read_trained(out)
    if trained is None:
        raise AttnkitError(f"{out}: a bare model without a task; nothing to resume")
    return trained
