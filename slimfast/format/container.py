"""The ``.sfi`` container: the one place the file format is defined (spec: docs/format.md).

Two versions share one fixed header (all integers little-endian)::

    magic        4   b"\\x89SFI"
    version      1   1 or 2
    flags        1   v1: bit 0 alpha plane present, bit 1 ICC profile present; v2: 0
    mode         1   0 = L, 1 = RGB, 2 = RGBA, 3 = LA
    name_len     1   1..64, then the model name (ASCII)
    ver_len      1   1..16, then the weights version (ASCII)
    weights_id   8   first 8 bytes of the SHA-256 of the weights file
    width_ch     2   latent channels coded (the operating point)
    img_w, img_h 4+4 1..MAX_SIDE each, and img_w * img_h <= MAX_PIXELS

Version 1 then has a fixed body::

    n_streams    1   1..MAX_STREAMS
    stream_len   4 * n_streams
    alpha_len    4   only if flag bit 0 (zlib-compressed 8-bit alpha plane)
    icc_len      4   only if flag bit 1
    payload      streams, then alpha, then ICC, exactly the lengths above
    crc32        4   CRC-32 of every byte before it

Version 2 has a list of typed chunks instead, so that new fields need no new version::

    n_chunks     1   1..MAX_CHUNKS
    chunk        n_chunks times: type (4 ASCII letters), length (u32), payload
    crc32        4   CRC-32 of every byte before it

A chunk type whose first letter is uppercase is critical (a reader that does not know it must
refuse the file), lowercase is ancillary (a reader that does not know it skips it). Chunk types
are in :data:`CHUNK_TYPES`. :func:`pack` writes version 1 unless the header carries extra chunks.

Parsing validates everything (lengths, counts, limits, CRC) before any decoding or large allocation.
No file is larger than :data:`MAX_FILE_BYTES`, and :func:`read_file` reads one from a path or a
file object without ever reading more than its header declares (nor more than that limit).
"""
from __future__ import annotations

import os
import struct
import zlib
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..errors import CorruptFileError, SlimfastError, UnreadableFileError

MAGIC = b"\x89SFI"
FORMAT_VERSION = 1  # the version pack() writes by default: files stay v1 until a chunk needs v2
LATEST_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)
MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
MAX_STREAMS = 8
MAX_ICC = 1 << 24
MAX_CHUNKS = 64
MAX_NAME = 64  # model name bytes
MAX_VERSION = 16  # weights version bytes
# A whole file. Legal lengths alone would allow 8 streams of 4 GiB; real files at the largest
# legal image (2**28 pixels) stay far below this, and a reader must bound what it reads.
MAX_FILE_BYTES = 1 << 30
# The longest header (v1 with 8 streams, alpha and ICC); all that reading a header needs.
MAX_HEADER_BYTES = 4 + 3 + (1 + MAX_NAME) + (1 + MAX_VERSION) + 8 + 2 + 8 + 1 + 4 * MAX_STREAMS + 4 + 4
MODES = ("L", "RGB", "RGBA", "LA")
_FLAG_ALPHA = 1
_FLAG_ICC = 2
MIN_SIZE = 4 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 8 + 2 + 8 + 1 + 4 + 4  # the smallest v1 file; v2 needs 4 more


@dataclass(frozen=True)
class ChunkType:
    """What a reader allows of one v2 chunk type."""
    max_count: int = 1
    max_len: int = 0xFFFFFFFF


