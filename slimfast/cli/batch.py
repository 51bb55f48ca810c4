"""``slimfast batch SRC... --out DST``: a whole corpus through the per-file pipeline of ``compress``,
on Ray Data or a process pool, resumable from its manifest (:mod:`slimfast.batch`).

Until ``main.py`` registers it, ``python -m slimfast.cli.batch SRC... --out DST`` runs it.
"""
from __future__ import annotations

import argparse
import sys

from ..errors import SlimfastError
from . import options
from .common import Parser, error_line, guard, note, settings
from .feedback import human_bytes

EXAMPLES = """\
examples:
  slimfast batch photos/ --out compressed/                 every image under photos/, its tree mirrored
  slimfast batch 'photos/**/*.jpg' --out out/ -q 75        a glob (quoted: slimfast expands it)
  slimfast batch @list.txt --out out/ --executor local     a text file of paths, one a line (or list.txt)
  slimfast batch photos/ --out out/ --address HEAD:6379    on a Ray cluster started with `ray start --head`
  slimfast batch out/ --out restored/ --decompress         .sfi files back to PNG
Running the same command again resumes: inputs already done with the same options are skipped."""


def add_parser(sub, default_model: str) -> None:
    b = sub.add_parser("batch", help="a whole corpus on many workers (Ray Data or processes), resumable",
                       usage="slimfast batch [options] SRC [SRC ...] --out DST", epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter, description=(
        "Compress every image of the sources into DST, as slimfast compress would (the same bytes for the same "
        "options and --threads), on Ray Data or a pool of local processes. A source is a folder (its tree is "
        "mirrored under DST), a glob, a text file of paths (@FILE, or a name ending in .txt, .lst or .list) or "
        "a file; listed files go by their path relative to their common parent. Two inputs with one output are "
        "refused before anything is written. A Parquet manifest (DST/slimfast-manifest.parquet) records every "
        "input; a rerun skips the inputs done with the same options and redoes the rest. A failed input is "
        "recorded and the others go on; the exit status is then 1."))
    b.add_argument("sources", nargs="+", metavar="SRC", help="folders, globs, lists of paths (@FILE) or files")
    b.add_argument("-o", "--out", required=True, metavar="DST", help="the output folder (made if missing)")
    b.add_argument("--decompress", action="store_true", help="decompress .sfi files to images instead")
    _coding_options(b, default_model)
    _executor_options(b)
    b.add_argument("--manifest", default=None, metavar="PATH",
                   help="the Parquet manifest (default: DST/slimfast-manifest.parquet)")
    options.force(b, "overwrite existing outputs that an earlier batch did not write (its own it replaces anyway)")
    options.verbosity(b)
    options.max_pixels(b, "image", "a larger one fails (and is recorded)")
    b.set_defaults(func=run)


def _coding_options(b, default_model: str) -> None:
    options.model(b, default_model)
    options.quality(b)
    options.width(b)
    b.add_argument("--max-bytes", type=int, default=None, metavar="N",
                   help="N >= 1: each file the largest that fits N bytes (as slimfast compress --max-bytes)")
    b.add_argument("--target-bpp", type=float, default=None, metavar="X", help="X > 0: as --max-bytes, in bits per pixel")
    options.effort(b)
    options.metadata(b)
    b.add_argument("--first-frame", action="store_true", help="code an animated image's first frame")
    b.add_argument("--allow-reencode", action="store_true", help="accept .sfi inputs (coded a second time)")
    b.add_argument("--format", default=None, help="--decompress: the output format (default: PNG)")
    options.int8_or_bf16(b, bf16_both=True)


def _executor_options(b) -> None:
    g = b.add_argument_group("executor")
    g.add_argument("--executor", choices=("ray", "local"), default=None,
                   help="ray: Ray Data (the default where the slimfast[ray] extra is installed); local: a process pool")
    g.add_argument("--workers", type=int, default=None, metavar="N",
                   help="worker processes, each loading the codec once (default: CPUs // --threads, of the cluster for ray)")
    g.add_argument("--threads", type=int, default=1, metavar="N", help="CPU threads per worker (default: 1)")
    g.add_argument("--address", default=None, metavar="ADDR",
                   help="ray: an existing cluster (HOST:PORT of `ray start --head`, ray://HOST:10001, or auto); "
                        "default: a local Ray instance with workers x threads CPUs")
    g.add_argument("--batch-size", type=int, default=4, metavar="N", help="files per hand-out to a worker (default: 4)")


