"""The one exception type users need to catch, and making text from files safe to print."""

# Longest text taken from a file (a model name, a version) that a message shows: a header may
# hold 255 bytes per field, which would bury the message around it.
FIELD_LIMIT = 80


class SlimfastError(Exception):
    """Any failure caused by input data, files or arguments (bad image, corrupt stream, ...).

    Its message is one line, written for the person who ran the command.
    """


class UnreadableFileError(SlimfastError, OSError):
    """A ``.sfi`` file this installation cannot decode: malformed, or made with a model (version)
    that is not installed. Also an :class:`OSError`, as an unreadable file is for Pillow and the
    standard library, so that ``except OSError`` catches it too."""


class CorruptFileError(UnreadableFileError):
    """A malformed ``.sfi`` file: truncated, a CRC mismatch, an impossible header or streams."""


def printable(text, limit: int | None = FIELD_LIMIT, ascii_only: bool = True) -> str:
    """``text`` safe to show on a terminal: control characters (ANSI escapes, newlines, ...) as
    Python escapes (``\\x1b``, ``\\n``); with ``ascii_only`` every non-ASCII character too;
    longer than ``limit`` characters: cut, ending in ``...``.

    Text from a file must never reach the terminal raw: a crafted header could otherwise print
    a forged line ("decoded OK") or recolour or clear the screen.
    """
    text = str(text)
    cut = limit is not None and len(text) > limit
    text = text[:limit] if cut else text
    out = "".join(c if _shows(c, ascii_only) else c.encode("unicode_escape").decode("ascii") for c in text)
    return out + "..." if cut else out


def _shows(c: str, ascii_only: bool) -> bool:
    if c.isascii():
        return " " <= c <= "~"
    return not ascii_only and c.isprintable()


def require_torch(purpose: str) -> None:
    """A one-line error where ``purpose`` needs PyTorch and it is not installed (it is an extra)."""
    try:
        import torch  # noqa: F401  (it is needed next anyway)
    except ImportError:
        raise SlimfastError(f"{purpose} needs PyTorch: pip install torch==2.13.0 (the CPU build), "
                            "or pip install 'slimfast[torch]'") from None
