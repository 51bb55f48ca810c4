"""What a worker process runs for each request: plain functions from bytes and parameters to
a reply, raising :class:`JobError` (an HTTP status and a one-line message) for what the
request got wrong. The public API (``slimfast.load``, ``slimfast.decompress``) does the coding.

They run in the worker processes of :mod:`slimfast.serve.pool`, on one thread each, so Pillow's
global pixel limit is set here freely: the limits come from the request's :class:`Limits`.
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np

OUTPUT_FORMATS = {"png": ("PNG", "image/png"), "webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg")}


class JobError(Exception):
    """A request the server refuses: ``status`` (4xx) and a one-line ``message``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    max_pixels: int


_codecs: dict = {}


def codec(model: str | None):
    """A loaded codec per model name, kept for the worker's life: one thread, since a worker is
    one of N processes on N cores."""
    import slimfast

    if model not in _codecs:
        _codecs[model] = slimfast.load(model, threads=1)
    return _codecs[model]


def _say(exc: BaseException) -> str:
    from ..errors import printable

    return printable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__, limit=300)


def open_upload(raw: bytes, max_pixels: int):
    """An uploaded image, decoded, after its header's size was checked against ``max_pixels``."""
    from PIL import Image, UnidentifiedImageError

    if not raw:
        raise JobError(400, "the request has no image (an empty body or file)")
    Image.MAX_IMAGE_PIXELS = None  # the limit is ours, checked below from the header before decoding
    try:
        im = Image.open(io.BytesIO(raw))
    except UnidentifiedImageError:
        raise JobError(415, "not an image Pillow can read") from None
    except Exception as exc:  # noqa: BLE001 - a hostile header can raise anything Pillow's parsers do
        raise JobError(422, f"cannot read the image: {_say(exc)}") from None
    w, h = im.size
    if w * h > max_pixels:
        raise JobError(413, f"image {w}x{h} is above this server's limit of {max_pixels} pixels")
    try:
        im.load()
    except Exception as exc:  # noqa: BLE001 - truncated or corrupt pixel data
        raise JobError(422, f"cannot read the image: {_say(exc)}") from None
    return im


def _header(sfi: bytes):
    """The header of a ``.sfi`` file as Pillow's plugin reads it (no pixels decoded)."""
    from PIL import Image, UnidentifiedImageError

    from ..errors import SlimfastError

    try:
        return Image.open(io.BytesIO(sfi), formats=["SFI"])
    except SlimfastError as exc:  # the plugin's OpenError: an .sfi file, malformed
        raise JobError(422, _say(exc)) from None
    except UnidentifiedImageError:
        raise JobError(415, "not a .sfi file") from None


def describe(sfi: bytes) -> dict:
    """Model, width (slimmable models only), size, bytes and bpp of a ``.sfi`` file."""
    im = _header(sfi)
    model = im.info["slimfast_model"]
    w, h = im.size
    widths = codec_info(model).get("widths")
    return {"model": model, "width": im.info["slimfast_width"] if widths else None, "image_size": [w, h],
            "bytes": len(sfi), "bpp": len(sfi) * 8 / (w * h)}


def codec_info(model: str) -> dict:
    import slimfast

    for m in slimfast.list_models():
        if m.name == model:
            return {"widths": m.widths, "family": m.family}
    return {}


def compress(raw: bytes, params: dict, limits: Limits) -> tuple[dict, bytes]:
    """Image bytes -> ``.sfi`` bytes and what it is: params ``model``, ``quality``, ``width``,
    ``max_bytes``, ``target_bpp`` as :func:`slimfast.compress` takes them."""
    from ..errors import SlimfastError

    im = open_upload(raw, limits.max_pixels)
    try:
        c = codec(params.get("model"))
        t0 = time.perf_counter()
        data = c.compress(im, **{k: params.get(k) for k in ("quality", "width", "max_bytes", "target_bpp")})
    except SlimfastError as exc:
        raise JobError(422, _say(exc)) from None
    meta = describe(data)
    meta["encode_ms"] = (time.perf_counter() - t0) * 1000
    return meta, data


def decompress(sfi: bytes, fmt: str, limits: Limits) -> tuple[dict, bytes]:
    """``.sfi`` bytes -> an image file in ``fmt`` (``png``, ``webp`` or ``jpeg``)."""
    import slimfast

    from ..errors import SlimfastError

    w, h = _header(sfi).size
    if w * h > limits.max_pixels:
        raise JobError(413, f"the file's image, {w}x{h}, is above this server's limit of {limits.max_pixels} pixels")
    t0 = time.perf_counter()
    try:
        img = slimfast.decompress(sfi, threads=1, max_pixels=limits.max_pixels)
    except SlimfastError as exc:
        raise JobError(422, _say(exc)) from None
    decode_ms = (time.perf_counter() - t0) * 1000
    pil_format, media_type = OUTPUT_FORMATS[fmt]
    return {"media_type": media_type, "decode_ms": decode_ms, "image_size": [w, h]}, encode_image(img, pil_format)


def encode_image(img, pil_format: str) -> bytes:
    """A decoded image as a file, written as ``slimfast decompress`` writes it (:func:`slimfast.jobs.images.encode`:
    its ICC profile and the metadata the format holds, JPEG at quality 95)."""
    from ..errors import SlimfastError
    from ..jobs.images import encode

    if pil_format == "JPEG" and img.mode in ("RGBA", "LA"):
        raise JobError(422, "JPEG cannot store this image's alpha channel; ask for PNG or WebP")
    try:
        return encode(img, pil_format)
    except SlimfastError as exc:
        raise JobError(422, str(exc)) from None


def rgb_of(im) -> np.ndarray:
    """The 8-bit RGB pixels every codec of the comparison codes (alpha dropped, EXIF turn applied)."""
    from PIL import ImageOps

    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not make a valid image unusable
        pass
    return np.ascontiguousarray(np.asarray(im.convert("RGB")))