def options_of(args):
    """The per-file pipeline's options from the flags, checked in the flags' names."""
    from .. import jobs
    from .compress import check_point_options

    command = "decompress" if args.decompress else "compress"
    if args.threads < 1:
        raise SlimfastError("--threads must be at least 1")
    compress_only = [f for f, v in (("-m", args.model), ("-q", args.quality), ("--width", args.width),
                                    ("--max-bytes", args.max_bytes), ("--target-bpp", args.target_bpp),
                                    ("--allow-reencode", args.allow_reencode), ("--first-frame", args.first_frame)) if v]
    if args.decompress and compress_only:
        raise SlimfastError(f"{compress_only[0]} applies to compression, not --decompress")
    if args.int8 and not args.decompress:
        raise SlimfastError("--int8 applies to --decompress (int8 synthesis)")
    if args.format and not args.decompress:
        raise SlimfastError("--format applies to --decompress (compress writes .sfi files)")
    if command == "compress":
        check_point_options(args)
    return jobs.Options(command, model=args.model, quality=args.quality, width=args.width, max_bytes=args.max_bytes,
                        target_bpp=args.target_bpp, effort=args.effort, metadata=args.metadata,
                        first_frame=args.first_frame,
                        format=args.format, force=args.force, allow_reencode=args.allow_reencode,
                        settings=settings(args, bf16_parts=("synthesis",) if args.decompress else ("analysis",)))


class Feedback:
    """A progress bar where stderr is a terminal, a line per failure (and per file with ``-v``)."""

    def __init__(self, quiet: bool, verbose: bool):
        self.quiet, self.verbose, self.bar = quiet, verbose, None

    def __call__(self, rows: list[dict], total: int) -> None:
        from tqdm import tqdm

        from .feedback import _stderr_is_terminal

        planned = self.bar is None  # the first call: the rows the plan settled (kept, or failed before the work)
        if planned:
            self.bar = tqdm(total=total, unit="img", file=sys.stderr, disable=self.quiet or not _stderr_is_terminal())
        for r in rows:
            if r["status"] == "failed":
                tqdm.write(error_line(f"{r['source']}: {r['error']}"), file=sys.stderr)
            elif self.verbose and not self.quiet and not planned:
                tqdm.write(f"{r['source']} -> {r['output']}: {r['bytes_out']} bytes, {r['bpp']:.4f} bpp, "
                           f"{r['seconds'] * 1000:.0f} ms", file=sys.stderr)
        self.bar.update(len(rows))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summary_line(s, command: str, executor: str) -> str:
    """Files, bytes saved, mean bpp, images per second: the batch's one line."""
    counts = f"{s.files} files: {s.coded} coded, {s.kept} already done, {s.failed} failed"
    if not s.coded + s.kept:
        return f"{counts}; nothing written"
    sizes = f"{human_bytes(s.bytes_in)} -> {human_bytes(s.bytes_out)}"
    if command == "compress":
        sizes += f" ({human_bytes(max(s.bytes_in - s.bytes_out, 0))} saved)"
    bpp = f", {s.mean_bpp:.3f} bpp mean" if s.mean_bpp is not None else ""
    if not s.coded:
        return f"{counts}; {sizes}{bpp}"
    speed = f"{s.images_per_second:.1f} images/s on {s.workers} {executor} worker{'s' * (s.workers != 1)}"
    return f"{counts}; {sizes}{bpp}; {speed}"


def run(args) -> int:
    from ..batch import BatchConfig
    from ..batch import run as run_batch
    from ..batch.runner import default_executor

    opts = options_of(args)
    config = BatchConfig(executor=args.executor or default_executor(), workers=args.workers, batch_size=args.batch_size,
                         address=args.address, manifest=args.manifest)
    feedback = Feedback(args.quiet, args.verbose)
    try:
        summary = run_batch(args.sources, args.out, opts, config, progress=feedback)
    except BaseException as exc:  # Ctrl-C or a signal (common.Signalled) included: guard gives the exit status
        feedback.close()
        if not isinstance(exc, SlimfastError):
            note("slimfast: the manifest records what is done: run the same command again to resume")
        raise
    feedback.close()
    if not args.quiet:
        note(summary_line(summary, opts.command, config.executor))
    return 1 if summary.failed else 0


def main(argv: list[str] | None = None) -> int:
    """``slimfast batch`` on its own (before the main parser registers it; tests and benchmarks)."""
    from .options import default_model_text

    parser = Parser(prog="slimfast")
    add_parser(parser.add_subparsers(dest="command"), default_model_text())
    args = parser.parse_args(["batch", *(sys.argv[1:] if argv is None else argv)])
    return guard(lambda: args.func(args), signals=True)


if __name__ == "__main__":
    sys.exit(main())
