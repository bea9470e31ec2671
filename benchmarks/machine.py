"""What every benchmark prints about where it ran."""

from __future__ import annotations

import platform

import torch


def machine() -> dict:
    """CPU, threads, and the versions of torch (and transformers, where installed)."""
    info = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    return info
