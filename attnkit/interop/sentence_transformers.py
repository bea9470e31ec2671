"""sentence-transformers folders in and out, from their files only (the package is not needed here): a Hugging Face
model at the folder's top, modules.json naming it, a Pooling module and a Normalize one. What attnkit reads of such a
folder: how it pools (the mean, the first token, the maximum, the last token) and whether it normalizes; any other
module (a Dense projection, a mean scaled by the root of the length) is refused in one line, since attnkit's vectors
would not be the folder's."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from attnkit.errors import AttnkitError
from attnkit.files import read_json

MODULES = "modules.json"
# sentence-transformers' pooling modes (the old keys of 1_Pooling/config.json and the newer "pooling_mode"), attnkit's
# task.pooling for each
POOLINGS = {"mean": "mean", "cls": "first", "max": "max", "lasttoken": "last"}


@dataclass
class Embedding:
    """How a sentence-transformers folder turns its model's states into a vector."""

    pooling: str  # attnkit's task.pooling: mean, first, max, last
    normalize: bool  # of unit length
    max_length: int | None  # sentence_bert_config.json's max_seq_length: longer inputs are cut


def is_st_folder(path: str | os.PathLike) -> bool:
    return (Path(path) / MODULES).is_file()


def read_st(path: str | os.PathLike) -> Embedding:
    """The pooling, normalization and input limit of the sentence-transformers folder `path`."""
    folder = Path(path)
    modules = read_json(folder / MODULES)
    if not isinstance(modules, list) or not all(isinstance(m, dict) for m in modules):
        raise AttnkitError(f"{folder / MODULES}: expected a list of modules")
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules]
    if not kinds or kinds[0] != "Transformer" or (modules[0].get("path") or "") != "":
        raise AttnkitError(
            f"{folder / MODULES}: attnkit reads a folder whose first module is the Transformer at its top (found "
            f"{', '.join(kinds) or 'none'})"
        )
    others = [kind for kind in kinds[1:] if kind not in ("Pooling", "Normalize")]
    if others or kinds.count("Pooling") != 1:
        raise AttnkitError(
            f"{folder / MODULES}: modules {', '.join(kinds)}: attnkit reads a Transformer, one Pooling and a "
            "Normalize; its vectors would not be this folder's"
        )
    pooling_dir = folder / modules[kinds.index("Pooling")].get("path", "1_Pooling")
    pooling = _pooling(read_json(pooling_dir / "config.json"), pooling_dir / "config.json")
    settings = folder / "sentence_bert_config.json"
    limit = read_json(settings).get("max_seq_length") if settings.is_file() else None
    return Embedding(pooling, "Normalize" in kinds, limit if isinstance(limit, int) and limit > 0 else None)


def _pooling(config: dict, where: Path) -> str:
    if isinstance(config.get("pooling_mode"), str):
        modes = [config["pooling_mode"]]
    else:
        modes = [key[len("pooling_mode_") :] for key, on in config.items() if key.startswith("pooling_mode_") and on]
        modes = ["cls" if m == "cls_token" else m.removesuffix("_tokens") for m in modes]
    if len(modes) != 1 or modes[0] not in POOLINGS:
        known = ", ".join(POOLINGS)
        raise AttnkitError(f"{where}: pooling {' + '.join(modes) or 'none'}: attnkit pools with one of {known}")
    return POOLINGS[modes[0]]


def st_files(embedding: Embedding, dim: int) -> dict[str, dict | list]:
    """The files (relative path -> JSON) that make a Hugging Face folder of a model a sentence-transformers one that
    pools and normalizes as `embedding` says, in the module names every version of sentence-transformers reads."""
    mode = {value: key for key, value in POOLINGS.items()}[embedding.pooling]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if embedding.normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    pooling = {"word_embedding_dimension": dim}
    for key in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens", "lasttoken"):
        pooling[f"pooling_mode_{key}"] = key.removesuffix("_token").removesuffix("_tokens") == mode
    files: dict[str, dict | list] = {
        MODULES: modules,
        "1_Pooling/config.json": pooling,
        "sentence_bert_config.json": {"max_seq_length": embedding.max_length, "do_lower_case": False},
        "config_sentence_transformers.json": {"similarity_fn_name": "cosine"},
    }
    if embedding.normalize:
        files["2_Normalize/config.json"] = {}
    return files
