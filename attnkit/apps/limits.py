"""The server's limits, in one place: `attnkit serve`'s flags take their defaults and help from here, and
`create_app` enforces them. No FastAPI here, so that the command line can read them without loading the server."""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from attnkit.errors import AttnkitError


@dataclasses.dataclass(frozen=True)
class Limits:
    max_batch: int = 32  # texts in one batch (1: batching off)
    max_wait_ms: float = 0.0  # how long a batch waits for more requests; 0: it takes what came while the model ran
    max_body_bytes: int = 1 << 20  # a larger request body is refused (413)
    max_text_chars: int = 10_000  # a longer text is refused (413)
    max_texts: int = 256  # texts in one request
    too_long: Literal["truncate", "reject"] = "truncate"  # a text over the model's max_input_tokens: cut, or 413
    max_connections: int = 1000  # open connections (and requests in flight) beyond which a request gets 503
    request_timeout_s: float = 30.0  # a request must arrive whole this soon after its first byte (or the connection)

    def __post_init__(self) -> None:
        for flag, value, note in (
            ("--max-batch", self.max_batch, " (1: batching off)"),
            ("--max-body-bytes", self.max_body_bytes, ""),
            ("--max-text-chars", self.max_text_chars, ""),
            ("max_texts", self.max_texts, ""),
            ("--max-connections", self.max_connections, ""),
        ):
            if value < 1:
                raise AttnkitError(f"{flag} must be at least 1{note}, got {value}")
        if not (math.isfinite(self.max_wait_ms) and self.max_wait_ms >= 0):
            raise AttnkitError(f"--max-wait-ms must be 0 or more (0: no wait), got {self.max_wait_ms:g}")
        if not (math.isfinite(self.request_timeout_s) and self.request_timeout_s > 0):
            raise AttnkitError(f"--request-timeout-s must be above 0, got {self.request_timeout_s:g}")
        if self.too_long not in ("truncate", "reject"):
            raise AttnkitError(f"too_long: {self.too_long!r}, expected 'truncate' or 'reject'")


FLAGS = {  # the limits `attnkit serve` takes as flags, with their help (the default is added from Limits)
    "max_batch": "most texts in a batch of concurrent requests (1: batching off)",
    "max_wait_ms": "how long a batch waits for more requests (0: it takes those that came while the model ran)",
    "max_body_bytes": "a larger request body gets 413",
    "max_text_chars": "a longer text gets 413",
    "max_connections": "open connections beyond which a request gets 503 (a client that holds many cannot starve "
    "the others)",
    "request_timeout_s": "seconds a request may take to arrive whole (headers and body) from its first byte: a "
    "slower client is disconnected",
    "too_long": "a text over the model's input limit (/info: max_input_tokens): truncate cuts it as attnkit predict "
    "does (a tagger reads a long sentence in windows), reject answers 413",
}
