"""``slimfast serve``: an HTTP compression service and a side-by-side comparison page.

Needs the ``serve`` extra (FastAPI, uvicorn, python-multipart; no torch). This module stays
light, so that ``slimfast --help`` works without it: :func:`add_parser` adds the subcommand to
the ``slimfast`` command line and :func:`run` starts the server.

    slimfast serve [--host 127.0.0.1] [--port 8000] [--workers N]
"""
from __future__ import annotations

import argparse
import ipaddress
import sys

from ..errors import SlimfastError

EXTRA_HINT = "pip install 'slimfast[serve]'"


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, not {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, not {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds above 0, not {text}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .limits import DEFAULT_HOST, DEFAULT_PORT, DEFAULT_QUEUE, DEFAULT_TIMEOUT_S, DEFAULT_UPLOAD_BYTES, PAGE_MAX_PIXELS

    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only; "
                                                         "0.0.0.0 serves every network it is on)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})")
    p.add_argument("--workers", type=_positive_int, help="coding processes, one thread each (default: one per core)")
    p.add_argument("--queue", type=int, default=DEFAULT_QUEUE,
                   help=f"requests that may wait for a worker; one more gets 503 + Retry-After (default {DEFAULT_QUEUE})")
    p.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help=f"the most one request may code; beyond it, 504 and its worker is replaced "
                        f"(default {DEFAULT_TIMEOUT_S:g})")
    p.add_argument("--max-upload-bytes", type=_positive_int, default=DEFAULT_UPLOAD_BYTES, metavar="N",
                   help=f"largest request body; beyond it, 413 (default {DEFAULT_UPLOAD_BYTES})")
    p.add_argument("--max-pixels", type=_positive_int, metavar="N",
                   help="largest image decoded, checked from its header; beyond it, 413 "
                        "(default: SLIMFAST_MAX_PIXELS, else 67108864)")
    p.add_argument("--page-max-pixels", type=_positive_int, default=PAGE_MAX_PIXELS, metavar="N",
                   help=f"largest image the comparison page codes (default {PAGE_MAX_PIXELS})")
    p.add_argument("-m", "--model", help="the model each worker loads at start (default: the default model)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add ``serve`` to the ``slimfast`` command's subparsers; it calls :func:`run`."""
    p = subparsers.add_parser("serve", help="HTTP compression service and comparison page (extra: serve)",
                              description="Serve the HTTP API (/v1/compress, /v1/decompress, /v1/models, /healthz; "
                                          "docs at /docs) and the comparison page at /.")
    add_arguments(p)
    p.set_defaults(func=run)
    return p


def _check_model(name: str | None) -> None:
    import slimfast

    if name is None or "@" in name:
        return
    known = {m.name for m in slimfast.list_models()} | {m.family for m in slimfast.list_models()}
    if name not in known:
        raise SlimfastError(f"unknown model {name!r}; slimfast models lists them")


def config_from(args):
    from .limits import ServeConfig

    _check_model(args.model)
    if not 0 <= args.port <= 65535:
        raise SlimfastError(f"--port must be 0 to 65535, not {args.port}")
    if args.queue < 0:
        raise SlimfastError(f"--queue must be 0 or more, not {args.queue}")
    extra = {"workers": args.workers} if args.workers else {}
    if args.max_pixels:
        extra["max_pixels"] = args.max_pixels
    return ServeConfig(host=args.host, port=args.port, queue=args.queue, timeout_s=args.timeout,
                       max_upload_bytes=args.max_upload_bytes, page_max_pixels=args.page_max_pixels,
                       model=args.model, **extra)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def run(args) -> int:
    """Start the server and block until it stops (Ctrl-C, SIGTERM); errors are SlimfastError."""
    try:
        import uvicorn

        from .app import create_app
    except ImportError as exc:
        raise SlimfastError(f"slimfast serve needs the serve extra: {EXTRA_HINT} ({exc})") from None
    config = config_from(args)
    if not _is_loopback(config.host):
        print(f"slimfast serve: listening on {config.host}: anyone who can reach this machine can use it",
              file=sys.stderr)
    print(f"slimfast serve: http://{config.host}:{config.port}/ ({config.workers} workers; API docs at /docs)",
          file=sys.stderr)
    try:
        uvicorn.run(create_app(config), host=config.host, port=config.port, log_level=args.log_level,
                    timeout_graceful_shutdown=5)
    except OSError as exc:  # the port is taken, the address is not this machine's
        raise SlimfastError(f"cannot listen on {config.host}:{config.port}: {exc.strerror or exc}") from None
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m slimfast.serve``: the same as ``slimfast serve``."""
    p = argparse.ArgumentParser(prog="slimfast serve", description="An HTTP compression service and a comparison page.")
    add_arguments(p)
    args = p.parse_args(argv)
    try:
        return run(args)
    except SlimfastError as exc:
        from ..errors import printable

        print(f"slimfast: error: {printable(exc, limit=2000, ascii_only=False)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