# Every chunk type this slimfast knows. STRM, ALPH and iccp fill Header.streams/alpha/icc; any
# other type added here travels in Header.chunks, so adding one needs no parser change.
# exif (the EXIF block, TIFF-structured, no "Exif\0\0" prefix) and xmpd (the XMP packet) are
# ancillary: a reader that predates them skips them. QUAL (the quantization step of the quality
# knob: u16, in 1/4096) is critical, as it selects the entropy parameters. LAYT (the stream
# layout: its first byte names the entropy coder of every stream) is critical too.
MAX_EXIF = 1 << 24
MAX_XMP = 1 << 24
CHUNK_TYPES: dict[str, ChunkType] = {
    "STRM": ChunkType(max_count=MAX_STREAMS),
    "ALPH": ChunkType(),
    "iccp": ChunkType(max_len=MAX_ICC),
    "exif": ChunkType(max_len=MAX_EXIF),
    "xmpd": ChunkType(max_len=MAX_XMP),
    "QUAL": ChunkType(max_len=2),
    "LAYT": ChunkType(max_len=1),
}
_FIELD_CHUNKS = ("STRM", "ALPH", "iccp")
# v2 body errors name the version: a damaged version byte then reads as "which version" trouble.
_CORRUPT_V2 = "corrupt .sfi file (format version 2)"


def pack_step(step: int) -> bytes:
    """A ``QUAL`` payload: the quantization step (``step / 4096``) as a little-endian u16."""
    return struct.pack("<H", step)


def unpack_step(payload: bytes | None, default: int) -> int:
    """The step a ``QUAL`` payload holds (``default`` where the file has none); the range is the
    latent codec's to check."""
    if payload is None:
        return default
    if len(payload) != 2:
        raise CorruptFileError(f"corrupt .sfi file: a quality chunk of {len(payload)} bytes (2 expected)")
    return struct.unpack("<H", payload)[0]


# LAYT's coder byte. A file without LAYT is range-coded (slimfast.coding.coder), as every file was
# before the chunk existed; the value 0 is not used, so that range coding has one spelling.
LAYT_CODERS = {1: "rans"}


def pack_layout(coder: str) -> list[tuple[str, bytes]]:
    """The chunks that name ``coder`` for the streams: none for ``"range"``, else a ``LAYT`` chunk."""
    if coder == "range":
        return []
    return [("LAYT", bytes([next(k for k, v in LAYT_CODERS.items() if v == coder)]))]


def unpack_layout(payload: bytes | None) -> str:
    """The entropy coder a ``LAYT`` payload names (``"range"`` where the file has none)."""
    if payload is None:
        return "range"
    if len(payload) != 1:
        raise CorruptFileError(f"corrupt .sfi file: a layout chunk of {len(payload)} bytes (1 expected)")
    if payload[0] not in LAYT_CODERS:
        raise UnreadableFileError(f"this file needs a newer slimfast: unknown entropy coder {payload[0]} "
                                  "in its layout chunk")
    return LAYT_CODERS[payload[0]]


def is_critical(ctype: str) -> bool:
    """PNG's rule: an uppercase first letter means a reader must understand the chunk."""
    return ctype[:1].isupper()


def _is_chunk_type(ctype: str) -> bool:
    return isinstance(ctype, str) and len(ctype) == 4 and ctype.isascii() and ctype.isalpha()


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
    # v2 chunks the container does not interpret, in file order: registered types beyond
    # STRM/ALPH/iccp, and unknown ancillary ones read from a file (kept, so re-packing keeps them).
    chunks: list[tuple[str, bytes]] = field(default_factory=list)
    format_version: int | None = None  # as read by unpack(); pack() does not look at it

    @property
    def pixels(self) -> int:
        return self.image_size[0] * self.image_size[1]

    @property
    def bpp(self) -> float:
        return self.total_bytes * 8 / self.pixels

    def chunk(self, ctype: str) -> bytes | None:
        """The payload of the first extra chunk of this type, or None."""
        return next((p for t, p in self.chunks if t == ctype), None)


def _ascii(s: str, what: str, limit: int) -> bytes:
    b = s.encode("ascii")
    if not 1 <= len(b) <= limit:
        raise ValueError(f"{what} must be 1..{limit} ASCII characters")
    return b


def _chunk_problem(spans) -> str | None:
    """Why a list of (type, length) breaks the chunk rules, or None: shared by pack and unpack."""
    counts = Counter(t for t, _ in spans)
    if not counts["STRM"]:
        return "no 'STRM' chunk (a file needs at least one stream)"
    for t, spec in CHUNK_TYPES.items():
        if counts[t] > spec.max_count:
            return f"{counts[t]} {t!r} chunks where at most {spec.max_count} is allowed"
    for t, n in spans:
        if t in CHUNK_TYPES and n > CHUNK_TYPES[t].max_len:
            return f"{t!r} chunk of {n} bytes is over its limit of {CHUNK_TYPES[t].max_len}"
    return None


