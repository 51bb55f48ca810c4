"""Hostile but checksum-valid .sfi files, for tests/test_fuzz.py and benchmarks/fuzz.py.

A mutant is a valid file changed by a list of ops ``(kind, a, b)`` (three integers, so that
hypothesis can draw and shrink them and a seeded ``random.Random`` can replay them), then given
a correct CRC: the parser and the range decoder see it, not just the CRC check. Byte-level ops
hit anywhere; the others aim where a decoder trusts the file: header sizes and lengths, the
names, the streams' words and escape lists, the alpha plane.

:class:`Oracle` says, independently of the decoder, whether a header declares a latent its
streams cannot hold (the bound of docs/format.md, "Work bounded by the file"): such a file
must be refused.
"""
from __future__ import annotations

import random
import struct
import zlib
from pathlib import Path

import numpy as np

import slimfast
from slimfast.format import container

SAMPLE = Path(slimfast.__file__).resolve().parent / "data" / "kodim23.png"
# The valid files: (model, width, mode, format version). FasiNet-L and -H, both slimmable
# families at a narrow and a wide width, every mode, v1 and v2 (v2 with an ICC profile and
# an ancillary chunk). v1 files are range-coded (as slimfast wrote them before LAYT), v2 files rANS.
BASES = (
    ("fasinet-l-msssim-q2", None, "RGB", 1),
    ("fasinet-h-mse-q1", None, "RGBA", 1),
    ("slim-fasinet-l-mse", 48, "L", 2),
    ("slim-fasinet-h-mse", 96, "RGB", 2),
    ("fasinet-h-mse-q4", None, "LA", 2),
    ("slim-fasinet-l-mse", 192, "RGBA", 1),
)

# Values a lying length or size likes to take.
INTERESTING = (0, 1, 2, 3, 7, 15, 16, 17, 63, 64, 65, 127, 128, 255, 256, 4095, 4096, 65535, 65536,
               2 ** 24, 2 ** 28, 2 ** 31 - 1, 2 ** 32 - 1)
# Room the bound leaves beyond a stream's bits (docs/format.md allows the decoder some).
SLACK_BITS = 64


def recrc(data: bytes) -> bytes:
    if len(data) < 8:
        return data
    return data[:-4] + struct.pack("<I", zlib.crc32(data[:-4]) & 0xFFFFFFFF)


def mutate(data: bytes, ops) -> bytes:
    """``data`` with each op applied in turn, then a correct CRC."""
    for kind, a, b in ops:
        data = OPS[kind % len(OPS)](data, a, b)
    return recrc(data)


# -- byte level ---------------------------------------------------------------------------------
def _set_byte(d: bytes, a: int, b: int) -> bytes:
    if len(d) <= 4:
        return d
    p = a % (len(d) - 4)
    return d[:p] + bytes([b & 0xFF]) + d[p + 1:]


def _flip_bit(d: bytes, a: int, b: int) -> bytes:
    if len(d) <= 4:
        return d
    p = a % (len(d) - 4)
    return d[:p] + bytes([d[p] ^ (1 << (b % 8))]) + d[p + 1:]


def _insert(d: bytes, a: int, b: int) -> bytes:
    p = a % (len(d) + 1)
    return d[:p] + random.Random(b).randbytes(1 + b % 8) + d[p:]


def _delete(d: bytes, a: int, b: int) -> bytes:
    p = a % max(len(d), 1)
    return d[:p] + d[p + 1 + b % 16:]


def _truncate(d: bytes, a: int, b: int) -> bytes:
    return d[: a % max(len(d), 1)] + d[-4:] * (b % 2)  # with b odd, keep a (soon fixed) CRC slot


