"""`python -m attnkit`, the form torchrun runs (torchrun --nproc_per_node=2 -m attnkit train ...), and the
`attnkit` command's entry point: Ctrl-C while Python is still importing the command exits with the same one line
as later (attnkit.apps.cli.main answers it from then on)."""

import os
import signal
import sys


def _interrupted_early(signum: int, frame: object) -> None:
    os.write(2, b"attnkit: interrupted\n")
    os._exit(130)  # nothing has started: nothing to save


signal.signal(signal.SIGINT, _interrupted_early)  # this module is imported only to run the command


def main() -> int:
    from attnkit.apps.cli import main as command

    return command()


if __name__ == "__main__":
    sys.exit(main())
