"""The ``.sfi`` container: the one place the file format is defined (spec: docs/format.md).

Layout (all integers little-endian)::

    magic        4   b"\\x89SFI"
    version      1   FORMAT_VERSION
    flags        1   bit 0: alpha plane present, bit 1: ICC profile present
    mode         1   0 = L, 1 = RGB, 2 = RGBA, 3 = LA
    name_len     1   1..64, then the model name (ASCII)
    ver_len      1   1..16, then the weights version (ASCII)
    weights_id   8   first 8 bytes of the SHA-256 of the weights file
    width_ch     2   latent channels coded (the operating point)
    img_w, img_h 4+4 1..MAX_SIDE each, and img_w * img_h <= MAX_PIXELS
    n_streams    1   1..MAX_STREAMS
    stream_len   4 * n_streams
    alpha_len    4   only if flag bit 0 (zlib-compressed 8-bit alpha plane)
    icc_len      4   only if flag bit 1
    payload      streams, then alpha, then ICC, exactly the lengths above
    crc32        4   CRC-32 of every byte before it

Parsing validates everything (lengths, limits, CRC) before any decoding or large allocation.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

from .errors import SlimfastError

MAGIC = b"\x89SFI"
FORMAT_VERSION = 1
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
MAX_STREAMS = 8
MAX_ICC = 1 << 24
MODES = ("L", "RGB", "RGBA", "LA")
_FLAG_ALPHA = 1
_FLAG_ICC = 2
MIN_SIZE = 4 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 8 + 2 + 8 + 1 + 4 + 4


@dataclass
class Header:
    model: str
    weights_version: str
    weights_id: bytes
    width: int
    image_size: tuple[int, int]  # (width, height) in pixels
    mode: str
    streams: list[bytes] = field(default_factory=list)
    alpha: bytes | None = None
    icc: bytes | None = None
    total_bytes: int = 0

    @property
    def pixels(self) -> int:
        return self.image_size[0] * self.image_size[1]

    @property
    def bpp(self) -> float:
        return self.total_bytes * 8 / self.pixels


def _ascii(s: str, what: str, limit: int) -> bytes:
    b = s.encode("ascii")
    if not 1 <= len(b) <= limit:
        raise ValueError(f"{what} must be 1..{limit} ASCII characters")
    return b


def pack(h: Header) -> bytes:
    """Serialize a header and its payload; the inverse of :func:`unpack`."""
    w, hgt = h.image_size
    if not (1 <= w <= MAX_SIDE and 1 <= hgt <= MAX_SIDE and w * hgt <= MAX_PIXELS):
        raise SlimfastError(f"image size {w}x{hgt} exceeds the format's limits ({MAX_SIDE} per side, {MAX_PIXELS} pixels)")
    if h.mode not in MODES:
        raise ValueError(f"mode {h.mode!r} not one of {MODES}")
    if not 1 <= len(h.streams) <= MAX_STREAMS:
        raise ValueError("bad stream count")
    if len(h.weights_id) != 8:
        raise ValueError("weights_id must be 8 bytes")
    flags = (_FLAG_ALPHA if h.alpha is not None else 0) | (_FLAG_ICC if h.icc is not None else 0)
    name = _ascii(h.model, "model name", 64)
    ver = _ascii(h.weights_version, "weights version", 16)
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", FORMAT_VERSION, flags, MODES.index(h.mode))
    out += struct.pack("<B", len(name)) + name + struct.pack("<B", len(ver)) + ver
    out += h.weights_id
    out += struct.pack("<HIIB", h.width, w, hgt, len(h.streams))
    out += b"".join(struct.pack("<I", len(s)) for s in h.streams)
    if h.alpha is not None:
        out += struct.pack("<I", len(h.alpha))
    if h.icc is not None:
        if len(h.icc) > MAX_ICC:
            raise SlimfastError("ICC profile too large")
        out += struct.pack("<I", len(h.icc))
    for s in h.streams:
        out += s
    if h.alpha is not None:
        out += h.alpha
    if h.icc is not None:
        out += h.icc
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise SlimfastError("truncated .sfi file")
        b = self.data[self.pos: self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def is_sfi(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


def unpack(data: bytes, header_only: bool = False) -> Header:
    """Parse and validate a whole ``.sfi`` file (or, with ``header_only``, just its header).

    Raises :class:`SlimfastError` with a one-line reason for anything malformed.
    """
    data = bytes(data)
    if len(data) < 4 or not is_sfi(data):
        raise SlimfastError("not a slimfast (.sfi) file: wrong magic")
    r = _Reader(data)
    r.take(4)
    version, flags, mode = r.unpack("<BBB")
    if version != FORMAT_VERSION:
        raise SlimfastError(f"unsupported .sfi format version {version} (this slimfast reads version {FORMAT_VERSION})")
    if flags & ~(_FLAG_ALPHA | _FLAG_ICC):
        raise SlimfastError("corrupt .sfi header: unknown flags")
    if mode >= len(MODES):
        raise SlimfastError("corrupt .sfi header: unknown image mode")
    (n,) = r.unpack("<B")
    try:
        name = r.take(n).decode("ascii")
        (n,) = r.unpack("<B")
        ver = r.take(n).decode("ascii")
    except UnicodeDecodeError:
        raise SlimfastError("corrupt .sfi header: model name is not ASCII") from None
    if not name or not ver:
        raise SlimfastError("corrupt .sfi header: empty model name or version")
    wid = r.take(8)
    width, w, h, nstreams = r.unpack("<HIIB")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise SlimfastError(f"image size {w}x{h} in header is beyond the format's limit of {MAX_SIDE} per side")
    if w * h > MAX_PIXELS:
        raise SlimfastError(f"image size {w}x{h} in header exceeds the format's limit of {MAX_PIXELS} pixels")
    if not 1 <= nstreams <= MAX_STREAMS:
        raise SlimfastError("corrupt .sfi header: bad stream count")
    lengths = [r.unpack("<I")[0] for _ in range(nstreams)]
    alpha_len = r.unpack("<I")[0] if flags & _FLAG_ALPHA else None
    icc_len = r.unpack("<I")[0] if flags & _FLAG_ICC else None
    hdr = Header(name, ver, wid, width, (w, h), MODES[mode], total_bytes=len(data))
    if header_only:
        return hdr
    payload = sum(lengths) + (alpha_len or 0) + (icc_len or 0)
    if r.pos + payload + 4 != len(data):
        if r.pos + payload + 4 > len(data):
            raise SlimfastError("truncated .sfi file")
        raise SlimfastError("corrupt .sfi file: trailing bytes after payload")
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise SlimfastError("corrupt .sfi file: CRC mismatch")
    hdr.streams = [r.take(n) for n in lengths]
    hdr.alpha = r.take(alpha_len) if alpha_len is not None else None
    hdr.icc = r.take(icc_len) if icc_len is not None else None
    return hdr