# -- header fields ------------------------------------------------------------------------------
def fields(d: bytes) -> list[tuple[int, int]]:
    """(offset, size) of the header's integer fields, as far as the bytes can be walked."""
    out = [(5, 1), (6, 1), (7, 1)]
    try:
        p = 8 + d[7]
        out.append((p, 1))
        p += 1 + d[p] + 8
        out += [(p, 2), (p + 2, 4), (p + 6, 4), (p + 10, 1)]
        count, p = d[p + 10], p + 11
        if d[4] == 1:
            extra = bin(d[5] & 3).count("1")
            out += [(p + 4 * i, 4) for i in range(count + extra)]
        else:
            for _ in range(count):
                out.append((p + 4, 4))
                p += 8 + struct.unpack_from("<I", d, p + 4)[0]
    except (IndexError, struct.error):
        pass
    return [(o, n) for o, n in out if o + n <= len(d) - 4]


def _set_field(d: bytes, a: int, b: int) -> bytes:
    fs = fields(d)
    if not fs:
        return d
    off, size = fs[a % len(fs)]
    old = int.from_bytes(d[off: off + size], "little")
    choices = INTERESTING + (old + 1, old - 1, old * 2, old // 2, old + 4, old * 16)
    v = choices[b % len(choices)] % (1 << (8 * size))
    return d[:off] + v.to_bytes(size, "little") + d[off + size:]


def _resize(d: bytes, a: int, b: int) -> bytes:
    """A new image size: the same latent, one a little or much larger, or a degenerate one."""
    try:
        hdr = container.unpack(recrc(d))
    except Exception:
        return d
    w, h = hdr.image_size
    k = 1 + a % 64
    options = ((w * k, h), (w, h * k), (w * k, h * k), (w + k, h), (w, h + 1), (1, 1), (65535, 1 + a % 4096),
               (1 + a % 65535, 1 + b % 65535), (w - 1 if w > 1 else 1, h))
    hdr.image_size = options[b % len(options)]
    return _repack(hdr, d)


def _repack(hdr: container.Header, like: bytes) -> bytes:
    try:
        return container.pack(hdr, version=like[4])
    except Exception:  # a size or a field pack refuses: leave the file alone
        return like


# -- streams and the alpha plane ----------------------------------------------------------------
def _uvarint(v: int) -> bytes:
    """A stream's word or escape count: zig-zag coded like the escape values (2 * v)."""
    out, v = bytearray(), 2 * v
    while True:
        out.append((v & 0x7F) | (0x80 if v >> 7 else 0))
        v >>= 7
        if not v:
            return bytes(out)


def _read_uvarint(s: bytes, p: int) -> tuple[int, int]:
    v = shift = 0
    while p < len(s):
        v |= (s[p] & 0x7F) << shift
        shift += 7
        p += 1
        if not s[p - 1] & 0x80:
            break
    return v // 2, p


def word_bytes(hdr: container.Header) -> int:
    """The size of the unit a stream's count counts: 4-byte words (range coder), bytes (rANS)."""
    return 1 if hdr.chunk("LAYT") is not None else 4


def stream_parts(s: bytes, unit: int = 4) -> tuple[bytes, bytes]:
    """(the coder's words, the rest: escape count and values) of a stream whose words are ``unit`` bytes."""
    n, p = _read_uvarint(s, 0)
    return s[p: p + unit * n], s[p + unit * n:]


def _stream_edit(s: bytes, a: int, b: int, unit: int) -> bytes:
    words, tail = stream_parts(s, unit)
    rng = random.Random(a)
    nw = len(words) // unit
    edits = (
        lambda: b"\0\0",                                                   # empty
        lambda: _uvarint(a % (nw + 1)) + words[: unit * (a % (nw + 1))] + tail,  # fewer words
        lambda: _uvarint(nw + 1 + a % 8) + words + rng.randbytes(unit * (1 + a % 8)) + tail,  # more words
        lambda: _uvarint(nw) + rng.randbytes(len(words)) + tail,            # other words
        lambda: _uvarint(nw) + words + _uvarint(a % 300) + rng.randbytes(a % 64),  # other escapes
        lambda: rng.randbytes(a % 2048),                                    # noise
        lambda: _uvarint(nw) + words,                                       # no escape list
        lambda: s + s,                                                      # twice
    )
    return edits[b % len(edits)]()


def _streams(d: bytes, a: int, b: int) -> bytes:
    try:
        hdr = container.unpack(recrc(d))
    except Exception:
        return d
    i = a % len(hdr.streams)
    if b % 11 == 10 and len(hdr.streams) > 1:
        hdr.streams = hdr.streams[::-1]  # z and y swapped
    else:
        hdr.streams[i] = _stream_edit(hdr.streams[i], a // 7, b, word_bytes(hdr))
    return _repack(hdr, d)


def _alpha(d: bytes, a: int, b: int) -> bytes:
    try:
        hdr = container.unpack(recrc(d))
    except Exception:
        return d
    w, h = hdr.image_size
    if w * h > 1 << 20:  # a plane to corrupt would cost more than the mutant is worth
        return d
    plane = zlib.compress(random.Random(a).randbytes(w * h), 9) if hdr.alpha is None else hdr.alpha
    edits = (
        lambda: plane + b"junk"[: 1 + a % 4],                      # junk after the stream
        lambda: plane[: a % max(len(plane), 1)],                   # cut short
        lambda: zlib.compress(b"\xff" * (w * h + (-1, 1)[a % 2])),  # one byte off
        lambda: plane + plane,                                     # two streams
        lambda: None,                                              # gone
        lambda: plane,                                             # present (in any mode)
    )
    hdr.alpha = edits[b % len(edits)]()
    return _repack(hdr, d)


OPS = (_set_byte, _flip_bit, _insert, _delete, _truncate, _set_field, _set_field, _resize, _resize,
       _streams, _streams, _streams, _alpha)


# -- the valid files -----------------------------------------------------------------------------
def image(mode: str):
    """A 96 x 64 crop of the bundled photo in ``mode`` (with a gradient alpha where it has one)."""
    from PIL import Image

    im = Image.open(SAMPLE).convert("RGB").crop((300, 200, 396, 264))
    if mode in ("RGBA", "LA"):
        im = im.convert("RGBA")
        im.putalpha(Image.fromarray(np.tile(np.arange(96, dtype=np.uint8) * 2, (64, 1))))
    return im.convert(mode)


def build_bases() -> list[tuple[str, bytes, Oracle]]:
    """(label, valid file, its oracle) for each of :data:`BASES`."""
    out = []
    from slimfast.settings import Settings

    for name, width, mode, version in BASES:
        coder = "range" if version == 1 else "auto"
        codec = slimfast.load(name, settings=Settings.from_env().replace(threads=1, coder=coder))
        hdr = container.unpack(codec.compress(image(mode), width=width))
        if version == 2:
            hdr.chunks = hdr.chunks + [("abcd", b"an ancillary chunk")]
            hdr.icc = b"\0" * 64
        out.append((f"{name}-{width or ''}-{mode}-v{version}", container.pack(hdr, version=version), Oracle(codec)))
    return out


# -- the capacity oracle ------------------------------------------------------------------------
def _min_bits(freqs: np.ndarray) -> np.ndarray:
    top = np.maximum(np.asarray(freqs).max(axis=1), 1).astype(np.float64)
    return -np.log2(top / 65536.0)


class Oracle:
    """Whether a header's declared latent fits its streams, from one loaded codec's tables."""

    def __init__(self, codec):
        self.codec = codec

    def cannot_hold(self, hdr: container.Header) -> bool:
        """True if some stream is shorter than the least its declared symbols cost; False if
        all fit or the header does not name this model, a width it has or its stream count."""
        info, path = self.codec.info, self.codec.model
        if (hdr.model, hdr.weights_version) != (info.name, info.version) or len(hdr.streams) != path.num_strings:
            return False
        try:
            lc = path.codec(hdr.width)
        except ValueError:
            return False
        m = path.pad_multiple
        w, h = hdr.image_size
        hw = -(-h // m) * -(-w // m)
        if hasattr(lc, "z"):
            need = [hw * _min_bits(lc.z.tables.freqs)[: lc.channels].sum(),
                    16 * hw * lc.channels * _min_bits(lc.tables.freqs).min()]
        else:
            need = [hw * _min_bits(lc.tables.freqs)[: lc.channels].sum()]
        return any(n > 8 * len(s) + SLACK_BITS for n, s in zip(need, hdr.streams))
