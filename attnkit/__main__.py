"""`python -m attnkit`, the form torchrun runs: torchrun --nproc_per_node=2 -m attnkit train ..."""

import sys

from attnkit.apps.cli import main

sys.exit(main())
