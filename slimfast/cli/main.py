"""The ``slimfast`` command: its parser and :func:`main`."""
from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..serve import add_parser as add_serve_parser  # light: FastAPI and uvicorn load when it runs
from . import batch, compress, decompress, demo, info, models, tools, upgrade
from .common import Parser, guard
from .options import default_model_text

EPILOG = """\
examples:
  slimfast demo                                  compress + decompress the bundled photo
  slimfast compress photo.png                    -> photo.sfi (default model and quality)
  slimfast compress photo.png -o photo.sfi -q 0  smallest file of the default model's family (-q 0..100)
  slimfast compress a.png b.jpg -o out/          several inputs into a folder
  slimfast compress photo.png small.sfi --max-bytes 20000
  slimfast decompress photo.sfi                  -> photo.png
  slimfast decompress photo.sfi -o photo.webp    output format from the extension
  cat photo.png | slimfast compress - - > photo.sfi
  slimfast info *.sfi
  slimfast upgrade old.sfi --weights-from DIR    re-encode a file of a retired model version
  slimfast models                                what --model and --quality accept
  slimfast serve                                 HTTP API + comparison page on http://127.0.0.1:8000/
  slimfast batch photos/ --out out/              a whole corpus on many workers, resumable
"""


def build_parser(detailed: bool = True) -> argparse.ArgumentParser:
    """The parser; ``detailed``: help texts that name the default model read its card (tens of
    milliseconds), so a command that shows no help builds them without."""
    default_model = default_model_text() if detailed else "the default model (`slimfast models` marks it)"
    p = Parser(prog="slimfast", description="slimfast: learned image compression in real time on CPU. "
               f"Default model: {default_model}; quality (-q) runs from 0 to 100, higher is better.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"slimfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    compress.add_parser(sub, default_model)
    decompress.add_parser(sub)
    info.add_parser(sub)
    models.add_parser(sub)
    demo.add_parser(sub, default_model)
    upgrade.add_parser(sub, default_model)
    add_serve_parser(sub)
    batch.add_parser(sub, default_model)
    tools.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    code = tools.dispatch(argv)
    if code is not None:
        return code
    parser = build_parser(detailed=not argv or any(a in ("-h", "--help") for a in argv))
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return guard(lambda: args.func(args), signals=True)