def _pack_fixed(h: Header, version: int, flags: int) -> bytearray:
    w, hgt = h.image_size
    if not (1 <= w <= MAX_SIDE and 1 <= hgt <= MAX_SIDE and w * hgt <= MAX_PIXELS):
        raise SlimfastError(f"image size {w}x{hgt} exceeds the format's limits ({MAX_SIDE} per side, {MAX_PIXELS} pixels)")
    if h.mode not in MODES:
        raise ValueError(f"mode {h.mode!r} not one of {MODES}")
    if not 1 <= len(h.streams) <= MAX_STREAMS:
        raise ValueError("bad stream count")
    if len(h.weights_id) != 8:
        raise ValueError("weights_id must be 8 bytes")
    if h.icc is not None and len(h.icc) > MAX_ICC:
        raise SlimfastError("ICC profile too large")
    name = _ascii(h.model, "model name", MAX_NAME)
    ver = _ascii(h.weights_version, "weights version", MAX_VERSION)
    out = bytearray(MAGIC)
    out += struct.pack("<BBB", version, flags, MODES.index(h.mode))
    out += struct.pack("<B", len(name)) + name + struct.pack("<B", len(ver)) + ver
    out += h.weights_id
    out += struct.pack("<HII", h.width, w, hgt)
    return out


def _pack_v1(h: Header) -> bytearray:
    flags = (_FLAG_ALPHA if h.alpha is not None else 0) | (_FLAG_ICC if h.icc is not None else 0)
    out = _pack_fixed(h, 1, flags)
    out += struct.pack("<B", len(h.streams))
    out += b"".join(struct.pack("<I", len(s)) for s in h.streams)
    for part in (h.alpha, h.icc):
        if part is not None:
            out += struct.pack("<I", len(part))
    for part in (*h.streams, h.alpha, h.icc):
        if part is not None:
            out += part
    return out


def _extra_chunk(ctype: str, payload: bytes) -> tuple[str, bytes]:
    if not _is_chunk_type(ctype):
        raise ValueError(f"chunk type {ctype!r} is not 4 ASCII letters")
    if ctype in _FIELD_CHUNKS:
        raise ValueError(f"{ctype!r} chunks are written from Header.streams/alpha/icc, not Header.chunks")
    if is_critical(ctype) and ctype not in CHUNK_TYPES:
        raise ValueError(f"unknown critical chunk {ctype!r}: no slimfast could read the file (add it to CHUNK_TYPES)")
    return ctype, bytes(payload)


def _pack_v2(h: Header) -> bytearray:
    out = _pack_fixed(h, 2, 0)
    chunks = [("STRM", s) for s in h.streams]
    chunks += [(t, p) for t, p in (("ALPH", h.alpha), ("iccp", h.icc)) if p is not None]
    chunks += [_extra_chunk(t, p) for t, p in h.chunks]
    if len(chunks) > MAX_CHUNKS:
        raise ValueError(f"{len(chunks)} chunks, over the format's limit of {MAX_CHUNKS}")
    problem = _chunk_problem([(t, len(p)) for t, p in chunks])
    if problem:
        raise ValueError(problem)
    out += struct.pack("<B", len(chunks))
    for t, p in chunks:
        out += t.encode("ascii") + struct.pack("<I", len(p)) + p
    return out


