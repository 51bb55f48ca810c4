"""Decoded images to the bytes of an image file (PNG, JPEG, WebP, ...), metadata included, and
which image format a file name stands for."""
from __future__ import annotations

import io
from pathlib import Path

from ..errors import SlimfastError

SFI_FORMAT = "SFI"  # the Pillow plugin's format name
_PREFERRED_SUFFIX = {"JPEG": ".jpg", "TIFF": ".tiff", "PNG": ".png", "WEBP": ".webp"}


def _extensions() -> dict[str, str]:
    from PIL import Image

    Image.init()
    return Image.registered_extensions()


def image_format_of(name: str) -> str | None:
    """The Pillow format a name's extension stands for (``SFI`` for ``.sfi``), or None. Pillow's
    common plugins (PNG, JPEG, BMP, GIF, PPM) and the ones already loaded are asked first: loading
    all forty of them costs a command about 20 ms."""
    from PIL import Image

    ext = Path(name).suffix.lower()
    Image.preinit()
    fmt = Image.EXTENSION.get(ext)
    return fmt if fmt is not None else _extensions().get(ext)


def output_format(path: str, explicit: str | None) -> str:
    """The format to write ``path`` in: ``explicit`` (``--format``), else its extension; ``-``: PNG.
    Never SFI: that would re-encode the decoded pixels, which is ``compress``'s job."""
    from PIL import Image

    fmt = explicit.upper() if explicit else "PNG" if path == "-" else image_format_of(path)
    if fmt == SFI_FORMAT:
        raise SlimfastError(f"decompress writes images, not .sfi files: name the output .png, .jpg, .webp, ... "
                            f"(not {path}); to re-encode, use slimfast upgrade or compress --allow-reencode")
    Image.preinit()
    if fmt not in Image.SAVE:  # a format of a plugin not loaded yet
        Image.init()
    if explicit and fmt not in Image.SAVE:
        raise SlimfastError(f"unknown output format {explicit!r}; use PNG, JPEG, WEBP, TIFF, BMP, ...")
    if fmt is None or fmt not in Image.SAVE:
        raise SlimfastError(f"cannot tell the output format from {path!r}; use .png, .jpg, .webp, ... or --format")
    return fmt


def suffix_for(fmt: str | None) -> str:
    """The extension a decoded image in ``fmt`` gets when its name is chosen for it."""
    if fmt is None:
        return ".png"
    fmt = fmt.upper()
    if fmt in _PREFERRED_SUFFIX:
        return _PREFERRED_SUFFIX[fmt]
    return next((ext for ext, f in sorted(_extensions().items()) if f == fmt), ".png")


def encode(img, fmt: str) -> bytes:
    """``img`` as a file in ``fmt``, with its ICC profile and, where the format holds them, EXIF and XMP."""
    if fmt in ("JPEG", "BMP", "PPM") and img.mode in ("RGBA", "LA"):
        raise SlimfastError(f"{fmt} cannot store the alpha channel of this {img.mode} image; use .png or .webp")
    params = {}
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    if fmt == "JPEG":
        params["quality"] = 95
    if fmt == "PNG":  # zlib's Z_RLE strategy: a fraction of the default's time on photos, slightly larger
        params["compress_type"] = 3  # files (RESULTS.md, "Cold start"); the pixels are the same
    meta = _metadata_params(img, fmt)
    if meta:
        try:  # metadata a format cannot hold (JPEG's 64 KiB segments) is dropped, not an error
            return _save(img, fmt, {**params, **meta})
        except (OSError, ValueError, KeyError):
            pass
    try:
        return _save(img, fmt, params)
    except (OSError, ValueError, KeyError) as exc:
        raise SlimfastError(f"cannot write {fmt}: {exc}") from None


def _save(img, fmt: str, params: dict) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _metadata_params(img, fmt: str) -> dict:
    """Pillow save parameters carrying the decoded image's EXIF and XMP into ``fmt``, where it
    holds them: PNG (eXIf, XMP as iTXt), JPEG and WebP (both), TIFF (EXIF); elsewhere none."""
    exif, xmp = img.info.get("exif"), img.info.get("xmp")
    params = {}
    if exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        params["exif"] = exif
    if xmp and fmt in ("JPEG", "WEBP"):
        params["xmp"] = xmp
    elif xmp and fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        try:
            text = xmp.decode("utf-8")
        except UnicodeDecodeError:
            return params
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", text, zip=False)
        params["pnginfo"] = info
    return params
