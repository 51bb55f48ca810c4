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


# The commands the parser itself runs, in --help's order, and whether their add_parser takes the
# default model's text.
COMMANDS = {"compress": (compress.add_parser, True), "decompress": (decompress.add_parser, False),
            "info": (info.add_parser, False), "models": (models.add_parser, False), "demo": (demo.add_parser, True),
            "upgrade": (upgrade.add_parser, True), "serve": (add_serve_parser, False), "batch": (batch.add_parser, True)}


def build_parser(detailed: bool = True, only: str | None = None) -> argparse.ArgumentParser:
    """The parser; ``detailed``: help texts that name the default model read its card (tens of
    milliseconds), so a command that shows no help builds them without. ``only``: a command of
    :data:`COMMANDS` whose arguments are all that is parsed (a command line that shows no help
    parses one command's): the others' subparsers are not built."""
    default_model = default_model_text() if detailed else "the default model (`slimfast models` marks it)"
    p = Parser(prog="slimfast", description="slimfast: learned image compression in real time on CPU. "
               f"Default model: {default_model}; quality (-q) runs from 0 to 100, higher is better.",
               epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"slimfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (add_parser, takes_model) in COMMANDS.items():
        if only is None or name == only:
            add_parser(*((sub, default_model) if takes_model else (sub,)))
    if only is None:
        tools.add_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the command ``argv`` (``None``: ``sys.argv``'s, as the ``slimfast`` program) and return
    its exit status."""
    program = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    code = tools.dispatch(argv)
    if code is not None:
        return code
    shows_help = not argv or any(a in ("-h", "--help") for a in argv)
    parser = build_parser(detailed=shows_help, only=None if shows_help or argv[0] not in COMMANDS else argv[0])
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    code = guard(lambda: args.func(args), signals=True)
    if program:
        _before_exit()
    return code


def _before_exit() -> None:
    """The program's command is done and the process ends next: every object is moved out of the
    cycle collector's reach (:func:`gc.freeze`), so that interpreter shutdown does not walk the
    whole heap (numpy's, ONNX Runtime's, Pillow's objects) in each of its collections: tens of
    milliseconds of a 0.3 s decompress, measured. Shutdown still releases every object that is not
    in a reference cycle as it clears the modules (outputs are written and flushed before this);
    only cycles are left to the operating system, which takes back all memory at exit anyway.
    A caller that passes ``argv`` (a test, a program embedding the CLI) keeps its collector."""
    import gc

    gc.freeze()