def pack(h: Header, version: int | None = None) -> bytes:
    """Serialize a header and its payload; the inverse of :func:`unpack`.

    ``version`` None writes version 1 unless the header has extra chunks (only version 2 carries
    them); 1 or 2 forces that version.
    """
    if version is None:
        version = 2 if h.chunks else 1
    if version not in SUPPORTED_VERSIONS:
        raise ValueError(f"cannot write .sfi format version {version}; versions are {SUPPORTED_VERSIONS}")
    if version == 1 and h.chunks:
        raise ValueError("format version 1 cannot carry extra chunks; write version 2")
    out = _pack_v1(h) if version == 1 else _pack_v2(h)
    if len(out) + 4 > MAX_FILE_BYTES:
        raise SlimfastError(f"the .sfi file would be {len(out) + 4} bytes, over the format's limit of {MAX_FILE_BYTES}")
    out += struct.pack("<I", zlib.crc32(out) & 0xFFFFFFFF)
    return bytes(out)


class _Reader:
    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise CorruptFileError("truncated .sfi file")
        b = self.data[self.pos: self.pos + n]
        self.pos += n
        return b

    def unpack(self, fmt: str):
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))


def is_sfi(prefix: bytes) -> bool:
    return prefix[:4] == MAGIC


def _check_version(version: int) -> None:
    if version > LATEST_VERSION:
        raise UnreadableFileError(f"this file needs a newer slimfast: .sfi format version {version} "
                            f"(this slimfast reads versions 1 to {LATEST_VERSION})")
    if version not in SUPPORTED_VERSIONS:
        raise UnreadableFileError(f"unsupported .sfi format version {version} "
                                  f"(this slimfast reads versions 1 to {LATEST_VERSION})")


def _read_fixed(r: _Reader) -> tuple[Header, int, int]:
    """The header both versions share, its flags, and the count byte after it (streams or chunks)."""
    version, flags, mode = r.unpack("<BBB")
    _check_version(version)
    if version == 1 and flags & ~(_FLAG_ALPHA | _FLAG_ICC):
        raise CorruptFileError("corrupt .sfi header: unknown flags")
    if version == 2 and flags:
        raise CorruptFileError("corrupt .sfi header: flags must be 0 in format version 2")
    if mode >= len(MODES):
        raise CorruptFileError("corrupt .sfi header: unknown image mode")
    name = _read_name(r, "model name", MAX_NAME)
    ver = _read_name(r, "weights version", MAX_VERSION)
    wid = r.take(8)
    width, w, h, count = r.unpack("<HIIB")
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise CorruptFileError(f"image size {w}x{h} in header is beyond the format's limit of {MAX_SIDE} per side")
    if w * h > MAX_PIXELS:
        raise CorruptFileError(f"image size {w}x{h} in header exceeds the format's limit of {MAX_PIXELS} pixels")
    hdr = Header(name, ver, wid, width, (w, h), MODES[mode], total_bytes=len(r.data), format_version=version)
    return hdr, flags, count


def _read_name(r: _Reader, what: str, limit: int) -> str:
    """A length-prefixed ASCII field of 1..limit bytes (the length is checked before reading on)."""
    (n,) = r.unpack("<B")
    if not 1 <= n <= limit:
        raise CorruptFileError(f"corrupt .sfi header: {what} of {n} bytes (the format allows 1 to {limit})")
    try:
        return r.take(n).decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFileError(f"corrupt .sfi header: {what} is not ASCII") from None


def _check_crc(data: bytes) -> None:
    (crc,) = struct.unpack("<I", data[-4:])
    if zlib.crc32(data[:-4]) & 0xFFFFFFFF != crc:
        raise CorruptFileError("corrupt .sfi file: CRC mismatch")


def _v1_lengths(r: _Reader, flags: int, nstreams: int) -> tuple[list[int], int | None, int | None]:
    """The v1 stream, alpha and ICC lengths, with the ICC limit (the only one a v1 length has)."""
    if not 1 <= nstreams <= MAX_STREAMS:
        raise CorruptFileError("corrupt .sfi header: bad stream count")
    lengths = [r.unpack("<I")[0] for _ in range(nstreams)]
    alpha_len = r.unpack("<I")[0] if flags & _FLAG_ALPHA else None
    icc_len = r.unpack("<I")[0] if flags & _FLAG_ICC else None
    if icc_len is not None and icc_len > MAX_ICC:
        raise CorruptFileError(f"corrupt .sfi header: ICC profile of {icc_len} bytes is over the format's limit of {MAX_ICC}")
    return lengths, alpha_len, icc_len


