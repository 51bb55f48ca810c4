"""The comparison page's work: one codec at a target size, the largest file not above it,
decoded back and measured (bytes, bpp, PSNR, MS-SSIM, encode and decode time).

slimfast, WebP, AVIF and JPEG search their quality by bisection (slimfast's families without a
quality knob pick among their operating points, as ``max_bytes`` does). The traditional
codecs are Pillow's, with the settings of the project's evaluation (README, "Benchmarks"),
written here because the server must not import the evaluation tools.
"""
from __future__ import annotations

import base64
import io
import math
import time
from dataclasses import dataclass

import numpy as np

from .. import metrics
from .jobs import JobError, Limits, codec, open_upload, rgb_of


@dataclass(frozen=True)
class PillowCodec:
    fmt: str          # Pillow's format name
    feature: str      # PIL.features name
    media_type: str
    qualities: tuple[int, int]
    options: tuple    # fixed save options besides quality

    def available(self) -> bool:
        from PIL import features

        try:
            return bool(features.check(self.feature))
        except Exception:  # noqa: BLE001 - a feature name this Pillow does not know
            return False

    def encode(self, rgb: np.ndarray, quality: int) -> bytes:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buf, self.fmt, quality=quality, **dict(self.options))
        return buf.getvalue()


PILLOW_CODECS = {
    "webp": PillowCodec("WEBP", "webp", "image/webp", (0, 100), (("method", 4),)),
    "avif": PillowCodec("AVIF", "avif", "image/avif", (0, 100), (("speed", 6), ("subsampling", "4:2:0"))),
    "jpeg": PillowCodec("JPEG", "jpg", "image/jpeg", (1, 100), (("subsampling", 2),)),  # 2: 4:2:0
}
CODECS = ("slimfast", *PILLOW_CODECS)


def availability() -> dict[str, bool]:
    """Which comparison codecs this installation has (AVIF needs a Pillow built with libavif)."""
    return {"slimfast": True, **{name: c.available() for name, c in PILLOW_CODECS.items()}}


def byte_limit(params: dict, size: tuple[int, int]) -> int:
    if params.get("max_bytes") is not None:
        return params["max_bytes"]
    return math.floor(params["target_bpp"] * size[0] * size[1] / 8)


def largest_fitting(encode, low: int, high: int, limit: int) -> tuple[int, bytes]:
    """(quality, file) of the largest file not above ``limit`` over integer qualities in
    [low, high], by bisection (sizes grow with quality, nearly always); among the files tried,
    the largest that fits, so a non-monotone step never returns one above the limit."""
    tried = {q: encode(q) for q in (low, high)}
    if len(tried[low]) > limit:
        raise JobError(422, f"does not fit {limit} bytes: the smallest file (quality {low}) is {len(tried[low])} bytes")
    while high - low > 1 and len(tried[high]) > limit:
        mid = (low + high) // 2
        tried[mid] = encode(mid)
        low, high = (mid, high) if len(tried[mid]) <= limit else (low, mid)
    fits = [(len(d), q) for q, d in tried.items() if len(d) <= limit]
    q = max(fits)[1]
    return q, tried[q]


def _timed(fn, *args):
    t0 = time.perf_counter()
    out = fn(*args)
    return out, (time.perf_counter() - t0) * 1000


def _best_ms(fn, runs: int = 2) -> float:
    """The fastest of ``runs`` calls: a first call may still be loading a model or warming caches."""
    return min(_timed(fn)[1] for _ in range(runs))


def _pillow_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def run_pillow(name: str, rgb: np.ndarray, limit: int) -> dict:
    c = PILLOW_CODECS[name]
    if not c.available():
        raise JobError(501, f"{name} is not available: this Pillow build has no {c.feature} support")
    q, data = largest_fitting(lambda q: c.encode(rgb, q), *c.qualities, limit)
    return {"setting": f"quality {q}", "quality": q, "media_type": c.media_type, "data": data,
            "decoded": _pillow_decode(data), "encode_ms": _best_ms(lambda: c.encode(rgb, q), 1),
            "decode_ms": _best_ms(lambda: _pillow_decode(data))}


def _slimfast_points(model: str | None) -> list[tuple[str, object]]:
    """(label, encoder) for each operating point of the model's family, smallest files first;
    the models are loaded here, so that no encode time below includes a load."""
    c = codec(model)
    if c.widths:
        return [(f"width {p.width}", lambda rgb, w=p.width: c.compress(rgb, width=w)) for p in c.operating_points()]
    return [(p.model, codec(p.model).compress) for p in c.operating_points()]


def run_slimfast(model: str | None, rgb: np.ndarray, limit: int) -> dict:
    import slimfast

    from ..codec import knob_for
    from ..coding.intmath import STEP_ONE
    from ..errors import SlimfastError

    try:
        points = [(label, enc, enc(rgb)) for label, enc in _slimfast_points(model)]
    except SlimfastError as exc:
        raise JobError(422, str(exc)) from None
    listed = [{"label": label, "bytes": len(d), "fits": len(d) <= limit} for label, _, d in points]
    c = codec(model)
    if knob_for(c.info, c.settings.model_path) is not None:  # the quality knob: every quality a size
        q, data = largest_fitting(lambda q: c.compress(rgb, quality=q), 0, 100, limit)
        enc, point = (lambda rgb, q=q: c.compress(rgb, quality=q)), c.resolve(q, None)
        chosen = f"width {point.width}" if c.widths else point.model
        label = f"quality {q} ({chosen}, step {point.step / STEP_ONE:.2f})"
    else:
        fitting = [p for p in points if len(p[2]) <= limit]
        if not fitting:
            raise JobError(422, f"does not fit {limit} bytes: the smallest file is "
                                f"{min(len(p[2]) for p in points)} bytes")
        label, enc, data = max(fitting, key=lambda p: len(p[2]))
        chosen = label
    for p in listed:
        p["chosen"] = p["label"] == chosen
    decode = lambda: slimfast.decompress(data, threads=1)  # noqa: E731
    return {"setting": label, "points": listed, "media_type": "application/x-slimfast", "data": data,
            "decoded": np.asarray(decode().convert("RGB")), "encode_ms": _best_ms(lambda: enc(rgb), 1),
            "decode_ms": _best_ms(decode), "model": c.name, "widths": c.widths}


def _png_data_url(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(buf, "PNG", compress_level=1)  # loopback: speed over size
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def compare(raw: bytes, name: str, params: dict, limits: Limits) -> dict:
    """One codec of the comparison, as the page shows it (JSON-ready)."""
    rgb = rgb_of(open_upload(raw, limits.max_pixels))
    h, w = rgb.shape[:2]
    limit = byte_limit(params, (w, h))
    if name == "slimfast":
        out = run_slimfast(params.get("model"), rgb, limit)
    else:
        out = run_pillow(name, rgb, limit)
    data, decoded = out.pop("data"), out.pop("decoded")
    q = metrics.quality(rgb, decoded)  # MS-SSIM in numpy; None below its five scales' minimum size
    return {"codec": name, **out, "width": w, "height": h, "limit_bytes": limit, "bytes": len(data),
            "bpp": len(data) * 8 / (w * h), "psnr": None if math.isinf(q["psnr"]) else q["psnr"],
            "msssim": q["msssim"], "image": _png_data_url(decoded),
            "file": base64.b64encode(data).decode("ascii")}
