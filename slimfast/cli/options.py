"""The options several commands share, declared once so that their help reads the same."""
from __future__ import annotations

import argparse


def quality_arg(text: str) -> float:
    """-q's value as a number; its range is checked with the API's own message (nan included)."""
    try:
        return float(text)
    except ValueError:
        from ..codec import QUALITY_RANGE

        raise argparse.ArgumentTypeError(f"quality must be {QUALITY_RANGE}, not {text!r}") from None


def effort_arg(text: str) -> int:
    """--effort's value: a whole number in the codec's range, checked with the API's own message."""
    from ..codec import EFFORT_RANGE, check_effort
    from ..errors import SlimfastError

    try:
        return check_effort(int(text))
    except (ValueError, SlimfastError):
        raise argparse.ArgumentTypeError(f"effort must be {EFFORT_RANGE}, not {text!r}") from None


def default_model_text() -> str:
    """The default model and the quality its own point stands for, for --help (read from the cards)."""
    try:
        from ..codec import default_quality_range, model_info
        from ..settings import Settings

        path = Settings.from_env().model_path
        info = model_info(None, path)
        low, high = default_quality_range(info, path)
    except Exception:  # noqa: BLE001 - help must print even where no model loads
        return "the default model"
    return f"{info.name}, whose own point is quality {low:.4g} to {high:.4g} (e.g. {(low + high) / 2:.4g})"


def model(sp, default_model: str, family: str = "its default model") -> None:
    sp.add_argument("-m", "--model", default=None, metavar="NAME",
                    help=f"model or family name from `slimfast models` (a family: {family}); "
                         f"default: {default_model}")


def quality(sp) -> None:
    sp.add_argument("-q", "--quality", type=quality_arg, default=None, metavar="Q",
                    help="0 to 100, higher is better, fractions allowed. Hyperprior families (fasinet-h-mse, "
                         "slim-fasinet-h-mse) move continuously: 75 is the family's default point as trained, "
                         "other values code a nearby point at a finer or coarser quantization step "
                         "(`slimfast models` shows which point each range uses). Other families pick one of "
                         "their n points evenly, point floor(Q / 100 * n) from the smallest file. "
                         "Default: the model's own point")


def effort(sp) -> None:
    from ..codec import MAX_EFFORT

    sp.add_argument("-e", "--effort", type=effort_arg, default=0, metavar="N",
                    help=f"encoder effort, 0 to {MAX_EFFORT} (like cwebp -m, cjxl -e): 0, the default, codes the "
                         "analysis' latents as they are; 1, 2, 3 refine them for each image and keep the file of "
                         "lowest bits + lambda * MSE, never higher than effort 0's (a smaller file, a better image "
                         "or both), in about 3, 9 and 21 s for a 768x512 image on one core (effort 0: about 0.05 s). "
                         "The decoder and the format do not change. Above 0 needs PyTorch (pip install "
                         "'slimfast[torch]') and a model trained for MSE; with --max-bytes / --target-bpp the point "
                         "effort 0 picks is refined within the limit")


def width(sp) -> None:
    sp.add_argument("-w", "--width", type=int, default=None, metavar="W",
                    help="latent channels of a slimmable model: one of its widths (48 72 96 144 192 for the bundled ones)")


def metadata(sp) -> None:
    sp.add_argument("--metadata", choices=("all", "icc", "none"), default="all",
                    help="what to keep besides pixels: all (ICC profile, EXIF with orientation reset to 1, XMP; "
                         "the default), icc (ICC profile only: EXIF may hold the GPS location) or none")


def threads(sp) -> None:
    sp.add_argument("--threads", type=int, default=None, metavar="N",
                    help="CPU threads for the networks, N >= 1 (default: all cores)")


def max_pixels(sp, what: str, why: str) -> None:
    from ..settings import DEFAULT_MAX_PIXELS

    sp.add_argument("--max-pixels", type=int, default=None, metavar="N",
                    help=f"largest {what}, in pixels, N >= 1 (default: SLIMFAST_MAX_PIXELS, else "
                         f"{DEFAULT_MAX_PIXELS}); {why}")


def int8_or_bf16(sp, bf16_both: bool = False) -> None:
    g = sp.add_mutually_exclusive_group()
    g.add_argument("--int8", action="store_true",
                   help="decode with int8 synthesis: faster, at the small PSNR cost the model card records "
                        "(int8_synthesis); the decoded symbols are the same. `slimfast models --json` shows which "
                        "models are calibrated for it (int8_synthesis: null where not) and at what cost")
    g.add_argument("--bf16", action="store_true",
                   help=("encode and decode with bf16 analysis and synthesis" if bf16_both else
                         "decode with bf16 synthesis") + " on OpenVINO (pip install 'slimfast[openvino]'; a CPU "
                        "with AVX-512 BF16 or AMX): faster, at the small cost RESULTS.md measures ('bf16')"
                        + ("" if bf16_both else "; the decoded symbols are the same") + ". The default (precision "
                        "auto) already takes bf16 there, for jobs of 16 MP and more, where the card allows it")
    fp32(g)


def fp32(g) -> None:
    g.add_argument("--fp32", action="store_true",
                   help="fp32 transforms, whatever precision auto would take: the pixels (and files) every machine "
                        "computes alike")


def output(sp, one: str) -> None:
    sp.add_argument("-o", "--output", default=None, metavar="OUT",
                    help=f"{one} for one input, a folder for several (- for stdout); default: beside each input")


def force(sp, what: str = "overwrite existing outputs") -> None:
    sp.add_argument("-f", "--force", action="store_true", help=what)


def verbosity(sp) -> None:
    talk = sp.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="a line per file: bytes, bpp, size, time (a single file prints it anyway)")
    talk.add_argument("--quiet", action="store_true", help="print nothing on success (errors still print their line)")
