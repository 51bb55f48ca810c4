"""``slimfast upgrade FILE... --weights-from DIR``: files of a retired model version, re-encoded with
the current model of their family (:mod:`slimfast.jobs.upgrade`)."""
from __future__ import annotations

import argparse

from . import feedback, options
from .common import one_shot, settings

WARNING = ("slimfast: warning: upgrading decodes each file and encodes its pixels again, which loses quality a "
           "second time (generation loss); keep the originals where you can")
EXAMPLES = """\
examples:
  slimfast upgrade old.sfi --weights-from slimfast-0.5.1/slimfast/weights   -> old.upgraded.sfi
  slimfast upgrade *.sfi --weights-from old-weights/ -o upgraded/
  slimfast upgrade old.sfi --weights-from old-weights/ --force              in place"""


def add_parser(sub, default_model: str) -> None:
    u = sub.add_parser("upgrade", help="re-encode files of a retired model version with the current one",
                       usage="slimfast upgrade [options] FILE [FILE ...] [--weights-from DIR] [-o OUT]",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter, description=(
        "Decode .sfi files made with a model version this release no longer bundles, with that version's "
        "weights from DIR (a past release's slimfast/weights folder, or any folder of NAME.safetensors "
        "beside its NAME.json card), and encode them again with the current model of the same family at "
        "the nearest operating point: the same model and width where it is still bundled, else the "
        "family's point nearest in Kodak bpp (-m, -q or --width choose another; -m FAMILY alone, that family's "
        "point nearest in Kodak bpp, for a family no longer bundled). Each file goes to "
        "NAME.upgraded.sfi beside it, to -o (a file for one input, a folder for several), or with "
        "--force and no -o over itself. Files already made with a current model are left as they are. "
        "This is lossy: the pixels are coded a second time."))
    u.add_argument("paths", nargs="+", metavar="FILE", help=".sfi files")
    u.add_argument("--weights-from", default=None, metavar="DIR",
                   help="a folder with the retired version's weights and card (not needed where they are "
                        "installed on SLIMFAST_MODEL_PATH)")
    options.output(u, "the new .sfi file")
    options.model(u, "the current model of the file's family, at the nearest operating point",
                  family="its point nearest in rate, without -q or --width")
    options.quality(u)
    options.width(u)
    options.metadata(u)
    options.force(u, "overwrite existing outputs; without -o, replace each FILE itself")
    options.verbosity(u)
    options.threads(u)
    options.max_pixels(u, "image to decode", "a file above it is refused before decoding")
    u.set_defaults(func=run)


def run(args) -> int:
    from .. import jobs
    from .compress import is_batch

    opts = jobs.Options("upgrade", model=args.model, quality=args.quality, width=args.width, metadata=args.metadata,
                        force=args.force, weights_from=args.weights_from,
                        settings=settings(args, bf16_parts=()))
    planned = jobs.plan(args.paths, args.output, opts)
    opts = one_shot(opts, planned)
    if args.quality is not None:
        from ..codec import check_quality

        check_quality(args.quality)
    jobs.prepare(opts)
    return feedback.run(planned, opts, batch=is_batch(planned, args.output), quiet=args.quiet, verbose=args.verbose,
                        warning=WARNING)
