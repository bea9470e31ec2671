"""Everything a training run needs before its first step, read and checked before anything is written: the task
and its data, the tokenizer, and the model (new, resumed, or started from a pretrained checkpoint)."""

from __future__ import annotations

import dataclasses
import functools
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from torch import nn

from attnkit import runtime
from attnkit.config import DataConfig, LoraConfig, ModelConfig
from attnkit.data.arrow import split_path
from attnkit.data.item_files import Items
from attnkit.data.tokenizer import SPECIALS, TOKENIZER_FILE, Tokenizer
from attnkit.errors import AttnkitError, AttnkitWarning
from attnkit.files import STATE_DIR, STATE_FILE, check_output
from attnkit.inference.checkpoint import Trained, check_base, fingerprint, read_trained, start_adapted
from attnkit.inference.pipeline import Pipeline
from attnkit.interop.hf import FAMILIES
from attnkit.interop.peft import merge_peft_adapter
from attnkit.nn.lora import add_lora, store_frozen_weights
from attnkit.runtime import Processes
from attnkit.tasks import TASKS, Task, make_task
from attnkit.training.cache import TRAIN_DIR, held_out_indices, tokenized
from attnkit.training.run import FINE_TUNABLE, RunConfig


@dataclasses.dataclass
class Prepared:
    """A run's inputs: examples as read (for metrics) and encoded (items, for batches); the training items are read
    from the token cache (attnkit.training.cache)."""

    task: Task
    tokenizer: Tokenizer
    model: nn.Module
    train_items: Sequence[dict]  # Items from the token cache (a pretraining run's: token blocks)
    dev_examples: list | None
    dev_items: list | None
    test_examples: list | None
    files: dict[str, str]  # each split's file as read: a DatasetDict's split folder, a held-out fraction named
    tokens: str | None  # where the training examples' tokens are, said once the run starts (a mistake is one line)
    lora: LoraConfig | None = None  # with LoRA (rank > 0), its settings; and
    trained: set[str] | None = None  # the weights that train and are saved (the adapters, the head)
    base: dict | None = None  # the base checkpoint's path and fingerprint, which config.json names

    def build(self) -> nn.Module:
        """A new model of the run's shape (its adapters too), for the weights of this one to be loaded into."""
        model = self.task.build_model()
        if self.trained is not None:
            lora = self.lora
            add_lora(model, lora.rank, lora.effective_alpha, lora.dropout, lora.targets)
        return model


def prepare(
    run: RunConfig, resume: bool, overwrite: bool, processes: Processes, say: Callable[[str], None]
) -> Prepared:
    """Read and check the run's inputs, the training file tokenized into the cache (by the first process, while
    the others wait; `say` tells of a large file's progress); with `resume`, the task state, tokenizer and model
    configuration come from the interrupted run in run.out."""
    out = Path(run.out)
    if resume and not (out / STATE_DIR / STATE_FILE).is_file():
        raise AttnkitError(f"{out}: nothing to resume (no {STATE_DIR}/{STATE_FILE})")
    if not resume:  # checked here, by every process, before any writes
        check_output(out, overwrite, "pass --resume to continue it or --overwrite to replace it")
    if not run.data.train:
        raise AttnkitError("data.train: no training file given")
    data, shape = run.data, TASKS[run.task.name]
    files = _files(data)
    # read before the training file is tokenized, so that a mistake in them costs no waiting
    given = {
        split: shape.read(data, files[split]) for split in ("dev", "test") if split in files and not held(data, split)
    }
    init, lora = run.train.init, run.train.lora
    if lora.rank and not init:
        raise AttnkitError("train.lora: LoRA adapts a pretrained checkpoint; give it with --init")
    if run.train.adapter and not init:
        raise AttnkitError("train.adapter: a PEFT adapter is merged into its base; give the base with --init")
    # a LoRA run's base is read again on resuming: its checkpoint holds the adapters and head alone
    source = _source(run) if init and (lora.rank or not resume) else None
    trained = _trained(out) if resume else None
    if trained is not None and trained.base is not None and not lora.rank:
        raise AttnkitError(f"{out}: a LoRA run; resume it as it was started (with --init and --lora)")
    base = _base(run, source, trained)
    if trained is not None:
        _warn_of_ignored_settings(run, trained.model)
    tokenizer = _given_tokenizer(run, resume, source)
    configured = functools.partial(_model_config, run, trained, source)

    check = functools.partial(_check_splits, given=given, files=files, resumed=trained, train=run.data.train)

    if tokenizer is not None:
        _check_family(configured(tokenizer), tokenizer)
    if shape.pretraining:  # `attnkit pretrain` tokenized its text into token files (attnkit.training.corpus)
        task = make_task(run.task, data, tokenizer, configured(tokenizer), _state(trained))
        train_items, held_out, tokens = task.encode(shape.read(data, files["train"]), training=True), {}, None
    else:
        cached = processes.first_does(
            lambda: tokenized(
                run, shape, files["train"], _split_seed(run), tokenizer, special_tokens(run.model), configured,
                _state(trained), check, say,
            )
        )  # fmt: skip
        task, train_items, held_out, tokens = _from_cache(run, shape, files, cached, configured)
    check(task)
    dev_examples, test_examples = held_out.get("dev") or given.get("dev"), held_out.get("test") or given.get("test")
    if dev_examples is not None and run.train.eval_examples:
        dev_examples = dev_examples[: run.train.eval_examples]
    model, trained_names = _model(run, task, source)
    low = runtime.PRECISIONS[run.train.precision]  # the type autocast computes in, if any
    if lora.rank and low is not None and not processes.sharded:  # FSDP shards a layer's weights in one type
        store_frozen_weights(model, low)
    return Prepared(
        task=task,
        tokenizer=task.tokenizer,
        model=model,
        train_items=train_items,
        dev_examples=dev_examples,
        dev_items=task.encode(dev_examples, training=False) if dev_examples else None,
        test_examples=test_examples,
        files=files,
        tokens=tokens,
        lora=lora if lora.rank else None,
        trained=trained_names if lora.rank else None,
        base=base,
    )


