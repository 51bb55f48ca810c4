"""``slimfast info FILE...``: what .sfi files hold, read from their headers."""
from __future__ import annotations

import json

from ..errors import SlimfastError, printable
from .common import error_line, note, say

FIELDS = ("model", "version", "width", "step", "coder", "size", "mode", "bytes", "bpp", "format")


def add_parser(sub) -> None:
    i = sub.add_parser("info", help="describe .sfi files", description=(
        "Show .sfi files' model, version, width, quantization step (the quality knob's: 1 at a model's "
        "own rate point), entropy coder (rans; range in files of older slimfast), size, mode, "
        "bytes, bpp and format. Several files: a "
        "block each, headed by its name (--json: a list); an unreadable one is an error line, and the "
        "others are still shown."))
    i.add_argument("files", nargs="+", metavar="FILE")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=run)


def describe(name: str) -> dict:
    from ..coding.intmath import STEP_ONE
    from ..format import container
    from ..jobs.files import read_sfi

    hdr = container.unpack(read_sfi(name))
    step = container.unpack_step(hdr.chunk("QUAL"), STEP_ONE) / STEP_ONE
    return {"file": name, "model": hdr.model, "version": hdr.weights_version,
            "weights_id": hdr.weights_id.hex(), "width": hdr.width, "step": round(step, 6), "coder": _coder(hdr),
            "size": list(hdr.image_size),
            "mode": hdr.mode, "bytes": hdr.total_bytes, "bpp": round(hdr.bpp, 6),
            "streams": [len(s) for s in hdr.streams], "alpha_bytes": len(hdr.alpha) if hdr.alpha else 0,
            "icc_bytes": len(hdr.icc) if hdr.icc else 0, "format": hdr.format_version,
            "chunks": [printable(kind) for kind, _ in hdr.chunks]}


def _coder(hdr) -> str:
    from ..format import container

    try:
        return container.unpack_layout(hdr.chunk("LAYT"))
    except SlimfastError:  # a newer file's coder: the rest of the header is still worth showing
        return "unknown"


def _text(d: dict) -> list[str]:
    lines = []
    for k in FIELDS:
        v = "x".join(map(str, d[k])) if k == "size" else d[k]
        lines.append(f"{k:8s} {printable(v)}")  # model and version are the file's text: never raw
    return lines


def run(args) -> int:
    if len(args.files) == 1:
        d = describe(args.files[0])
        say(json.dumps(d, indent=2) if args.json else "\n".join(_text(d)))
        return 0
    found, failed = [], False
    for name in args.files:
        try:
            found.append(describe(name))
        except SlimfastError as exc:
            note(error_line(f"{name}: {exc}"))
            failed = True
            continue
        if not args.json:  # json.dumps below escapes control and non-ASCII characters itself
            _block(name, found[-1], first=len(found) == 1)
    if args.json:
        say(json.dumps(found, indent=2))
    return 1 if failed else 0


def _block(name: str, d: dict, first: bool) -> None:
    if not first:
        say("")
    say(f"{'file':8s} {printable(name, None, False)}")
    say("\n".join(_text(d)))
