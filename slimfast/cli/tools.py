"""The commands that run :mod:`slimfast.tools` (training, evaluation, benchmarks, reports). They are
imported only when run: the codec's commands never load them (nor torch)."""
from __future__ import annotations

import argparse
import importlib
import sys

from .common import Parser, guard

HELP = {
    "train": "train a model (see slimfast train --help)",
    "evaluate": "RD evaluation against JPEG/WebP/AVIF/HEIC/JPEG 2000/JPEG XL",
    "bench": "latency benchmark against traditional codecs",
    "schedule": "joint multi-width training with lambda scheduling (slimmable models)",
    "report": "regenerate RESULTS.md (evaluate + bench)",
}
NEED_TORCH = ("train", "schedule")
OWN_ARGUMENTS = ("evaluate", "bench")  # their module declares the arguments; this parser runs them


def add_parsers(sub) -> None:
    """Entries for --help only: :func:`dispatch` runs these commands before the main parser sees them."""
    for name, text in HELP.items():
        sp = sub.add_parser(name, help=text, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)


def dispatch(argv: list[str]) -> int | None:
    """Run ``argv`` if it is a tool command (its exit status), else None."""
    if not argv or argv[0] not in HELP:
        return None
    name, rest = argv[0], argv[1:]
    if name in NEED_TORCH and _torch_missing(name):
        return 1
    if name in OWN_ARGUMENTS:
        return _run_with_own_parser(name, rest)
    return importlib.import_module(f"slimfast.tools.{name}").main(rest)


def _torch_missing(name: str) -> int:
    from ..errors import require_torch

    return guard(lambda: require_torch(f"slimfast {name}"))


def _run_with_own_parser(name: str, rest: list[str]) -> int:
    try:
        mod = importlib.import_module(f"slimfast.tools.{name}")
    except ImportError as exc:
        print(f"slimfast: error: {name} needs the eval extra: pip install 'slimfast[eval]' ({exc})", file=sys.stderr)
        return 1
    doc = (mod.__doc__ or "").strip().splitlines()
    sp = Parser(prog=f"slimfast {name}", description=doc[0] if doc else None)
    mod.add_arguments(sp)
    args = sp.parse_args(rest)
    return guard(lambda: mod.run(args))