def _check_splits(task: Task, given: dict, files: dict, resumed: Trained | None, train: str | None) -> None:
    """Refuse dev and test data this task cannot score (a label never seen in training), saying so where a resumed
    run learned from another training file."""
    for split, examples in given.items():
        task.readable(examples, files[split])
        try:
            task.check(examples, files[split])
        except AttnkitError as error:
            if resumed is None or resumed.data.train == train:
                raise
            raise AttnkitError(
                f"{error}; the run being resumed learned from other data ({resumed.data.train}): resume it with the "
                "files it started with"
            ) from None


def _source(run: RunConfig) -> Pipeline:
    """The checkpoint that --init names, with the PEFT adapter that train.adapter names merged into it."""
    init = run.train.init
    source = Pipeline.load(init, run.train.trust_pickle, device="cpu")
    if len(source.members) > 1:
        raise AttnkitError(f"{init}: an ensemble; fine-tune one of its members ({init}/members/0, ...)")
    if run.train.adapter:
        merge_peft_adapter(source.model, run.train.adapter, init)
    return source


def _base(run: RunConfig, source: Pipeline | None, trained: Trained | None) -> dict | None:
    """A LoRA run's base as its checkpoint names it: the --init path and its weights' fingerprint; on resuming,
    the one the run started from, checked."""
    if source is None or not run.train.lora.rank:
        return None
    base = {"path": str(Path(run.train.init).resolve()), "fingerprint": fingerprint(source.model)}
    if run.train.adapter:  # merged into the base before the run: read again with it
        base["adapter"] = str(Path(run.train.adapter).resolve())
    if trained is not None:
        if trained.base is None:
            raise AttnkitError(f"{run.out}: a run that trained every weight; it cannot go on with train.lora")
        check_base(source.model, trained.base, run.train.init)
    return base


def held(data: DataConfig, split: str) -> float | None:
    """The share of the training file held out as `split` (dev or test), if one is."""
    return {"dev": data.dev_fraction, "test": data.test_fraction}[split]


def _split_seed(run: RunConfig) -> int:
    return run.data.split_seed if run.data.split_seed is not None else run.train.seed


def _files(data: DataConfig) -> dict[str, str]:
    """The file of each split (a DatasetDict's split of each role), or for a held-out split what it is held from."""
    files = {"train": split_path(data.train, (data.split or "train",))}
    for split, path in (("dev", data.dev), ("test", data.test)):
        if held(data, split):
            files[split] = f"{files['train']} ({held(data, split):g} held out)"
        elif path:
            files[split] = split_path(path, SPLITS[split])
    return files


