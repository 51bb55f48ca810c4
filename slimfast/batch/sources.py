"""Sources to jobs: folders, globs and text files of paths, each output named under the destination.

* A **folder** contributes every file under it that the command reads (images for compress,
  ``.sfi`` files for decompress), hidden files and folders left out; its outputs mirror its tree
  under the destination (``photos/2024/a.png`` -> ``DST/2024/a.sfi`` for the source ``photos``).
* A **glob** (``'photos/**/*.jpg'``, quoted so that the shell leaves it to slimfast; ``**``
  crosses folders) contributes its matches: a folder as above, a file as a listed file.
* A **text file of paths**, one a line (``@FILE``, ``@-`` for stdin, or any source ending in
  ``.txt``, ``.lst`` or ``.list``), contributes its entries as listed files (a folder among them
  as a folder). Relative entries are taken from the current folder, as ``tar -T`` takes them.
* A **file** named directly is a listed file.

Listed files go by their path relative to the folder that holds them all (their common parent),
so that ``a/x.png`` and ``b/x.png`` stay apart. Paths are made absolute: workers may run with
another current folder, or on another machine that mounts the same file system.
"""
from __future__ import annotations

import glob
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SlimfastError
from ..jobs import Job, Options
from ..jobs.images import suffix_for
from ..jobs.plan import SFI

GLOB_CHARS = frozenset("*?[")
LIST_SUFFIXES = (".txt", ".lst", ".list")


@dataclass
class Sources:
    folders: list[str] = field(default_factory=list)
    listed: list[str] = field(default_factory=list)

    def add(self, path: str) -> None:
        (self.folders if os.path.isdir(path) else self.listed).append(os.path.abspath(path))


def expand(srcs: Iterable[str]) -> Sources:
    """Every source sorted into folders and listed files; a missing source or a glob that matches
    nothing is an error (a missing entry of a list is not: it is that file's failure, recorded)."""
    found = Sources()
    for src in srcs:
        if src.startswith("@"):
            _add_list(found, src[1:])
        elif os.path.isfile(src) and src.lower().endswith(LIST_SUFFIXES):
            _add_list(found, src)
        elif os.path.lexists(src):
            found.add(src)
        elif GLOB_CHARS & set(src):
            matches = sorted(glob.glob(src, recursive=True))
            if not matches:
                raise SlimfastError(f"no file matches {src}")
            for m in matches:
                found.add(m)
        else:
            raise SlimfastError(f"no such file or folder: {src}")
    return found


def _add_list(found: Sources, name: str) -> None:
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8", errors="surrogateescape") as f:
                text = f.read()
    except OSError as exc:
        raise SlimfastError(f"cannot read the list {name}: {exc.strerror or exc}") from None
    for line in text.splitlines():
        if line.strip():
            found.add(line)


def reads(name: str, options: Options) -> bool:
    """Whether a file found in a folder is one the command reads, by its extension."""
    suffix = os.path.splitext(name)[1].lower()
    if options.command == "decompress":
        return suffix == SFI
    if suffix == SFI:
        return options.allow_reencode
    return suffix in _image_extensions()


def _image_extensions() -> frozenset[str]:
    from PIL import Image

    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def walk(folder: str, options: Options, exclude: frozenset[str]) -> Iterator[str]:
    """The files under ``folder`` the command reads, in a stable order, hidden entries and the
    folders in ``exclude`` (real paths: the destination, when it lies inside) left out."""
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and os.path.realpath(os.path.join(root, d)) not in exclude)
        for name in sorted(files):
            if not name.startswith(".") and reads(name, options):
                yield os.path.join(root, name)


def output_suffix(options: Options) -> str:
    return SFI if options.command == "compress" else suffix_for(options.format)


def collect(srcs: Iterable[str], dst: str, options: Options) -> list[Job]:
    """One job per input, its output under ``dst`` (absolute paths), before any check."""
    found = expand(srcs)
    dst = os.path.abspath(dst)
    suffix = output_suffix(options)
    exclude = frozenset({os.path.realpath(dst)})
    jobs = []
    for folder in found.folders:
        jobs += [_job(f, folder, dst, suffix) for f in walk(folder, options, exclude)]
    if found.listed:
        parent = os.path.commonpath([os.path.dirname(f) for f in found.listed])
        jobs += [_job(f, parent, dst, suffix) for f in found.listed]
    if not jobs:
        raise SlimfastError("the sources hold no file to " + options.command)
    return jobs


def _job(source: str, base: str, dst: str, suffix: str) -> Job:
    rel = Path(os.path.relpath(source, base))
    return Job(source, str(Path(dst) / rel.with_suffix(suffix)))
