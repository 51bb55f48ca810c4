"""Reading inputs within bounds and writing outputs atomically, for the per-file pipeline.

Outputs are written through a hidden temporary file beside them, ``.NAME.slimfast-PID.tmp``, then
renamed into place: an existing file is untouched by a failed write and is only replaced with
``force``. The mode of a new file follows the umask, as ``cp``'s does. A later run can tell the
temporary files of processes that no longer run (``kill -9``, a power cut) by the PID in their
name and removes exactly those. ``-`` names stdin or stdout.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
from pathlib import Path

from ..errors import SlimfastError

_TEMP_NAME = re.compile(r"\..+\.slimfast-([1-9][0-9]*)\.tmp")
# Process-wide on purpose: a signal handler must find the temporary files of writes in progress
# (remove_temps), and a folder is swept of stale ones once per process.
_TEMPS: set[str] = set()
_SWEPT: set[str] = set()


def os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def os_text(exc: OSError) -> str:
    """An OS error that no file operation named, as one line."""
    if exc.filename is None and isinstance(exc, BrokenPipeError):  # the one pipe the commands write to
        return f"cannot write to stdout: {os_reason(exc)}"
    return f"{exc.filename}: {os_reason(exc)}" if exc.filename else os_reason(exc)


def shown(name: str) -> str:
    """How a source is named in messages."""
    return "stdin" if name == "-" else name


# -- reading -------------------------------------------------------------------------------------
def read_sfi(name: str) -> bytes:
    """An .sfi file's bytes, read no further than its header declares (a device or an endless
    pipe costs a few bytes, not all memory: container.read_file)."""
    from ..format.container import read_file

    return read_file(sys.stdin.buffer if name == "-" else name, what=shown(name))


def read_image(name: str, max_pixels: int) -> bytes:
    """An image file's bytes, at most what an image of ``max_pixels`` can take (imageio.read_bounded)."""
    from ..format.imageio import max_input_bytes, read_bounded

    return read_bounded(sys.stdin.buffer if name == "-" else name, max_input_bytes(max_pixels), what=shown(name))


def same_file(a: str, b: str) -> bool:
    try:
        return "-" not in (a, b) and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


# -- writing -------------------------------------------------------------------------------------
def write_output(name: str, data: bytes, force: bool) -> None:
    if name == "-":
        write_stdout(data)
    else:
        write_atomic(Path(name), data, force)


def folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def check_target(path: Path, force: bool) -> None:
    """Checked before the work, not only when writing: a refused output costs no coding."""
    if not folder_of(path).is_dir():
        raise SlimfastError(f"output directory does not exist: {folder_of(path)}")
    if path.is_dir():
        raise SlimfastError(f"{path} is a directory")
    if path.exists() and not force:
        raise SlimfastError(f"{path} exists (use --force to overwrite)")


def write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the target folder; never replace without ``force``. Any OS
    error is a one-line :class:`SlimfastError` naming the file, and leaves an existing file as it was."""
    check_target(path, force)
    parent = folder_of(path)
    remove_stale_temps(parent)
    tmp = str(parent / f".{path.name}.slimfast-{os.getpid()}.tmp")
    _TEMPS.add(tmp)  # before it exists: a signal from here on finds it
    try:
        _write_file(tmp, data)
        _move_into_place(tmp, path, force)
    except OSError as exc:
        raise SlimfastError(f"cannot write {path}: {os_reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _TEMPS.discard(tmp)


def _write_file(tmp: str, data: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # our own pid in its name: left by a dead process that had it before
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)  # a full disk may only say so here, and the rename must not publish a short file
    finally:
        os.close(fd)


def _move_into_place(tmp: str, path: Path, force: bool) -> None:
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path appeared meanwhile: no silent overwrite
    except FileExistsError:
        raise SlimfastError(f"{path} exists (use --force to overwrite)") from None
    except OSError:  # no hard links here (FAT, some network file systems)
        os.replace(tmp, path)


def remove_temps() -> None:
    """Remove the temporary files of writes in progress (from a signal handler: the writes'
    ``finally`` blocks do it too, but a handler must not depend on them)."""
    for tmp in list(_TEMPS):
        with contextlib.suppress(OSError):
            os.unlink(tmp)


def remove_stale_temps(folder: Path) -> None:
    """Remove the temporary files of slimfast processes that no longer run, once per folder and
    process; only names :func:`write_atomic` makes, and never another live process's."""
    key = os.path.realpath(folder)
    if key in _SWEPT or os.name == "nt":  # os.kill(pid, 0) would end the process on Windows
        return
    _SWEPT.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        m = _TEMP_NAME.fullmatch(e.name)
        if m and int(m.group(1)) != os.getpid() and not _running(int(m.group(1))):
            with contextlib.suppress(OSError):
                if e.is_file(follow_symlinks=False):
                    os.unlink(e.path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: sends nothing, only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any pid
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


# -- stdout --------------------------------------------------------------------------------------
def write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as exc:
        stdout_failed(exc)


def stdout_failed(exc: OSError):
    silence_stdout()
    raise SlimfastError(f"cannot write to stdout: {os_reason(exc)}") from None


def silence_stdout() -> None:
    """After a failed write to stdout (a closed pipe, a full disk), send the rest to /dev/null:
    Python flushes stdout again at exit and would print a second error there, with a traceback."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (captured): nothing to flush later
        target = sys.stdout.fileno()
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, target)
        os.close(fd)
