"""Fuzzing the decoder with hostile, checksum-valid files (tests/fuzzing.py makes them).

Each mutant of a valid file of a bundled model (several architectures, widths, modes, both
container versions) gets a correct CRC, so the parser, the latent codecs and the range decoder
all see it. Decoding it may only succeed or raise SlimfastError (one line); a mutant whose
declared latent its streams cannot hold must be refused. benchmarks/fuzz.py runs the same
mutators for 50,000 cases.
"""
from __future__ import annotations

import functools
import signal
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import slimfast
from slimfast.format import container
from slimfast.errors import SlimfastError

from . import fuzzing
from .fuzzing import BASES

EXAMPLES = 500  # per base: 3,000 checksum-valid mutants in all
MUTANTS = 2000  # at least this many per full run
# Decoding is bounded by the file (the capacity check) and, for larger claims, by this: a
# mutant may declare up to ~10x the original image and still be decoded for real.
MAX_PIXELS = 1 << 16
HANG_SECONDS = 60
_ran: dict[int, int] = {}


@functools.cache
def _bases() -> list[tuple[bytes, fuzzing.Oracle]]:
    return [(data, oracle) for _, data, oracle in fuzzing.build_bases()]


@pytest.fixture(scope="module")
def bases():
    return _bases()


@contextmanager
def _hang_guard(seconds: int):
    """Fail (not hang) if one decode runs away; generous: a case takes milliseconds."""
    def fail(*_):
        raise AssertionError(f"one decode ran over {seconds} s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def decode_mutant(data: bytes, oracle: fuzzing.Oracle) -> str:
    """"decoded" or "rejected"; anything but SlimfastError escapes, failing the test."""
    try:
        with _hang_guard(HANG_SECONDS):
            img = slimfast.decompress(data, threads=1, max_pixels=MAX_PIXELS)
    except SlimfastError as exc:
        assert "\n" not in str(exc), str(exc)
        return "rejected"
    hdr = container.unpack(data)
    assert not oracle.cannot_hold(hdr), "decoded a file whose streams cannot hold its declared latent"
    assert img.size == hdr.image_size
    return "decoded"


def test_the_bases_decode_and_fit(bases):
    for data, oracle in bases:
        assert decode_mutant(data, oracle) == "decoded"


_OPS = st.lists(st.tuples(st.integers(0, len(fuzzing.OPS) - 1), st.integers(0, 2 ** 32 - 1),
                          st.integers(0, 2 ** 32 - 1)), min_size=1, max_size=4)


@pytest.mark.parametrize("base", range(len(BASES)), ids=[f"{n}-{w or ''}-{m}-v{v}" for n, w, m, v in BASES])
@settings(max_examples=EXAMPLES, deadline=None, database=None, phases=[Phase.explicit, Phase.generate, Phase.shrink],
          suppress_health_check=[HealthCheck.too_slow])
@given(ops=_OPS)
def test_mutants_only_raise_the_clear_error(base, ops):
    """A failure prints (base, ops); tests.fuzzing.mutate(valid file, ops) rebuilds the mutant."""
    data, oracle = _bases()[base]
    mutant = fuzzing.mutate(data, ops)
    decode_mutant(mutant, oracle)
    _ran[base] = _ran.get(base, 0) + 1


@pytest.mark.parametrize("model", ["fasinet-l-msssim-q2", "fasinet-h-mse-q1", "slim-fasinet-l-mse", "fasinet-h-mse-q4"])
def test_every_stream_truncation_is_refused_or_exact(bases, model):
    """Cutting words off a stream (range-coded: the first two; rANS: the others): refused, or
    (rarely) the very same symbols."""
    data, oracle = next(b for b in bases if b[1].codec.name == model)
    hdr = container.unpack(data)
    unit = fuzzing.word_bytes(hdr)
    for i, s in enumerate(hdr.streams):
        words, tail = fuzzing.stream_parts(s, unit)
        for n in range(0, len(words) // unit, max(1, len(words) // unit // 400)):
            hdr2 = container.unpack(data)
            hdr2.streams[i] = fuzzing._uvarint(n) + words[: unit * n] + tail
            decode_mutant(container.pack(hdr2, version=data[4]), oracle)


def test_enough_mutants_ran():
    if len(_ran) < len(BASES):
        pytest.skip("only part of the fuzz tests ran")
    assert sum(_ran.values()) >= MUTANTS