def _read_v1(r: _Reader, hdr: Header, flags: int, nstreams: int, header_only: bool) -> Header:
    lengths, alpha_len, icc_len = _v1_lengths(r, flags, nstreams)
    if header_only:
        return hdr
    payload = sum(lengths) + (alpha_len or 0) + (icc_len or 0)
    if r.pos + payload + 4 != len(r.data):
        if r.pos + payload + 4 > len(r.data):
            raise CorruptFileError("truncated .sfi file")
        raise CorruptFileError("corrupt .sfi file: trailing bytes after payload")
    _check_crc(r.data)
    hdr.streams = [r.take(n) for n in lengths]
    hdr.alpha = r.take(alpha_len) if alpha_len is not None else None
    hdr.icc = r.take(icc_len) if icc_len is not None else None
    return hdr


def _walk_chunks(data: bytes, pos: int, n: int) -> list[tuple[str, int, int]]:
    """(type, offset, length) of each chunk, checking that they tile the file up to the CRC exactly."""
    end = len(data) - 4
    spans = []
    for _ in range(n):
        if pos + 8 > end:
            raise CorruptFileError("truncated .sfi file (format version 2)")
        raw, (length,) = data[pos: pos + 4], struct.unpack_from("<I", data, pos + 4)
        if not raw.isalpha():  # bytes.isalpha() is true only for ASCII letters
            raise CorruptFileError(f"{_CORRUPT_V2}: chunk type {raw!r} is not 4 ASCII letters")
        pos += 8
        if pos + length > end:
            raise CorruptFileError("truncated .sfi file (format version 2)")
        spans.append((raw.decode("ascii"), pos, length))
        pos += length
    if pos != end:
        raise CorruptFileError(f"{_CORRUPT_V2}: trailing bytes after the last chunk")
    return spans


def _read_v2(r: _Reader, hdr: Header, nchunks: int, header_only: bool) -> Header:
    if not 1 <= nchunks <= MAX_CHUNKS:
        raise CorruptFileError("corrupt .sfi header (format version 2): bad chunk count")
    if header_only:
        return hdr
    spans = _walk_chunks(r.data, r.pos, nchunks)
    _check_crc(r.data)
    unknown = next((t for t, _, _ in spans if is_critical(t) and t not in CHUNK_TYPES), None)
    if unknown:
        raise UnreadableFileError(f"this file needs a newer slimfast: unknown critical chunk {unknown!r}")
    problem = _chunk_problem([(t, n) for t, _, n in spans])
    if problem:
        raise CorruptFileError(f"{_CORRUPT_V2}: {problem}")
    for t, pos, n in spans:
        payload = r.data[pos: pos + n]
        if t == "STRM":
            hdr.streams.append(payload)
        elif t == "ALPH":
            hdr.alpha = payload
        elif t == "iccp":
            hdr.icc = payload
        else:
            hdr.chunks.append((t, payload))
    return hdr


def unpack(data: bytes, header_only: bool = False) -> Header:
    """Parse and validate a whole ``.sfi`` file of either version (or, with ``header_only``, just its header).

    Raises :class:`SlimfastError` with a one-line reason for anything malformed.
    """
    data = bytes(data)
    if len(data) < 4 or not is_sfi(data):
        raise CorruptFileError("not a slimfast (.sfi) file: wrong magic")
    if len(data) > MAX_FILE_BYTES:
        raise CorruptFileError(f"corrupt .sfi file: {len(data)} bytes, over the format's limit of {MAX_FILE_BYTES}")
    r = _Reader(data)
    r.take(4)
    hdr, flags, count = _read_fixed(r)
    if hdr.format_version == 1:
        return _read_v1(r, hdr, flags, count, header_only)
    return _read_v2(r, hdr, count, header_only)


# -- bounded reading -------------------------------------------------------------------------------
READ_BLOCK = 1 << 20  # a lying length costs at most this much memory beyond the bytes really there


