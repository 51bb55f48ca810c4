"""Bringing user images to the codec's canonical form and back.

* Input: a PIL image or a uint8 numpy array (HxW, HxWx3, HxWx4). EXIF orientation is applied,
  the ICC profile is kept, and so are EXIF (its orientation reset to 1, since the pixels are
  turned) and XMP (:func:`read_metadata`); ``to_pil`` puts all three back in ``info``.
  Modes map to one of ``L``, ``RGB``, ``RGBA``, ``LA``: palette images become RGB(A),
  CMYK/YCbCr/HSV/LAB become RGB, 1-bit becomes L.
* 16-bit and 32-bit integer or float input (``I;16*``, ``I``, ``F``) is reduced to 8 bits by
  ``round(v / 257)`` for 16-bit data, and by clipping to 0..255 for ``I``/``F`` (Pillow's own
  convention for those modes). The codec is 8-bit; nothing else is stored.
* Greyscale is coded as three equal channels and returned as ``L`` (mean of the decoded
  channels); alpha is stored losslessly beside the learned stream.
* Limits: an image is refused above ``max_pixels`` (``Settings.max_pixels``, the decoder's
  limit, default 64 Mi pixels) or the format's limits (65535 per side), from its header's size,
  before its pixels are read (:func:`check_size`). An image file is read into memory up to
  :func:`max_input_bytes` (8 bytes per allowed pixel plus 64 MiB: 576 MiB by default), never
  further (:func:`read_bounded`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from . import container
from ..errors import SlimfastError
from ..settings import DEFAULT_MAX_PIXELS

# Room in an image file beyond its raw pixels: metadata (an ICC profile alone may be 16 MiB).
INPUT_SLACK_BYTES = 64 << 20


@dataclass
class CanonicalImage:
    rgb: np.ndarray            # uint8 HxWx3
    mode: str                  # L, RGB, RGBA or LA
    alpha: np.ndarray | None   # uint8 HxW
    icc: bytes | None
    exif: bytes | None = None  # TIFF-structured EXIF, without JPEG's b"Exif\\0\\0" prefix; orientation 1
    xmp: bytes | None = None   # the XMP packet (UTF-8 XML)

    @property
    def size(self) -> tuple[int, int]:
        return self.rgb.shape[1], self.rgb.shape[0]


def check_size(size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Refuse a (width, height) the format cannot hold or the decoder would refuse (``max_pixels``)."""
    w, h = size
    if w > container.MAX_SIDE or h > container.MAX_SIDE or w * h > container.MAX_PIXELS:
        raise SlimfastError(f"image {w}x{h} exceeds the format's limits ({container.MAX_SIDE} per side, "
                            f"{container.MAX_PIXELS} pixels)")
    if w * h > max_pixels:
        raise SlimfastError(f"image {w}x{h} is above the limit of {max_pixels} pixels, which decoders share "
                            f"(max_pixels: SLIMFAST_MAX_PIXELS or --max-pixels raise it)")


def max_input_bytes(max_pixels: int = DEFAULT_MAX_PIXELS) -> int:
    """The most bytes an image file may have: 8 per allowed pixel (16-bit RGBA stored raw, the
    widest layout Pillow reads) plus metadata room."""
    return 8 * max_pixels + INPUT_SLACK_BYTES


def read_bounded(src, limit: int, what: str = "input") -> bytes:
    """All bytes of ``src`` (a path or a binary file object such as ``sys.stdin.buffer``), refusing
    with a one-line error as soon as there are more than ``limit``: a device (``/dev/zero``) or an
    endless pipe costs at most ``limit`` bytes, not all memory."""
    with container.open_binary(src) as f:
        data = bytearray()
        while len(data) <= limit:
            block = container.read_block(f, min(limit + 1 - len(data), container.READ_BLOCK), what)
            if not block:
                return bytes(data)
            data += block
    raise SlimfastError(f"{what} is larger than {limit} bytes, the most slimfast reads")


def _from_array(a: np.ndarray) -> CanonicalImage:
    if a.dtype != np.uint8:
        raise SlimfastError(f"numpy images must be uint8, got {a.dtype}")
    if a.ndim == 2:
        return CanonicalImage(np.repeat(a[:, :, None], 3, axis=2), "L", None, None)
    if a.ndim == 3 and a.shape[2] == 3:
        return CanonicalImage(np.ascontiguousarray(a), "RGB", None, None)
    if a.ndim == 3 and a.shape[2] == 4:
        return CanonicalImage(np.ascontiguousarray(a[:, :, :3]), "RGBA", np.ascontiguousarray(a[:, :, 3]), None)
    raise SlimfastError(f"numpy images must be HxW, HxWx3 or HxWx4, got shape {a.shape}")


EXIF_PREFIX = b"Exif\x00\x00"
_ORIENTATION = 0x0112
METADATA = ("all", "icc", "none")


def check_metadata(metadata) -> str:
    """``metadata`` if it is one of :data:`METADATA`, else a one-line error saying what is valid."""
    if not isinstance(metadata, str) or metadata not in METADATA:
        from ..errors import printable

        raise SlimfastError(f"metadata must be 'all', 'icc' or 'none', not {printable(repr(metadata))}")
    return metadata


