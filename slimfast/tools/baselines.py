"""Traditional codecs to compare against, behind one interface.

Every :class:`Baseline` has ``encode(img, quality) -> bytes`` (``img``: uint8 ``(H, W, 3)`` RGB)
and ``decode(data) -> uint8 (H, W, 3)``, a default quality sweep ``qualities`` (higher means
better quality and more bits for every codec here) and :meth:`Baseline.available`, which
returns ``(ok, reason)`` instead of raising when the library is missing, so callers skip the
codec with the reason. The bytes are the real file a user would store.

=========  ==========================================================  =========================
name       library and settings                                        ``quality`` means
=========  ==========================================================  =========================
jpeg       Pillow / libjpeg-turbo, 4:2:0, baseline Huffman              libjpeg quality 1-100
webp       Pillow / libwebp, method 4, 4:2:0                            libwebp quality 0-100
avif       Pillow / libavif (aom), speed 6, 4:2:0                       libavif quality 0-100
jpeg2000   Pillow / OpenJPEG, 9/7 irreversible wavelet + ICT, J2K stream target PSNR in dB (``quality_mode='dB'``)
heic       pillow-heif / libheif with x265 (HEVC intra), 4:2:0           libheif quality 0-100
jpegxl     imagecodecs / libjxl, effort 7                               libjxl quality 0-100
=========  ==========================================================  =========================

Heavy or optional libraries (``pillow_heif``, ``imagecodecs``) are imported lazily.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Baseline:
    name: str
    label: str
    qualities: list[float] = field(default_factory=list)

    def available(self) -> tuple[bool, str]:
        return True, ""

    def encode(self, img: np.ndarray, quality: float) -> bytes:
        raise NotImplementedError

    def decode(self, data: bytes) -> np.ndarray:
        raise NotImplementedError

    def version(self) -> str:
        return ""


def _pil(img: np.ndarray):
    from PIL import Image

    return Image.fromarray(np.ascontiguousarray(img, dtype=np.uint8), "RGB")


def _pil_decode(data: bytes) -> np.ndarray:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


class _PillowBaseline(Baseline):
    feature = ""
    fmt = ""

    def available(self) -> tuple[bool, str]:
        from PIL import features

        try:
            ok = features.check(self.feature)
        except Exception as e:  # noqa: BLE001 - unknown feature names in old Pillow
            return False, f"Pillow cannot tell whether it has {self.feature}: {e}"
        return (True, "") if ok else (False, f"this Pillow build has no {self.feature} support")

    def version(self) -> str:
        from PIL import __version__, features

        return f"Pillow {__version__}, {self.feature} {features.version(self.feature) or '?'}"

    def options(self, quality: float) -> dict:
        return {"quality": int(round(quality))}

    def encode(self, img: np.ndarray, quality: float) -> bytes:
        buf = io.BytesIO()
        _pil(img).save(buf, self.fmt, **self.options(quality))
        return buf.getvalue()

    def decode(self, data: bytes) -> np.ndarray:
        return _pil_decode(data)


class JPEG(_PillowBaseline):
    feature, fmt = "jpg", "JPEG"

    def __init__(self):
        super().__init__("jpeg", "JPEG (libjpeg-turbo)", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95])

    def options(self, quality):
        return {"quality": int(round(quality)), "subsampling": 2}  # 2 = 4:2:0


class WebP(_PillowBaseline):
    feature, fmt = "webp", "WEBP"

    def __init__(self):
        super().__init__("webp", "WebP", [5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95])

    def options(self, quality):
        return {"quality": int(round(quality)), "method": 4}


class AVIF(_PillowBaseline):
    feature, fmt = "avif", "AVIF"

    def __init__(self):
        super().__init__("avif", "AVIF (aom s6)", [10, 20, 30, 40, 50, 60, 70, 80])

    def options(self, quality):
        return {"quality": int(round(quality)), "speed": 6, "subsampling": "4:2:0"}


class JPEG2000(_PillowBaseline):
    feature, fmt = "jpg_2000", "JPEG2000"

    def __init__(self):
        super().__init__("jpeg2000", "JPEG 2000 (OpenJPEG 9/7)", [24, 26, 28, 30, 32, 34, 36, 38, 40, 42])

    def options(self, quality):
        # mct=1: code RGB through the irreversible colour transform (Pillow's default is none)
        return {"irreversible": True, "mct": 1, "quality_mode": "dB", "quality_layers": [float(quality)],
                "no_jp2": True}


class HEIC(Baseline):
    def __init__(self):
        super().__init__("heic", "HEIC (x265)", [10, 15, 20, 30, 40, 50, 60])

    def available(self):
        try:
            import pillow_heif
        except ImportError:
            return False, "pillow-heif is not installed (pip install pillow-heif)"
        encoders = (pillow_heif.libheif_info().get("encoders") or {})
        if "x265" not in encoders and not pillow_heif.libheif_info().get("HEIF"):
            return False, "pillow-heif has no HEVC (x265) encoder"
        return True, ""

    def version(self):
        import pillow_heif

        info = pillow_heif.libheif_info()
        return f"pillow-heif {pillow_heif.__version__}, libheif {info.get('libheif')}, {info.get('HEIF')}"

    def encode(self, img, quality):
        import pillow_heif

        buf = io.BytesIO()
        pillow_heif.from_pillow(_pil(img)).save(buf, quality=int(round(quality)), chroma=420)
        return buf.getvalue()

    def decode(self, data):
        import pillow_heif

        heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
        return np.asarray(heif.to_pillow().convert("RGB"))


class JPEGXL(Baseline):
    def __init__(self):
        super().__init__("jpegxl", "JPEG XL (libjxl e7)", [10, 20, 30, 40, 50, 60, 70, 80, 90, 95])

    def available(self):
        try:
            import imagecodecs
        except ImportError:
            return False, "imagecodecs is not installed (pip install imagecodecs)"
        if not getattr(imagecodecs, "JPEGXL", None) or not imagecodecs.JPEGXL.available:
            return False, "this imagecodecs build has no JPEG XL codec"
        return True, ""

    def version(self):
        import imagecodecs

        return f"imagecodecs {imagecodecs.__version__}, libjxl {imagecodecs.jpegxl_version()}"

    def encode(self, img, quality):
        import imagecodecs

        return bytes(imagecodecs.jpegxl_encode(np.ascontiguousarray(img), level=int(round(quality)), effort=7))

    def decode(self, data):
        import imagecodecs

        out = np.asarray(imagecodecs.jpegxl_decode(data))
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=2)
        return np.ascontiguousarray(out[..., :3].astype(np.uint8))


_CLASSES = [JPEG, WebP, AVIF, JPEG2000, HEIC, JPEGXL]
NAMES = [c().name for c in _CLASSES]


def get(name: str) -> Baseline:
    """The baseline called ``name`` (one of :data:`NAMES`)."""
    for cls in _CLASSES:
        b = cls()
        if b.name == name:
            return b
    raise KeyError(f"unknown baseline {name!r}; known: {', '.join(NAMES)}")


def all_baselines() -> list[Baseline]:
    return [cls() for cls in _CLASSES]


def availability() -> dict[str, tuple[bool, str]]:
    """``{name: (available, reason)}`` for every baseline; never raises."""
    out = {}
    for b in all_baselines():
        try:
            out[b.name] = b.available()
        except Exception as e:  # noqa: BLE001 - a broken install must not stop evaluation
            out[b.name] = (False, f"{type(e).__name__}: {e}")
    return out