@contextmanager
def open_binary(src):
    """``src`` as a readable binary file: a path (opened and closed here) or a file object (used
    as is); a path that cannot be read is a one-line :class:`SlimfastError`."""
    if not isinstance(src, (str, os.PathLike)):
        yield src
        return
    try:
        f = open(src, "rb")
    except FileNotFoundError:
        raise SlimfastError(f"no such file: {src}") from None
    except IsADirectoryError:
        raise SlimfastError(f"is a directory: {src}") from None
    except PermissionError:
        raise SlimfastError(f"permission denied: {src}") from None
    except OSError as exc:
        raise SlimfastError(f"cannot read {src}: {exc.strerror or exc}") from None
    with f:
        yield f


def read_block(f, n: int, what: str) -> bytes:
    """Up to ``n`` bytes of ``f``, fewer only at its end (pipes and raw files may return short
    reads); a failing read is a one-line error."""
    parts = []
    try:
        while n > 0:
            block = f.read(n)
            if not block:
                break
            parts.append(block)
            n -= len(block)
    except OSError as exc:
        raise SlimfastError(f"cannot read {what}: {exc.strerror or exc}") from None
    return b"".join(parts)


class _FileReader(_Reader):
    """The parser's reader over a file: reads only what the parser asks for, in order, so that a
    lying length costs at most the bytes really there (plus one block), never the length."""

    def __init__(self, f, what: str = ".sfi file"):
        super().__init__(bytearray())
        self.f, self.what = f, what

    def take(self, n: int) -> bytes:
        self.skip(n)
        return bytes(self.data[self.pos - n: self.pos])

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > MAX_FILE_BYTES:
            raise CorruptFileError(f"corrupt .sfi file: its header declares more than the format's limit of "
                                f"{MAX_FILE_BYTES} bytes")
        while len(self.data) < self.pos + n:
            block = read_block(self.f, min(self.pos + n - len(self.data), READ_BLOCK), self.what)
            if not block:
                raise CorruptFileError("truncated .sfi file")
            self.data += block
        self.pos += n


def read_file(src, header_only: bool = False, what: str = ".sfi file") -> bytes:
    """One ``.sfi`` file's bytes from a path or binary file object (stdin included), for
    :func:`unpack`. It reads the fixed header, then only the lengths the header declares (never
    past :data:`MAX_FILE_BYTES`); anything that is not .sfi stops after 4 bytes. With
    ``header_only``, it stops after the header (at most :data:`MAX_HEADER_BYTES`). Bytes after the file are
    an error, found by reading one more byte. ``what`` names the source in read errors."""
    with open_binary(src) as f:
        r = _FileReader(f, what)
        if not is_sfi(read_block(f, 4, what)):
            raise CorruptFileError("not a slimfast (.sfi) file: wrong magic")
        r.data += MAGIC
        r.pos = 4
        hdr, flags, count = _read_fixed(r)
        if hdr.format_version == 1:
            streams, alpha, icc = _v1_lengths(r, flags, count)
            if not header_only:
                r.skip(sum(streams) + (alpha or 0) + (icc or 0) + 4)
        elif not header_only:
            _skip_chunks(r, count)
        if not header_only and read_block(f, 1, what):
            raise CorruptFileError("corrupt .sfi file: trailing bytes after the file's declared end")
        return bytes(r.data)


def _skip_chunks(r: _FileReader, n: int) -> None:
    """Read ``n`` v2 chunks and the CRC through ``r``; :func:`unpack` validates them afterwards."""
    if not 1 <= n <= MAX_CHUNKS:
        raise CorruptFileError("corrupt .sfi header (format version 2): bad chunk count")
    for _ in range(n):
        kind = r.take(4)
        if not (kind.isascii() and kind.isalpha()):  # stop at the first impossible chunk, before its length
            raise CorruptFileError(f"{_CORRUPT_V2}: chunk type {kind!r} is not 4 ASCII letters")
        (length,) = r.unpack("<I")
        r.skip(length)
    r.skip(4)
