"""What every command shares: printing, the one-line errors, signals, and the settings flags.

Every failure is one line on stderr (``slimfast: error: ...``) and a non-zero exit status, never
a traceback (:func:`guard`).
"""
from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from ..errors import SlimfastError, printable
from ..jobs.files import os_text, remove_temps, stdout_failed


class Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, like argparse but without the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def say(*args) -> None:
    """print() to stdout, where a closed pipe or a full disk is a one-line error naming stdout."""
    try:
        print(*args)
    except OSError as exc:
        stdout_failed(exc)


def note(text: str) -> None:
    """A line on stderr (what was written, a summary, a warning)."""
    print(text, file=sys.stderr)


def error_line(message) -> str:
    # Messages quote headers, file names and model cards: control characters (ANSI escapes,
    # newlines forging a second line) are escaped, so that the line is exactly one line.
    return f"slimfast: error: {printable(message, limit=2000, ascii_only=False)}"


def settings(args, bf16_parts: tuple[str, ...] = ()):
    """The environment's settings with this command's flags applied (a flag wins): ``--threads``,
    ``--int8`` (int8 synthesis), ``--bf16`` / ``--fp32`` (that precision for ``bf16_parts``: analysis,
    synthesis) and
    ``--max-pixels``."""
    from ..settings import Settings

    changes = {}
    if getattr(args, "threads", None):
        if args.threads < 1:
            raise SlimfastError("--threads must be at least 1")
        changes["threads"] = args.threads
    if getattr(args, "int8", False):
        changes["synthesis"] = "int8"
    if getattr(args, "bf16", False):
        changes.update(dict.fromkeys(bf16_parts, "bf16"))
    if getattr(args, "fp32", False):
        changes.update(dict.fromkeys(bf16_parts, "fp32"))
    if getattr(args, "max_pixels", None) is not None:
        if args.max_pixels < 1:
            raise SlimfastError("--max-pixels must be at least 1")
        changes["max_pixels"] = args.max_pixels
    result = Settings.from_env().replace(**changes)
    _set_torch_threads(result)
    return result


def one_shot(options, planned):
    """``options`` with :func:`one_shot_settings` for the pixels ``planned``'s inputs declare."""
    import dataclasses

    from .. import jobs

    s = options.settings
    if "auto" not in (s.analysis, s.synthesis):
        return options
    from ..settings import AUTO_BF16_MIN_PIXELS

    pixels = jobs.declared_pixels(planned, options.command, enough=AUTO_BF16_MIN_PIXELS)
    return dataclasses.replace(options, settings=one_shot_settings(s, pixels))


def one_shot_settings(settings, pixels: int):
    """``settings`` with precision ``auto`` resolved to fp32 where a process codes fewer than
    :data:`~slimfast.settings.AUTO_BF16_MIN_PIXELS` pixels in all: there OpenVINO's start costs
    more than bf16 saves (:mod:`slimfast.settings`)."""
    from ..settings import AUTO_BF16_MIN_PIXELS

    auto = [part for part in ("analysis", "synthesis") if getattr(settings, part) == "auto"]
    if not auto or pixels >= AUTO_BF16_MIN_PIXELS:
        return settings
    return settings.replace(**dict.fromkeys(auto, "fp32"))


def _set_torch_threads(settings) -> None:
    """torch's thread count belongs to the process, not to a model: the command owns the process."""
    if settings.threads:
        from ..codec import backend

        if backend(settings) == "torch":
            try:
                import torch
            except ImportError:  # loading the model says what is missing, in one line
                return
            torch.set_num_threads(settings.threads)


# -- running a command ----------------------------------------------------------------------------
def guard(fn, signals: bool = False) -> int:
    """Run a command: every failure is one line on stderr and an exit status, never a traceback.
    With ``signals``, SIGTERM, SIGINT and SIGHUP end it cleanly (see :func:`signals_handled`)."""
    try:
        with signals_handled() if signals else contextlib.nullcontext():
            code = int(fn() or 0)
            _flush_stdout()
            return code
    except SlimfastError as exc:
        note(error_line(exc))
        return 1
    except Signalled as exc:
        note(f"slimfast: interrupted ({signal.Signals(exc.signum).name})")
        return 128 + exc.signum
    except KeyboardInterrupt:
        note("slimfast: interrupted")
        return 130
    except MemoryError:
        note("slimfast: error: out of memory")
        return 1
    except OSError as exc:  # one that no file operation named (most do)
        note(error_line(os_text(exc)))
        return 1


def _flush_stdout() -> None:
    """What the command printed, written now: a closed pipe or a full disk is then this command's
    one-line error, not a traceback at interpreter exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        stdout_failed(exc)


class Signalled(BaseException):
    """Raised by :func:`_on_signal`: a BaseException, so that no ``except Exception`` stops it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    remove_temps()
    raise Signalled(signum)


@contextlib.contextmanager
def signals_handled():
    """SIGTERM, SIGINT and SIGHUP remove the temporary files of writes in progress and end the
    command with status 128 + the signal's number (kill -9 cannot be caught: the next write into
    that folder removes what it left). A signal the caller ignores (nohup) stays ignored."""
    sigs = [getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    saved = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        if saved[s] is not signal.SIG_IGN:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
