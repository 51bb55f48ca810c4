"""``slimfast compress IN... [-o OUT]``: images to .sfi files."""
from __future__ import annotations

import argparse

from ..errors import SlimfastError
from . import feedback, options, paths
from .common import one_shot, settings

EXAMPLES = """\
examples:
  slimfast compress photo.png                     -> photo.sfi beside it
  slimfast compress photo.png -o small.sfi -q 0
  slimfast compress *.png -o out/ --quality 75    several inputs into a folder
  slimfast compress photo.png x.sfi --max-bytes 30000
  slimfast compress photo.png --effort 2           smaller file, same decoder; seconds, not milliseconds
  slimfast compress - - < photo.png > photo.sfi"""


def add_parser(sub, default_model: str) -> None:
    c = sub.add_parser("compress", help="image(s) -> .sfi", usage="slimfast compress [options] IN [IN ...] [-o OUT]",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter, description=(
        "Compress images to .sfi files, each beside its input (photo.png -> photo.sfi) unless -o names the "
        "output: a file for one input, a folder for several, - for stdout. The older two-path form "
        "(compress IN OUT) stays where OUT ends in .sfi, is a folder or is -. Use - as the input to read stdin. "
        "An .sfi input is refused (it would be coded twice) unless --allow-reencode, and .sfi bytes are "
        "never written under an image extension (out.png)."))
    c.add_argument("paths", nargs="+", metavar="IN", help="input images (then, in the two-path form, the output)")
    options.output(c, "the .sfi file")
    options.model(c, default_model)
    options.quality(c)
    options.width(c)
    c.add_argument("--max-bytes", type=int, default=None, metavar="N",
                   help="N >= 1: the largest file of the family's operating points that fits N bytes; "
                        "an error (nothing written) if none does. Not with -q or --width")
    c.add_argument("--target-bpp", type=float, default=None, metavar="X",
                   help="X > 0: as --max-bytes, for at most X bits per pixel")
    options.effort(c)
    options.metadata(c)
    c.add_argument("--first-frame", action="store_true",
                   help="code an animated image's (GIF, WebP, APNG) first frame; without it one is refused, "
                        "since a .sfi file stores one frame")
    c.add_argument("--allow-reencode", action="store_true",
                   help="accept .sfi inputs: their decoded pixels are coded again, losing quality a second time")
    options.force(c, "overwrite existing outputs (nothing else)")
    options.verbosity(c)
    g = c.add_mutually_exclusive_group()
    g.add_argument("--bf16", action="store_true",
                   help="run the analysis in bf16 on OpenVINO (pip install 'slimfast[openvino]'; a CPU with AVX-512 "
                        "BF16 or AMX): faster encoding, a slightly different file at the bpp/PSNR change RESULTS.md "
                        "measures ('bf16'); every decoder reads it. The default (precision auto) already takes bf16 "
                        "there, for jobs of 16 MP and more, where the card allows it")
    options.fp32(g)
    options.threads(c)
    options.max_pixels(c, "input image",
                       "a larger one is refused before it is read (its file would need a higher limit to decode)")
    c.set_defaults(func=run)


def check_point_options(args) -> None:
    """-q, --max-bytes, --target-bpp: checked before any image is read, in the flags' names."""
    from ..codec import check_quality, check_size_limit

    if args.quality is not None:
        check_quality(args.quality)
    if (args.max_bytes is not None or args.target_bpp is not None) and (args.quality, args.width) != (None, None):
        flag = "-q/--quality" if args.quality is not None else "--width"
        raise SlimfastError(f"{flag} cannot be combined with --max-bytes or --target-bpp "
                            "(they choose the operating point: the largest file that fits)")
    check_size_limit(args.max_bytes, args.target_bpp, names=("--max-bytes", "--target-bpp"))


def run(args) -> int:
    from .. import jobs

    opts = jobs.Options("compress", model=args.model, quality=args.quality, width=args.width,
                        max_bytes=args.max_bytes, target_bpp=args.target_bpp, effort=args.effort,
                        metadata=args.metadata,
                        first_frame=args.first_frame, force=args.force, allow_reencode=args.allow_reencode,
                        settings=settings(args, bf16_parts=("analysis",)))
    inputs, out = paths.split(args.paths, args.output, "compress")
    planned = jobs.plan(inputs, out, opts)
    check_point_options(args)
    opts = one_shot(opts, planned)
    jobs.prepare(opts)
    return feedback.run(planned, opts, batch=is_batch(planned, out), quiet=args.quiet, verbose=args.verbose)


def is_batch(planned, out: str | None) -> bool:
    """Several files, or one into a folder (its output is named there): a summary line rather than the file's own."""
    return len(planned) > 1 or (out is not None and planned[0].output != out)
