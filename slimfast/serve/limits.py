"""The server's configuration: where it listens, how many workers, and the limits on a request.

Every limit is configurable (``slimfast serve --help``) and each has a test in
tests/test_serve_api.py. A request over a limit gets a 4xx (or 503 / 504) with a JSON error.
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass

DEFAULT_HOST = "127.0.0.1"  # loopback unless told otherwise: a codec service is not for the open internet by default
DEFAULT_PORT = 8000
DEFAULT_UPLOAD_BYTES = 32 * 2**20
DEFAULT_TIMEOUT_S = 60.0
DEFAULT_QUEUE = 16
PAGE_MAX_PIXELS = 4_000_000  # the comparison page codes one image four ways, several times each


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_max_pixels() -> int:
    """The codec's own limit (``SLIMFAST_MAX_PIXELS``, else 64 Mi pixels)."""
    from ..settings import Settings

    return Settings.from_env().max_pixels


@dataclass(frozen=True)
class ServeConfig:
    """How the server runs. ``queue``: requests that may wait for a worker (beyond it: 503);
    ``timeout_s``: the most one request may run in a worker (beyond it: 504, and the worker is
    replaced); ``max_upload_bytes``: the largest request body (413); ``max_pixels``: the largest
    image decoded, from an upload's header or a ``.sfi`` file's (413); ``page_max_pixels``: the
    same for the comparison page's requests; ``model``: the model each worker loads at start."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    workers: int = dataclasses.field(default_factory=default_workers)
    queue: int = DEFAULT_QUEUE
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_upload_bytes: int = DEFAULT_UPLOAD_BYTES
    max_pixels: int = dataclasses.field(default_factory=default_max_pixels)
    page_max_pixels: int = PAGE_MAX_PIXELS
    model: str | None = None

    def __post_init__(self) -> None:
        for name, low in (("workers", 1), ("queue", 0), ("max_upload_bytes", 1), ("max_pixels", 1),
                          ("page_max_pixels", 1), ("port", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, not {value!r}")
        if not (isinstance(self.timeout_s, (int, float)) and math.isfinite(self.timeout_s) and self.timeout_s > 0):
            raise ValueError(f"timeout_s must be a number of seconds above 0, not {self.timeout_s!r}")

    def replace(self, **changes) -> ServeConfig:
        return dataclasses.replace(self, **changes)
