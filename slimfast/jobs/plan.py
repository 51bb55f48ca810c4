"""Output names, and the checks that run before anything is written.

``output`` is ``None`` (each output beside its input: ``photo.png`` -> ``photo.sfi``,
``photo.sfi`` -> ``photo.png``, for upgrade ``photo.upgraded.sfi``, or ``photo.sfi`` itself with
``force``), ``-`` (stdout, one input), a folder (an existing one, or a name ending in ``/``; always
for several inputs) or a file (one input).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from ..errors import SlimfastError
from . import COMMANDS, Job, Options
from .images import SFI_FORMAT, image_format_of, output_format, suffix_for

SFI = ".sfi"
UPGRADED = ".upgraded.sfi"


def plan(inputs: Sequence[str], output: str | None, options: Options) -> list[Job]:
    """One :class:`Job` per input, its output named; a :class:`SlimfastError` for anything
    that must not run (see :func:`check_plan`), before any file is read or written."""
    if options.command not in COMMANDS:
        raise SlimfastError(f"unknown command {options.command!r}; one of {', '.join(COMMANDS)}")
    inputs = [str(i) for i in inputs]
    _check_sources(inputs, output)
    folder = _output_folder(inputs, output, options.command)
    jobs = [Job(i, output_name(i, output, folder, options)) for i in inputs]
    check_plan(jobs, options)
    return jobs


def _check_sources(inputs: list[str], output: str | None) -> None:
    if not inputs:
        raise SlimfastError("give an input (use - for stdin)")
    if "-" in inputs and len(inputs) > 1:
        raise SlimfastError("- (stdin) cannot be combined with other inputs")
    if inputs == ["-"] and output is None:
        raise SlimfastError("stdin needs an output: -o FILE, or -o - for stdout")


def _output_folder(inputs: list[str], output: str | None, command: str) -> bool:
    """Whether ``output`` is a folder to put the outputs in, after checking that it can be. For
    one input, a folder named like the output itself (``y.png``, ``x.sfi``) is taken as the file
    name it looks like, and refused when written (``is a directory``), unless it ends in ``/``."""
    if output is None:
        return False
    if output == "-":
        if len(inputs) > 1:
            raise SlimfastError("several inputs need an output folder, not -")
        return False
    named_folder = Path(output).is_dir() and not _names_a_file(output, command)
    folder = len(inputs) > 1 or named_folder or output.endswith(("/", os.sep))
    if folder and not Path(output).is_dir():
        if Path(output).exists() or _names_a_file(output, command):
            raise SlimfastError(f"several inputs need an output folder, and {output} names a file")
        raise SlimfastError(f"output folder does not exist: {output}")
    return folder


def _names_a_file(output: str, command: str) -> bool:
    """Whether ``output``'s extension is that of the files ``command`` writes."""
    if command == "decompress":
        return image_format_of(output) not in (None, SFI_FORMAT)
    return output.lower().endswith(SFI)


def output_name(source: str, output: str | None, folder: bool, options: Options) -> str:
    """The output of ``source``: ``output`` itself, a name in the folder ``output``, or one beside it."""
    if output is not None and not folder:
        return output
    src = Path(source)
    if options.command == "upgrade":
        if folder:
            return str(Path(output) / src.name)
        return source if options.force else str(src.with_suffix("")) + UPGRADED
    suffix = SFI if options.command == "compress" else suffix_for(options.format)
    return str(Path(output) / (src.stem + suffix)) if folder else str(src.with_suffix(suffix))


def check_plan(jobs: Sequence[Job], options: Options) -> None:
    """Refuse, before anything is written and whatever ``force`` says: an input given twice, two
    inputs with one output, an output over an input (except ``upgrade`` in place with ``force``),
    an .sfi input to ``compress`` without ``allow_reencode``, .sfi bytes under an image extension
    and an image under .sfi (or a name that says no format)."""
    _refuse_repeated_inputs(jobs)
    if options.command == "compress" and not options.allow_reencode:
        for job in jobs:
            if job.source.lower().endswith(SFI):
                raise SlimfastError(reencode_message(job.source))
    for job in jobs:
        _check_output_name(job.output, options)
    _refuse_outputs_over_inputs(jobs, options)
    _refuse_collisions(jobs, options.command)


def reencode_message(source: str) -> str:
    return (f"{source} is already an .sfi file: compressing it would code its decoded pixels again, losing "
            "quality (use --allow-reencode to do it anyway, or slimfast upgrade for a file of a retired model)")


def _key(path: str) -> str:
    return os.path.normcase(os.path.realpath(path))


def _refuse_repeated_inputs(jobs: Sequence[Job]) -> None:
    seen: set[str] = set()
    for job in jobs:
        if job.source == "-":
            continue
        if _key(job.source) in seen:
            raise SlimfastError(f"the input {job.source} is given twice")
        seen.add(_key(job.source))


def _check_output_name(output: str, options: Options) -> None:
    if output == "-":
        return
    if options.command == "decompress":
        output_format(output, options.format)  # raises for .sfi or a name that says no format
        return
    fmt = image_format_of(output)
    if fmt is not None and fmt != SFI_FORMAT:
        raise SlimfastError(f"refusing to write .sfi bytes under the image extension {Path(output).suffix}: "
                            f"{output} (name it {Path(output).with_suffix(SFI)})")


def _refuse_outputs_over_inputs(jobs: Sequence[Job], options: Options) -> None:
    sources = {_key(j.source): j.source for j in jobs if j.source != "-"}
    for job in jobs:
        if job.output == "-" or _key(job.output) not in sources:
            continue
        in_place = options.command == "upgrade" and options.force and _key(job.output) == _key(job.source)
        if not in_place:
            raise SlimfastError(f"refusing to overwrite the input {sources[_key(job.output)]} "
                                "(name another output with -o)")


def _refuse_collisions(jobs: Sequence[Job], command: str) -> None:
    """Two inputs with one stem would write one output: refused before anything is written,
    --force or not (the second would silently replace the first)."""
    seen: dict[str, str] = {}
    for job in jobs:
        if job.output == "-":
            continue
        key = _key(job.output)
        if key in seen:
            raise SlimfastError(f"{seen[key]} and {job.source} would both be written to {job.output}; "
                                f"{command} them into different folders, or rename one")
        seen[key] = job.source


def declared_pixels(jobs: Sequence[Job], command: str, enough: int | None = None) -> int:
    """The pixels the inputs declare (an image's or an ``.sfi`` header's size, read without
    decoding), counted up to ``enough`` when given; inputs that cannot be read so (stdin, damaged
    files) count 0: their jobs say why."""
    total = 0
    for job in jobs:
        if enough is not None and total >= enough:
            break
        if job.source == "-":
            continue
        try:
            total += _declared(job.source, command)
        except Exception:  # noqa: BLE001  (the job itself reports the file's problem)
            continue
    return total


def _declared(path: str, command: str) -> int:
    if command == "compress":
        import warnings

        from PIL import Image

        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # a size, not a decode: no bomb check
        try:
            with warnings.catch_warnings(), Image.open(path) as im:
                warnings.simplefilter("ignore")
                return im.size[0] * im.size[1]
        finally:
            Image.MAX_IMAGE_PIXELS = saved
    from ..format import container

    w, h = container.unpack(container.read_file(path, header_only=True), header_only=True).image_size
    return w * h
