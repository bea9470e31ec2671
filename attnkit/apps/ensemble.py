"""`attnkit ensemble`: trained models of one task and label set, of any architectures, tokenizers and random
starts, written as one model directory that predicts with the mean of their outputs (probabilities; a regressor's
numbers). Weight averaging (attnkit.apps.average) needs models fine-tuned from one checkpoint and gives one model's
cost; an ensemble takes any models and costs the sum of theirs.
"""

from __future__ import annotations

import os
from pathlib import Path

from attnkit.errors import AttnkitError
from attnkit.files import check_output
from attnkit.inference.checkpoint import write_ensemble
from attnkit.inference.pipeline import Ensemble, Pipeline


def ensemble(paths: list[str | os.PathLike], out: str | os.PathLike, overwrite: bool = False) -> Pipeline:
    """Write the trained models at `paths` as one ensemble directory `out`, and return the ensemble."""
    paths, out = [Path(path) for path in paths], Path(out)
    if len(paths) < 2:
        raise AttnkitError("ensemble: give at least two model directories")
    if any(out.resolve() == path.resolve() for path in paths):
        raise AttnkitError(f"{out}: is one of the models; write the ensemble to a new directory")
    check_output(out, overwrite)
    members = []
    for path in paths:
        loaded = Pipeline.load(path, device="cpu")
        if len(loaded.members) > 1:
            raise AttnkitError(
                f"{path}: is an ensemble itself; give its members' directories (the models it was made of)"
            )
        members.append(loaded)
    made = Ensemble(members, "ensemble")  # one task, input and label set, or a one-line error
    write_ensemble(out, paths)
    return made
