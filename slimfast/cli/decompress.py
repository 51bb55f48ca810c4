"""``slimfast decompress IN... [-o OUT]``: .sfi files to images."""
from __future__ import annotations

from . import feedback, options, paths
from .common import one_shot, settings


def add_parser(sub) -> None:
    d = sub.add_parser("decompress", help=".sfi -> image", usage="slimfast decompress [options] IN [IN ...] [-o OUT]",
                       description=(
        "Decompress .sfi files, each beside its input (photo.sfi -> photo.png) unless -o names the output: a "
        "file for one input, a folder for several, - for PNG on stdout. The output format follows the "
        "extension (png, jpg, webp, tiff, bmp, ...), else --format. The older two-path form "
        "(decompress IN OUT) stays where OUT does not end in .sfi. The file names the model it needs."))
    d.add_argument("paths", nargs="+", metavar="IN", help=".sfi files (then, in the two-path form, the output)")
    options.output(d, "the image file")
    d.add_argument("--format", default=None,
                   help="output format (PNG, JPEG, WEBP, ...) where the name says none; names chosen for the "
                        "outputs then take its extension (default: PNG)")
    options.force(d, "overwrite existing outputs")
    options.verbosity(d)
    options.threads(d)
    options.max_pixels(d, "image to decode", "a file above it is refused before decoding, "
                                              "so that a hostile header cannot take all memory")
    options.int8_or_bf16(d)
    d.set_defaults(func=run)


def run(args) -> int:
    from .. import jobs
    from .compress import is_batch

    opts = jobs.Options("decompress", format=args.format, force=args.force,
                        settings=settings(args, bf16_parts=("synthesis",)))
    inputs, out = paths.split(args.paths, args.output, "decompress")
    planned = jobs.plan(inputs, out, opts)
    opts = one_shot(opts, planned)
    return feedback.run(planned, opts, batch=is_batch(planned, out), quiet=args.quiet, verbose=args.verbose)
