"""Running a plan's jobs with feedback like the image tools give: one line for one file, and for
several a progress bar (only where stderr is a terminal), a line per file with ``-v``, then one
summary line; ``--quiet`` leaves only the errors."""
from __future__ import annotations

import sys

from ..errors import SlimfastError
from .common import error_line, note


def file_line(r, command: str) -> str:
    """What one file gave, in a line; a skipped one, why."""
    if r.status == "skipped":
        return f"{r.source}: {r.error}; left as it is"
    w, h = r.image_size
    ms = f"{r.seconds * 1000:.0f} ms"
    if command == "upgrade":
        return (f"{r.source} -> {r.output}: {r.source_model} v{r.source_version} -> {r.model} v{r.version}, "
                f"{r.bytes_in} -> {r.bytes_out} bytes, {r.bpp:.4f} bpp, {ms}")
    if command == "compress":
        return f"{r.source} -> {r.output}: {r.bytes_out} bytes, {r.bpp:.4f} bpp, {w}x{h}, {ms}"
    return f"{r.source} -> {r.output}: {w}x{h} {r.mode}, {ms}"


def human_bytes(n: int) -> str:
    """Decimal units, as ls -h --si and the image tools print them: 950 B, 52.1 kB, 1.9 MB."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 999.95 or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def summary_line(records) -> str:
    """The batch's one summary line: files, bytes in and out, mean bpp over the files written."""
    done = [r for r in records if r.ok]
    skipped = sum(r.status == "skipped" for r in records)
    counted = len(done) + skipped
    files = f"{len(records)} files" if counted == len(records) else f"{counted} of {len(records)} files"
    tail = f", {skipped} already current" if skipped else ""
    if not done:
        return f"{files}: nothing written{tail}"
    bytes_in = sum(r.bytes_in for r in done)
    bytes_out = sum(r.bytes_out for r in done)
    bpp = sum(r.bpp for r in done) / len(done)
    return f"{files}: {human_bytes(bytes_in)} -> {human_bytes(bytes_out)}, {bpp:.2f} bpp mean{tail}"


def run_one(job, options, quiet: bool, warning: str | None = None) -> int:
    """One file: its line (none for stdout or with ``quiet``), or its error as the command's."""
    from ..jobs import code_file

    r = code_file(job, options)
    if r.status == "failed":
        raise SlimfastError(r.error)
    if warning and r.ok and not quiet:
        note(warning)
    if not quiet and (r.output != "-" or r.status == "skipped"):
        note(file_line(r, options.command))
    return 0


def run_batch(jobs, options, quiet: bool = False, verbose: bool = False, warning: str | None = None) -> int:
    """Every job; a failure is one line on stderr and the others go on. Exit status 1 if any failed."""
    from tqdm import tqdm

    from ..jobs import code_file

    records = []
    with tqdm(total=len(jobs), unit="img", file=sys.stderr, disable=quiet or not _stderr_is_terminal()) as bar:
        for job in jobs:
            r = code_file(job, options)
            if warning and r.ok and not quiet and not any(x.ok for x in records):
                tqdm.write(warning, file=sys.stderr)
            records.append(r)
            if r.status == "failed":
                tqdm.write(error_line(f"{job.source}: {r.error}"), file=sys.stderr)
            elif verbose and not quiet:
                tqdm.write(file_line(r, options.command), file=sys.stderr)
            bar.update(1)
    if not quiet:
        note(summary_line(records))
    return 0 if all(r.status != "failed" for r in records) else 1


def run(jobs, options, batch: bool, quiet: bool = False, verbose: bool = False, warning: str | None = None) -> int:
    """``warning``: a line printed once, with the first file written (an error alone stays one line)."""
    if batch:
        return run_batch(jobs, options, quiet=quiet, verbose=verbose, warning=warning)
    return run_one(jobs[0], options, quiet, warning)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False