def _from_cache(
    run: RunConfig, shape: type[Task], files: dict[str, str], cached: object, configured: Callable
) -> tuple[Task, Items, dict, str]:
    """The task of the token cache's tokenizer and labels, its training items, the examples it holds out as dev and
    test, and the line that says where the items came from."""
    tokenizer = Tokenizer.load(cached.folder / TOKENIZER_FILE)
    model_config = configured(tokenizer)
    _check_family(model_config, tokenizer)
    task = make_task(run.task, run.data, tokenizer, model_config, cached.state)
    train_items = Items(cached.folder / TRAIN_DIR)
    if cached.held_out["train"] is not None:
        train_items = train_items.subset(cached.held_out["train"])
    limits = {"dev": run.train.eval_examples, "test": None}  # a dev set scored in part is read in part
    held_out = {
        split: _examples_at(shape, run.data, files["train"], indices[: limits[split]])
        for split, indices in cached.held_out.items()
        if split != "train" and indices is not None
    }
    made = "tokenized into" if cached.made else "read from"
    return task, train_items, held_out, f"{len(train_items):,} training examples {made} the token cache {cached.folder}"


def _model(run: RunConfig, task: Task, source: Pipeline | None) -> tuple[nn.Module, set[str]]:
    """The task's new model, started from the --init checkpoint's where there is one (with LoRA, adapted: on
    resuming too), its embeddings frozen if asked; and the names of the weights that train."""
    model = task.build_model()
    trained = set(model.state_dict())
    if source is not None:
        train = run.train
        trained = start_adapted(task, model, source.model, train.init, train.lora, train.trust_pickle)
    if run.train.freeze_embeddings:
        for name, module in model.named_modules():
            if name.split(".")[-1] in ("embedding", "positions"):
                module.requires_grad_(False)
    return model, trained


def _examples_at(shape: type[Task], data: DataConfig, path: str, indices: np.ndarray) -> list:
    """The examples of `path` at `indices` (numbered from 0), in their order."""
    wanted = {int(index): n for n, index in enumerate(indices)}
    found: list = [None] * len(wanted)
    for index, example in enumerate(shape.stream(data, path)):
        n = wanted.get(index)
        if n is not None:
            found[n] = example
    return found


def _state(trained: Trained | None) -> dict | None:
    return trained.state if trained is not None else None


def _given_tokenizer(run: RunConfig, resume: bool, source: Pipeline | None) -> Tokenizer | None:
    """The init checkpoint's, the interrupted run's, or tokenizer.path's; None: one is trained on the training
    examples (attnkit.training.cache)."""
    if source is not None:
        return source.tokenizer
    if resume:
        return Tokenizer.load(run.out)
    if run.tokenizer.path:
        return Tokenizer.load(run.tokenizer.path)
    return None


def _check_family(model_config: ModelConfig, tokenizer: Tokenizer) -> None:
    family = FAMILIES.get(model_config.preset or "")
    needs = family.differences(model_config) if family is not None else []  # what the tokenizer decides: its <pad>
    if needs:
        raise AttnkitError(
            f"tokenizer: model.preset {model_config.preset} needs {', '.join(needs)}, "
            f"and this tokenizer pads with id {tokenizer.pad_id}; leave tokenizer.path unset to train one for it"
        )


def special_tokens(model: ModelConfig) -> list[str]:
    """The special tokens of a vocabulary trained for `model`, in the order its family's code expects."""
    family = FAMILIES.get(model.preset or "")
    return (family.special_tokens if family is not None else None) or SPECIALS


def _model_config(
    run: RunConfig, trained: Trained | None, source: Pipeline | None, tokenizer: Tokenizer
) -> ModelConfig:
    """The saved one when resuming (`trained`); the init checkpoint's (with this run's dropout) when fine-tuning;
    else the run's, sized to the tokenizer."""
    if trained is not None:
        return trained.model
    if source is not None:
        dropouts = {name: getattr(run.model, name) for name in FINE_TUNABLE}
        # the task's (an encoder-decoder's encoder can start a classifier), or for pretraining the checkpoint's own
        arch = TASKS[run.task.name].started_arch(run.model.arch, source.model.config.arch)
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
    """Split a list of examples into train/dev/test as a training run does (held_out_indices)."""
    held = held_out_indices(len(examples), dev_fraction, test_fraction, seed)
    return {split: None if indices is None else [examples[i] for i in indices] for split, indices in held.items()} | (
        {"train": examples} if held["train"] is None else {}
    )


def _trained(out: Path) -> Trained:
    """The interrupted run's saved configuration (its task state and model), which --resume continues."""
    trained = read_trained(out)
    if trained is None:
        raise AttnkitError(f"{out}: a bare model without a task; nothing to resume")
    return trained
