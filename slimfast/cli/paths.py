"""The command line's path grammar: ``COMMAND IN... [-o OUT]``, and today's two-path form.

Without ``-o``, the last of several paths is still the output where it can only be one: for
``compress`` when it ends in ``.sfi``, is an existing folder (or ends in ``/``) or is ``-``; for
``decompress`` when it does not end in ``.sfi`` (``x.sfi y.png``), is a folder or is ``-``. Any
other path is an input, written beside itself (``photo.png`` -> ``photo.sfi``).
"""
from __future__ import annotations

import os
from pathlib import Path

from ..errors import SlimfastError


def _is_folder_name(path: str) -> bool:
    return Path(path).is_dir() or path.endswith(("/", os.sep))


def _is_output(path: str, command: str) -> bool:
    if path == "-" or _is_folder_name(path):
        return True
    is_sfi = path.lower().endswith(".sfi")
    return is_sfi if command == "compress" else not is_sfi


def split(paths: list[str], output: str | None, command: str) -> tuple[list[str], str | None]:
    """(inputs, output): ``-o``'s where given, else the two-path form's, else None (beside each)."""
    if output is not None or len(paths) < 2 or command not in ("compress", "decompress"):
        return paths, output
    if _is_output(paths[-1], command):
        return paths[:-1], paths[-1]
    if command == "compress" and not os.path.lexists(paths[-1]):
        raise _missing_last(paths[-1])
    return paths, None


def _missing_last(path: str) -> SlimfastError:
    """The last path names neither an input nor an output compress can write: refused before
    anything is written, as it was most likely meant as the output."""
    from ..jobs.images import SFI_FORMAT, image_format_of

    fmt = image_format_of(path)
    if fmt is not None and fmt != SFI_FORMAT:
        return SlimfastError(f"refusing to write .sfi bytes under the image extension {Path(path).suffix}: "
                             f"{path} (name it {Path(path).with_suffix('.sfi')})")
    return SlimfastError(f"no such file: {path} (an output file's name ends in .sfi; -o OUT names any output)")