def _exif_of(im) -> bytes | None:
    """``im``'s EXIF as stored (no ``Exif\\0\\0`` prefix), with its orientation reset to 1 (the
    pixels are turned on reading); a block Pillow cannot parse is kept as it is."""
    raw = im.info.get("exif")  # not getexif() alone: for a TIFF that is the file's own tags
    if isinstance(raw, str):
        raw = raw.encode("latin-1", "replace")
    if not raw:
        return None
    try:
        from PIL import Image

        exif = Image.Exif()  # a copy: the caller's image keeps its own EXIF untouched
        exif.load(bytes(raw))
        if exif.get(_ORIENTATION, 1) != 1:
            exif[_ORIENTATION] = 1
            raw = exif.tobytes()
    except Exception:  # a broken EXIF block must not make a valid image unreadable
        pass
    raw = bytes(raw)
    return raw[len(EXIF_PREFIX):] if raw.startswith(EXIF_PREFIX) else raw


_XMP_ORIENTATION = re.compile(rb'(tiff:Orientation\s*(?:=\s*["\']|>)\s*)[2-8]')


def _xmp_of(im) -> bytes | None:
    """``im``'s XMP packet as bytes (``info["xmp"]``, PNG's iTXt), its tiff:Orientation set to 1."""
    xmp = im.info.get("xmp") or im.info.get("XML:com.adobe.xmp")
    if isinstance(xmp, tuple):  # TIFF may give a tuple
        xmp = xmp[0] if xmp else None
    if isinstance(xmp, str):
        xmp = xmp.encode("utf-8")
    if not xmp:
        return None
    return _XMP_ORIENTATION.sub(rb"\g<1>1", bytes(xmp))


def read_metadata(im) -> tuple[bytes | None, bytes | None]:
    """(EXIF, XMP) of a PIL image, as the container stores them (see :class:`CanonicalImage`)."""
    return _exif_of(im), _xmp_of(im)


def _from_pil(im) -> CanonicalImage:
    c = _pixels_of_pil(im)
    c.exif, c.xmp = read_metadata(im)
    return c


def _pixels_of_pil(im) -> CanonicalImage:
    from PIL import ImageOps

    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block must not make a valid image unreadable
        pass
    icc = im.info.get("icc_profile") or None
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        a = np.asarray(im).astype(np.float64)
        return CanonicalImage(*_grey(np.rint(a / 257.0).astype(np.uint8)), None, icc)
    if mode in ("I", "F"):
        a = np.asarray(im).astype(np.float64)
        return CanonicalImage(*_grey(np.clip(np.rint(a), 0, 255).astype(np.uint8)), None, icc)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode == "RGBa":  # premultiplied: Pillow un-premultiplies, so the alpha plane is kept
        im = im.convert("RGBA")
    elif mode == "La":
        im = im.convert("LA")
    elif mode not in ("L", "LA", "RGB", "RGBA"):
        im = im.convert("RGB")
        icc = None if mode == "CMYK" else icc  # a CMYK profile does not describe the RGB result
    a = np.asarray(im)
    if im.mode == "L":
        return CanonicalImage(np.repeat(a[:, :, None], 3, axis=2), "L", None, icc)
    if im.mode == "LA":
        return CanonicalImage(np.repeat(a[:, :, :1], 3, axis=2), "LA", np.ascontiguousarray(a[:, :, 1]), icc)
    if im.mode == "RGBA":
        return CanonicalImage(np.ascontiguousarray(a[:, :, :3]), "RGBA", np.ascontiguousarray(a[:, :, 3]), icc)
    return CanonicalImage(np.ascontiguousarray(a), "RGB", None, icc)


def _grey(a: np.ndarray) -> tuple[np.ndarray, str]:
    return np.repeat(a[:, :, None], 3, axis=2), "L"


FIRST_FRAME_API = "first_frame=True codes the first"
FIRST_FRAME_CLI = "--first-frame codes the first"


def check_frames(im, first_frame: bool, hint: str = FIRST_FRAME_API) -> None:
    """Refuse an animated PIL image (GIF, WebP, APNG) unless ``first_frame``, which rewinds it
    to its first frame: a ``.sfi`` file stores one frame, and dropping the rest silently is not
    what the image tools do."""
    n = getattr(im, "n_frames", 1) or 1
    if n > 1 or getattr(im, "is_animated", False):
        if not first_frame:
            raise SlimfastError(f"animated image ({n} frames): slimfast stores one frame; {hint}")
        if im.tell() != 0:
            im.seek(0)
            im.load()


