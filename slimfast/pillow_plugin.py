"""Pillow plugin: ``Image.open("x.sfi")`` and ``image.save("x.sfi", quality=Q, model=NAME, width=W)``.

Registered when :mod:`slimfast` is imported. Opening reads only the header (size and mode);
pixels are decoded on ``load()``. Both ways run with the top-level API's defaults: the
environment's settings (:meth:`slimfast.settings.Settings.from_env`), read at each call.
"""
from __future__ import annotations

from PIL import Image, ImageFile

from . import container


def _accept(prefix: bytes) -> bool:
    return container.is_sfi(prefix)


class SfiImageFile(ImageFile.ImageFile):
    format = "SFI"
    format_description = "slimfast learned image"

    def _open(self) -> None:
        data = self.fp.read()
        hdr = container.unpack(data, header_only=True)
        self._size = hdr.image_size
        self._mode = hdr.mode
        self._sfi_data = data
        self.info["slimfast_model"] = hdr.model
        self.info["slimfast_width"] = hdr.width
        self.tile = []

    def load(self):
        data = getattr(self, "_sfi_data", None)
        if data is not None:
            from .codec import decompress

            decoded = decompress(data)
            self.im = decoded.im
            self._mode = decoded.mode
            self.info.update(decoded.info)
            self._sfi_data = None
        return Image.Image.load(self)


def _save(im: Image.Image, fp, filename) -> None:
    from .codec import load

    opts = im.encoderinfo
    codec = load(opts.get("model"))
    fp.write(codec.compress(im, quality=opts.get("quality"), width=opts.get("width"),
                            max_bytes=opts.get("max_bytes")))


Image.register_open(SfiImageFile.format, SfiImageFile, _accept)
Image.register_save(SfiImageFile.format, _save)
Image.register_extension(SfiImageFile.format, ".sfi")
Image.register_mime(SfiImageFile.format, "image/x-slimfast")
