"""``slimfast demo [IMAGE]``: the main job on one photo, with size, bpp, PSNR and times."""
from __future__ import annotations

import time
from pathlib import Path

from . import options
from .common import one_shot_settings, say, settings

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "kodim23.png"


def add_parser(sub, default_model: str) -> None:
    dm = sub.add_parser("demo", help="compress + decompress the bundled sample photo and report", description=(
        "The main job: compress and decompress a photo (default: the bundled kodim23.png) with the "
        "default model, then print size, bpp, PSNR and times."))
    dm.add_argument("image", nargs="?", default=None)
    options.model(dm, default_model)
    options.quality(dm)
    dm.add_argument("-o", "--output", default=None, metavar="FILE.sfi", help="also keep the compressed file")
    dm.add_argument("-f", "--force", action="store_true")
    options.threads(dm)
    options.int8_or_bf16(dm, bf16_both=True)
    dm.set_defaults(func=run)


def _timed(fn):
    """``fn()``'s result and seconds, after one warm-up call (it pays for lazy imports and graph builds)."""
    fn()
    t0 = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - t0


def run(args) -> int:
    from ..codec import decompress, load
    from ..format.imageio import open_image
    from ..jobs.files import write_atomic
    from ..metrics import psnr

    s = settings(args, bf16_parts=("analysis", "synthesis"))  # the demo codes both ways
    path = args.image or str(SAMPLE)
    img = open_image(path, s.max_pixels)
    s = one_shot_settings(s, img.size[0] * img.size[1] * 2)  # coded both ways
    codec = load(args.model, settings=s)
    data, encode_s = _timed(lambda: codec.compress(img, quality=args.quality))
    rec, decode_s = _timed(lambda: decompress(data, settings=s))
    if args.output:
        write_atomic(Path(args.output), data, args.force)
    w, h = img.size
    say(f"image    {path} ({w}x{h} {img.mode})")
    say(f"model    {_model_text(codec, args, s)}")
    say(f"size     {len(data)} bytes" + (f" -> {args.output}" if args.output else ""))
    say(f"bpp      {len(data) * 8 / (w * h):.4f}")
    say(f"PSNR     {psnr(img.rgb, rec):.2f} dB")
    say(f"encode   {encode_s * 1000:.0f} ms")
    say(f"decode   {decode_s * 1000:.0f} ms")
    return 0


def _model_text(codec, args, s) -> str:
    """The operating point the file was made with, its version, backend and precisions."""
    from ..codec import backend, resolved_precision
    from ..zoo import get

    point = codec.resolve(args.quality, None)
    info = get(point.model, model_path=s.model_path)
    where = f", width {point.width}" if point.width else ""
    p = {part: resolved_precision(info, s, part) for part in ("analysis", "synthesis")}
    precision = ("" if p == {"analysis": "fp32", "synthesis": "fp32"} else
                 f", {p['analysis']} analysis, {p['synthesis']} synthesis" + (" (OpenVINO)" if "bf16" in p.values() else ""))
    return f"{point.model}{where} (v{info.version}), {backend(s, info.architecture)} backend{precision}"