def canonicalize(image, name: str | None = None, first_frame: bool = False,
                 _hint: str = FIRST_FRAME_API) -> CanonicalImage:
    """Any supported input to a :class:`CanonicalImage`; raises SlimfastError otherwise, naming
    the image ``name`` (its file, for the user) where given. An animated image is refused
    unless ``first_frame`` (then its first frame is coded); premultiplied ``RGBa`` / ``La`` is
    un-premultiplied, keeping its alpha."""
    if isinstance(image, np.ndarray):
        c = _from_array(image)
    else:
        try:
            from PIL import Image
        except ImportError:  # pragma: no cover
            raise SlimfastError("Pillow is required to read images") from None
        if not isinstance(image, Image.Image):
            raise SlimfastError(f"expected a PIL image or a uint8 numpy array, got {type(image).__name__}")
        try:
            check_frames(image, first_frame, _hint)
            c = _from_pil(image)
        except SlimfastError:
            raise
        except (OSError, ValueError) as exc:
            where = f" {name}" if name else ""
            raise SlimfastError(f"cannot read image{where}: {exc}") from None
    h, w = c.rgb.shape[:2]
    if h == 0 or w == 0:
        raise SlimfastError("empty image (0 pixels)")
    return c


def open_image(path, max_pixels: int = DEFAULT_MAX_PIXELS, name: str | None = None,
               first_frame: bool = False) -> CanonicalImage:
    """Read an image file (or binary file object) into canonical form; an image above
    ``max_pixels`` is refused from its header, before its pixels are decoded. Errors name the
    image ``name``, else ``path`` (a file object's repr means nothing to the user). An animated
    image is refused, before its pixels are decoded, unless ``first_frame`` (the CLI's
    ``--first-frame``)."""
    from PIL import Image, UnidentifiedImageError

    shown = name if name is not None else path if isinstance(path, (str, os.PathLike)) else "input"
    try:
        with Image.open(path) as im:
            check_size(im.size, max_pixels)
            check_frames(im, first_frame, FIRST_FRAME_CLI)
            im.load()
            return canonicalize(im, str(shown), first_frame=first_frame, _hint=FIRST_FRAME_CLI)
    except FileNotFoundError:
        raise SlimfastError(f"no such file: {shown}") from None
    except IsADirectoryError:
        raise SlimfastError(f"is a directory, not an image: {shown}") from None
    except PermissionError:
        raise SlimfastError(f"permission denied: {shown}") from None
    except UnidentifiedImageError:
        raise SlimfastError(f"not an image Pillow can read: {shown}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise SlimfastError(f"cannot read image {shown}: {_reason(exc, path, shown)}") from None
    except Image.DecompressionBombError as exc:
        raise SlimfastError(f"refusing a suspiciously large image {shown}: {_reason(exc, path, shown)}") from None


def _reason(exc: BaseException, path, shown) -> str:
    """``exc``'s first line, with the source's repr (Pillow quotes it) replaced by its name."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(repr(path), str(shown)).replace(str(path), str(shown))


def to_rgb8(x: np.ndarray, s: int = 1) -> np.ndarray:
    """``[1, 3 * s * s, h, w]`` float32 (sub-pixel phases in CRD order; ``s = 1``: the image
    itself) to interleaved ``[h * s, w * s, 3]`` uint8: clamp to [0, 1], x 255, round half to
    even. Works in place on ``x`` (a copy first if it is read-only), then one strided pass."""
    if not x.flags.writeable:
        x = x.copy()
    np.clip(x, 0.0, 1.0, out=x)
    np.multiply(x, np.float32(255), out=x)
    np.rint(x, out=x)
    _, ch, h, w = x.shape
    if ch != 3 * s * s:
        raise ValueError(f"expected {3 * s * s} channels, got {ch}")
    rgb = np.empty((h, s, w, s, 3), dtype=np.uint8)
    # rgb[y*s + i, x*s + j, k] = x[k*s*s + i*s + j, y, x]  (DepthToSpace, mode CRD). One copy per
    # plane: numpy's single 5-D strided copy runs its inner loop over the 3 colours and is 2-4x
    # slower (3.3 against 1.4 ms for a Kodak image).
    src = x[0].reshape(3, s, s, h, w)
    for k in range(3):
        for i in range(s):
            for j in range(s):
                np.copyto(rgb[:, i, :, j, k], src[k, i, j], casting="unsafe")
    return rgb.reshape(h * s, w * s, 3)


def to_pil(rgb: np.ndarray, mode: str, alpha: np.ndarray | None, icc: bytes | None,
           exif: bytes | None = None, xmp: bytes | None = None):
    """The decoded planes back to a PIL image of the original mode, with its ICC profile
    (``info["icc_profile"]``), EXIF (``info["exif"]``, with Pillow's ``Exif\\0\\0`` prefix) and XMP
    (``info["xmp"]``) where the file has them."""
    from PIL import Image

    if mode in ("L", "LA"):
        grey = np.rint(rgb.astype(np.float32).mean(axis=2)).astype(np.uint8)
        im = Image.fromarray(grey, "L") if mode == "L" else Image.fromarray(np.dstack([grey, alpha]), "LA")
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([rgb, alpha]), "RGBA")
    else:
        im = Image.fromarray(rgb, "RGB")
    if icc:
        im.info["icc_profile"] = icc
    if exif:
        im.info["exif"] = EXIF_PREFIX + bytes(exif)
    if xmp:
        im.info["xmp"] = bytes(xmp)
    return im
