"""Pillow plugin: ``Image.open("x.sfi")`` and ``image.save("x.sfi", quality=Q, model=NAME, width=W)``.

``quality`` runs from 0 to 100, higher is better, as for Pillow's other formats (see
:meth:`slimfast.codec.Codec.compress`); ``max_bytes`` / ``target_bpp`` pick the largest file that fits.

Registered when :mod:`slimfast` is imported. Opening reads only the header (size and mode);
pixels are decoded on ``load()``. Both ways run with the top-level API's defaults: the
environment's settings (:meth:`slimfast.settings.Settings.from_env`), read at each call, except
the pixel limit: in Pillow, Pillow's own ``Image.MAX_IMAGE_PIXELS`` governs, as for every format
(a warning above it, ``DecompressionBombError`` above twice it; ``None``: the format's limit).

Errors are Pillow's kinds as well as :class:`~slimfast.errors.SlimfastError`: a file that cannot
be opened raises an :class:`OpenError` (a ``PIL.UnidentifiedImageError``, so an ``OSError``), one
that cannot be decoded on ``load()`` an :class:`~slimfast.errors.UnreadableFileError` (an ``OSError``).
"""
from __future__ import annotations

from PIL import Image, ImageFile, UnidentifiedImageError

from .format import container
from .errors import SlimfastError, UnreadableFileError


class OpenError(UnreadableFileError, UnidentifiedImageError):
    """An ``.sfi`` file Pillow cannot open: caught by ``except UnidentifiedImageError`` (or
    ``OSError``), as Pillow's other formats are, and by ``except SlimfastError``."""


def _accept(prefix: bytes) -> bool:
    return container.is_sfi(prefix)


def pixel_limit(size: tuple[int, int]) -> int:
    """Pillow's decompression-bomb error for an image of ``size`` (above twice
    ``Image.MAX_IMAGE_PIXELS``), before any decoding; the pixels a decode may produce."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is None:
        return container.MAX_PIXELS
    pixels = size[0] * size[1]
    if pixels > 2 * limit:
        raise Image.DecompressionBombError(f"Image size ({pixels} pixels) exceeds limit of {2 * limit} pixels, "
                                           "could be decompression bomb DOS attack.")
    return max(1, int(2 * limit))


class SfiImageFile(ImageFile.ImageFile):
    format = "SFI"
    format_description = "slimfast learned image"

    def _open(self) -> None:
        from .format.imageio import read_bounded

        try:  # at most the format's largest file: a damaged one must still open (and fail at load)
            data = read_bounded(self.fp, container.MAX_FILE_BYTES, what=".sfi file")
            hdr = container.unpack(data, header_only=True)
        except SlimfastError as exc:
            raise OpenError(str(exc)) from None
        self._size = hdr.image_size
        self._mode = hdr.mode
        self._sfi_data = data
        self.info["slimfast_model"] = hdr.model
        self.info["slimfast_width"] = hdr.width
        self.tile = []

    def load(self):
        data = getattr(self, "_sfi_data", None)
        if data is not None:
            # Image.open checked the header's size against MAX_IMAGE_PIXELS (and warned): check
            # again, in case it was lowered since, and let the decode go as far as Pillow allows.
            limit = pixel_limit(self.size)
            decoded = _decode(data, limit)
            self.im = decoded.im
            self._mode = decoded.mode
            self.info.update(decoded.info)
            self._sfi_data = None
        return Image.Image.load(self)


def _decode(data: bytes, max_pixels: int):
    from .codec import decompress
    from .settings import Settings

    try:
        return decompress(data, settings=Settings.from_env().replace(max_pixels=max_pixels))
    except OSError:
        raise
    except SlimfastError as exc:  # an OSError too, as a failed load is for Pillow's formats
        raise UnreadableFileError(str(exc)) from None


def _save(im: Image.Image, fp, filename) -> None:
    from .codec import load

    opts = im.encoderinfo
    codec = load(opts.get("model"))
    fp.write(codec.compress(im, quality=opts.get("quality"), width=opts.get("width"),
                            max_bytes=opts.get("max_bytes"), target_bpp=opts.get("target_bpp")))


Image.register_open(SfiImageFile.format, SfiImageFile, _accept)
Image.register_save(SfiImageFile.format, _save)
Image.register_extension(SfiImageFile.format, ".sfi")
Image.register_mime(SfiImageFile.format, "image/x-slimfast")
