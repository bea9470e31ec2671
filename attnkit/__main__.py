"""`python -m attnkit`, the form torchrun runs (torchrun --nproc_per_node=2 -m attnkit train ...), and the
`attnkit` command's entry point. Ctrl-C ends the command at once with one line and 130: nothing is left half-written
(outputs are written whole or not at all, a folder being built is removed first, and files.recover tidies what a
killed write left), and no KeyboardInterrupt is raised into PyTorch's C++ (while it is being imported, pybind11 turns
one into an abort). A training run answers Ctrl-C itself: it stops at the end of the step under way and saves its
state (Trainer._stopping_at_a_step_end)."""

import os
import signal
import sys


def _interrupted(signum: int, frame: object) -> None:
    files = sys.modules.get("attnkit.files")
    for undo in list(files.UNDONE_ON_CTRL_C) if files is not None else []:  # a folder half-written (a token cache)
        undo()
    os.write(2, b"attnkit: interrupted\n")
    os._exit(130)


signal.signal(signal.SIGINT, _interrupted)  # this module is imported only to run the command


def main() -> int:
    from attnkit.apps.cli import main as command

    status = command()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # done: a Ctrl-C now would only break Python's shutdown (-2)
    return status


if __name__ == "__main__":
    sys.exit(main())
