"""A trained model's facts, as its run left them: the task and labels, the data it learned from (files, examples,
bytes), its dev and test figures, and the settings that matter. `attnkit info` prints them; `attnkit export` writes
them as the Hugging Face folder's README.md (a model card), with how to load it with transformers."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from attnkit.files import CONFIG_FILE, LOG_FILE
from attnkit.interop.hf import TaskExport

# the run's settings a reader of the card needs to judge or repeat it, by section
SETTINGS = {
    "model": ("arch", "dim", "num_layers", "num_decoder_layers", "num_heads", "ff_dim", "positions", "vocab_size"),
    "train": ("init", "epochs", "max_steps", "lr", "batch_tokens", "precision", "seed"),
}
# transformers' class for each kind of head (TaskExport.head) or model, to load the exported folder with
AUTO_CLASSES = {
    "sequence": "AutoModelForSequenceClassification",
    "token": "AutoModelForTokenClassification",
    "encoder-decoder": "AutoModelForSeq2SeqLM",
    "decoder": "AutoModelForCausalLM",
    "encoder": "AutoModel",
}


@dataclass
class Facts:
    task: str
    labels: list[str] = field(default_factory=list)
    data: dict[str, dict] = field(default_factory=dict)  # split -> {"file", "examples", "bytes"}
    figures: dict[str, dict[str, float]] = field(default_factory=dict)  # "dev" / "test" -> metric -> value
    settings: dict[str, object] = field(default_factory=dict)  # "model.dim" -> 384, "train.lr" -> 1e-4
    steps: int | None = None
    minutes: float | None = None


def read_facts(path: str | os.PathLike) -> Facts | None:
    """What the checkpoint at `path` says of its run: its config.json, and its log.jsonl where the run left one;
    None for a model no attnkit run trained (an import)."""
    folder = Path(path)
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(config, dict) or "task" not in config or not isinstance(config["task"], dict):
        return None
    state = config.get("task_state") or {}
    facts = Facts(task=str(config["task"].get("name")), labels=list(state.get("labels") or state.get("tags") or []))
    for section, keys in SETTINGS.items():
        values = config.get(section) or {}
        facts.settings.update({f"{section}.{key}": values[key] for key in keys if values.get(key) is not None})
    data = config.get("data") or {}
    facts.data = {split: {"file": data[split]} for split in ("train", "dev", "test") if data.get(split)}
    for entry in _log(folder / LOG_FILE):
        if "data" in entry:  # recorded as the run started (runs since 2026-12-05)
            facts.data = entry["data"]
        if "summary" in entry:
            summary = entry["summary"]
            facts.figures = {split: summary[split] for split in ("dev", "test") if summary.get(split)}
            facts.steps, facts.minutes = summary.get("steps"), summary.get("minutes")
    return facts


def _log(file: Path) -> list[dict]:
    try:
        lines = file.read_text(encoding="utf-8").splitlines()
    except OSError:
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:  # a line cut by a killed run
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def facts_lines(facts: Facts | None) -> list[tuple[str, str]]:
    """(key, value) rows for `attnkit info`: the card's facts that its description of the model (Pipeline.describe:
    task, labels, architecture) leaves out."""
    if facts is None:
        return []
    rows = []
    for split, described in facts.data.items():
        rows.append((split, _data(described)))
    for split, figures in facts.figures.items():
        rows.append((f"{split} score", _figures(figures)))
    if facts.steps is not None:
        rows.append(("trained", f"{facts.steps:,} steps in {facts.minutes or 0:.1f} min"))
    training = {key: value for key, value in facts.settings.items() if key.startswith("train.")}
    rows.append(("settings", ", ".join(f"{key}={value}" for key, value in training.items())))
    return rows


def model_card(
    facts: Facts | None, family: str, task: TaskExport, arch: str, name: str, columns: str | None = None
) -> str:
    """README.md of an exported Hugging Face folder `name`: what the model does, what it learned from (the data's
    `columns`, input -> target), how well it did, and how to load it."""
    auto = AUTO_CLASSES[task.head] if task.head is not None else AUTO_CLASSES[arch]
    what = f"A `{facts.task}` model trained with attnkit" if facts else "A model (imported: its training is unknown)"
    loads = f"`{auto}`" if task.library == "transformers" else f"with `{task.library}`"
    facts = facts or Facts(task="")
    lines = [
        "---",
        f"library_name: {task.library}",
        "tags:",
        "- attnkit",
        *([f"- {facts.task}"] if facts.task else []),
        "---",
        "",
        f"# {name}",
        "",
        f"{what}, written by attnkit as a Hugging Face `{family}` checkpoint ({loads}).",
        "",
    ]
    if facts.labels:
        lines += [f"**Outputs** ({len(facts.labels)}): {_listed(facts.labels, 40)}", ""]
    if facts.data and columns:
        lines += [f"**Columns** (input -> target): {columns}", ""]
    if facts.data:
        lines += ["## Training data", "", "| split | file | examples | size |", "|---|---|---|---|"]
        for split, described in facts.data.items():
            size = f"{described['bytes']:,} bytes" if described.get("bytes") is not None else ""
            examples = f"{described['examples']:,}" if described.get("examples") is not None else ""
            lines.append(f"| {split} | `{described['file']}` | {examples} | {size} |")
        lines.append("")
    if facts.figures:
        lines += ["## Results", "", "| split | " + " | ".join(_metrics(facts)) + " |",
                  "|---|" + "---|" * len(_metrics(facts))]  # fmt: skip
        for split, figures in facts.figures.items():
            lines.append(f"| {split} | " + " | ".join(_number(figures.get(m)) for m in _metrics(facts)) + " |")
        lines += ["", "dev: the best checkpoint's score, which chose it; test: that checkpoint, scored once.", ""]
    if facts.settings:
        trained = f" ({facts.steps:,} steps, {facts.minutes:.1f} min)" if facts.steps is not None else ""
        lines += [f"## Settings{trained}", ""]
        lines += [f"- `{key}`: {value}" for key, value in facts.settings.items()]
        lines.append("")
    if task.library == "sentence-transformers":
        loading = [
            "from sentence_transformers import SentenceTransformer",
            "",
            f'model = SentenceTransformer("{name}")',
        ]
    else:
        loading = [
            f"from transformers import AutoTokenizer, {auto}",
            "",
            f'tokenizer = AutoTokenizer.from_pretrained("{name}")',
            f'model = {auto}.from_pretrained("{name}")',
        ]
    lines += ["## Use", "", "```python", *loading, *(task.usage or _usage(task.head, arch)), "```", ""]
    return "\n".join(lines)


def _usage(head: str | None, arch: str) -> list[str]:
    if head == "sequence":
        return ['logits = model(**tokenizer(["A text."], return_tensors="pt")).logits',
                "print(model.config.id2label[int(logits.argmax(-1)[0])])"]  # fmt: skip
    if head == "token":
        return ['logits = model(**tokenizer(["A text."], return_tensors="pt")).logits',
                "tags = [model.config.id2label[int(i)] for i in logits.argmax(-1)[0]]  # one per subword"]  # fmt: skip
    if arch in ("encoder-decoder", "decoder"):
        return ['ids = model.generate(**tokenizer(["A text."], return_tensors="pt"))',
                "print(tokenizer.decode(ids[0], skip_special_tokens=True))"]  # fmt: skip
    return ['states = model(**tokenizer(["A text."], return_tensors="pt")).last_hidden_state']


def _metrics(facts: Facts) -> list[str]:
    return list(dict.fromkeys(metric for figures in facts.figures.values() for metric in figures))


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _figures(figures: dict[str, float]) -> str:
    return "  ".join(f"{metric} {value:.4f}" for metric, value in figures.items())


def _data(described: dict) -> str:
    counts = [f"{described['examples']:,} examples"] if described.get("examples") is not None else []
    counts += [f"{described['bytes']:,} bytes"] if described.get("bytes") is not None else []
    return described["file"] + (f" ({', '.join(counts)})" if counts else "")


def _listed(names: list[str], most: int = 12) -> str:
    shown = ", ".join(names[:most])
    return shown + (f", ... ({len(names)} in all)" if len(names) > most else "")
