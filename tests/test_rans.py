"""The rANS coder (slimfast/coding/rans.py): the native code writes and reads exactly the bytes of
the pure-Python reference, decodes exactly what was encoded, and refuses malformed streams."""
from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slimfast.coding import coder, rans
from slimfast.coding.coder import CorruptStream

pytestmark = pytest.mark.skipif(rans.native is None, reason="the native rANS coder is not built")


def random_tables(rng, rows=6, width=40, peaked=False):
    lengths = rng.integers(1, width - 1, rows).astype(np.int32)
    offsets = rng.integers(-20, 5, rows).astype(np.int32)
    freqs = np.zeros((rows, width), np.int32)
    for t in range(rows):
        alpha = 0.05 if peaked else 0.5
        freqs[t, : lengths[t] + 1] = coder.pmf_to_freqs(rng.dirichlet(np.full(lengths[t], alpha)), 1e-4)
    return freqs, lengths, offsets


@pytest.fixture
def reference(monkeypatch):
    """Build and run tables with the pure-Python loops (what an install without a compiler uses)."""
    def prepared(*tables):
        with monkeypatch.context() as m:
            m.setattr(rans, "native", None)
            return rans.Prepared(*tables)
    return prepared


def values_for(rng, n, rows, escapes=True):
    idx = rng.integers(0, rows, n).astype(np.int16)
    vals = rng.integers(-25, 40, n).astype(np.int32)
    if escapes and n:
        far = rng.random(n) < 0.05
        vals[far] = rng.integers(-2 ** 31, 2 ** 31 - 1, int(far.sum()), dtype=np.int64)
        vals[0] = -2 ** 31
        vals[-1] = 2 ** 31 - 1
    return vals, idx


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 4000])
@pytest.mark.parametrize("peaked", [False, True])
def test_native_bytes_equal_the_reference_and_decode_exactly(reference, n, peaked):
    rng = np.random.default_rng(n)
    tables = random_tables(rng, peaked=peaked)
    native, ref = rans.Prepared(*tables), reference(*tables)
    vals, idx = values_for(rng, n, len(tables[1]))
    data = rans.encode(vals, idx, native)
    assert rans.encode(vals, idx, ref) == data
    assert np.array_equal(rans.decode(data, idx, native), vals)
    assert np.array_equal(rans.decode(data, idx, ref), vals)
    assert np.array_equal(rans.decode(data, idx.astype(np.int32), native), vals)  # either index width


def test_shapes_and_index_types_round_trip():
    rng = np.random.default_rng(1)
    tables = rans.Prepared(*random_tables(rng, rows=3))
    vals = rng.integers(-5, 5, (1, 3, 4, 5)).astype(np.int32)
    idx = np.broadcast_to(np.arange(3, dtype=np.int64).reshape(1, 3, 1, 1), vals.shape)
    out = rans.decode(rans.encode(vals, idx, tables), idx, tables)
    assert out.shape == vals.shape and np.array_equal(out, vals)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-2 ** 31, 2 ** 31 - 1), max_size=200), st.integers(0, 2 ** 32 - 1))
def test_any_int32_values_round_trip(values, seed):
    rng = np.random.default_rng(seed)
    freqs, lengths, offsets = random_tables(rng, rows=4, width=12, peaked=True)
    tables = rans.Prepared(freqs, lengths, offsets)
    vals = np.array(values, dtype=np.int32)
    idx = rng.integers(0, 4, vals.size).astype(np.int16)
    assert np.array_equal(rans.decode(rans.encode(vals, idx, tables), idx, tables), vals)


def test_size_is_within_a_few_bytes_of_the_ideal_code_length():
    """States of 2^23..2^31 keep rANS's loss small: at most 8 bytes of states, headers and 0.1%."""
    rng = np.random.default_rng(2)
    freqs, lengths, offsets = random_tables(rng, rows=8, width=64, peaked=True)
    vals, idx = values_for(rng, 200_000, 8, escapes=False)
    off = offsets[idx].astype(np.int64)
    vals = np.clip(vals, off, off + lengths[idx] - 1).astype(np.int32)  # no escapes: pure code length
    data = rans.encode(vals, idx, rans.Prepared(freqs, lengths, offsets))
    ideal = coder.estimate_bits(vals, idx, freqs, lengths, offsets) / 8
    assert ideal <= len(data) <= ideal * 1.001 + 8 + 8


def test_decoding_on_two_threads_gives_the_same_symbols():
    """The native loops release the GIL and share nothing: streams decode in parallel."""
    rng = np.random.default_rng(3)
    tables = rans.Prepared(*random_tables(rng))
    jobs = [values_for(rng, 50_000, 6) for _ in range(4)]
    data = [rans.encode(v, i, tables) for v, i in jobs]
    out = [None] * len(jobs)

    def work(k):
        out[k] = rans.decode(data[k], jobs[k][1], tables)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(np.array_equal(o, v) for o, (v, _) in zip(out, jobs))


@pytest.fixture
def stream():
    rng = np.random.default_rng(4)
    tables = random_tables(rng)
    vals, idx = values_for(rng, 3000, 6)
    return tables, vals, idx, rans.encode(vals, idx, rans.Prepared(*tables))


def _errors(tables, data, idx, reference):
    """The error each implementation raises for ``data`` (None: it decoded)."""
    out = []
    for prepared in (rans.Prepared(*tables), reference(*tables)):
        try:
            rans.decode(data, idx, prepared)
            out.append(None)
        except CorruptStream as exc:
            out.append(str(exc))
    return out


@pytest.mark.parametrize("damage", ["truncate", "extend", "first state", "second state", "escape count",
                                    "length", "flip"])
def test_malformed_streams_fail_the_same_way_in_both_implementations(stream, reference, damage):
    tables, vals, idx, data = stream
    b = bytearray(data)
    pos = coder._read_uvarint(memoryview(data), 0)[1]
    if damage == "truncate":
        b = b[:-1]
    elif damage == "extend":
        b += b"\0"
    elif damage == "first state":
        b[pos] = 0x00  # below 2^23
    elif damage == "second state":
        b[pos + 4] = 0xFF  # at or above 2^31
    elif damage == "escape count":
        b = bytearray(data[: len(data) - 1])  # drop the last escape byte, then claim one fewer
    elif damage == "length":
        b[0] ^= 0x01
    else:
        b[pos + 40] ^= 0x10
    errors = _errors(tables, bytes(b), idx, reference)
    assert errors[0] is not None and errors[0].startswith("corrupt stream: ")
    assert errors[0] == errors[1]


def test_random_damage_never_crashes_and_both_implementations_agree(stream, reference):
    tables, vals, idx, data = stream
    rng = np.random.default_rng(5)
    short_idx = idx[:300]
    short = rans.encode(vals[:300], short_idx, rans.Prepared(*tables))
    for _ in range(150):
        b = bytearray(short)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        e = _errors(tables, bytes(b), short_idx, reference)
        assert e[0] == e[1]


def test_a_row_that_is_not_a_table_cannot_be_used(reference):
    rng = np.random.default_rng(6)
    freqs, lengths, offsets = random_tables(rng, rows=3)
    freqs[1, 0] += 1  # no longer sums to 2^16
    for prepared in (rans.Prepared(freqs, lengths, offsets), reference(freqs, lengths, offsets)):
        ok = np.zeros(5, np.int16)
        assert not rans.decode(rans.encode(np.zeros(5, np.int32), ok, prepared), ok, prepared).any()
        with pytest.raises(ValueError, match="no valid table row"):
            rans.encode(np.zeros(5, np.int32), np.ones(5, np.int16), prepared)
        with pytest.raises(ValueError, match="no valid table row"):
            rans.encode(np.zeros(5, np.int32), np.full(5, 3, np.int16), prepared)


def test_bundled_tables_are_all_codable():
    """Every row a shipped model's latent codec can pick is a valid rANS table."""
    from slimfast import zoo
    from slimfast.runtime import load_model

    for info in zoo.list_models():
        codec = load_model(info.path).codec()
        for tables in [codec.tables] + ([codec.z.tables] if hasattr(codec, "z") else []):
            prepared = tables.prepared
            assert prepared.valid.all(), info.name


# -- files: the LAYT chunk names the coder ------------------------------------------------------------
@pytest.mark.parametrize("name", ["test-l", "test-h"])
def test_new_files_are_rans_and_carry_the_symbols_of_range_coded_ones(model_dir, small_rgb, name):
    import slimfast
    from slimfast import codec as codec_module
    from slimfast.format import container
    from slimfast.settings import Settings

    data = slimfast.load(name, threads=1).compress(small_rgb)
    old = slimfast.load(name, settings=Settings.from_env().replace(coder="range", threads=1)).compress(small_rgb)
    hdr, old_hdr = container.unpack(data), container.unpack(old)
    assert hdr.chunk("LAYT") == b"\x01" and old_hdr.chunk("LAYT") is None and old_hdr.format_version == 1
    syms, old_syms = codec_module.decode_symbols(data), codec_module.decode_symbols(old)
    assert all(np.array_equal(syms[k], old_syms[k]) for k in syms)
    assert np.array_equal(np.asarray(slimfast.decompress(data, threads=1)),
                          np.asarray(slimfast.decompress(old, threads=1)))


def test_the_reference_decodes_a_real_file(model_dir, small_rgb, reference):
    """An install without the native code reads the files of one with it."""
    import slimfast
    from slimfast import codec as codec_module
    from slimfast.format import container

    data = slimfast.load("test-h", threads=1).compress(small_rgb)
    syms = codec_module.decode_symbols(data)
    model = slimfast.load("test-h", threads=1).model
    t = model.codec().tables
    _, index = model.codec().entropy_parameters(syms["z"])
    ref = reference(t.freqs, t.lengths, t.offsets)
    y = container.unpack(data).streams[1]
    assert np.array_equal(rans.decode(y, index, ref), syms["y"].reshape(index.shape))


@pytest.mark.parametrize("payload, message", [(b"\x07", "needs a newer slimfast: unknown entropy coder 7"),
                                              (b"\x00", "needs a newer slimfast: unknown entropy coder 0"),
                                              (b"\x01\x01", "over its limit"),
                                              (b"", "layout chunk of 0 bytes")])
def test_bad_layout_chunks_fail_in_one_line(model_dir, small_rgb, payload, message):
    import dataclasses

    import slimfast
    from slimfast.errors import SlimfastError
    from slimfast.format import container

    hdr = container.unpack(slimfast.load("test-h", threads=1).compress(small_rgb))
    chunks = [(t, payload if t == "LAYT" else p) for t, p in hdr.chunks]
    bad = container.pack(dataclasses.replace(hdr, chunks=chunks)) if len(payload) <= 1 else None
    if bad is None:  # over LAYT's length limit: the container itself refuses to write it
        with pytest.raises(ValueError, match="over its limit"):
            container.pack(dataclasses.replace(hdr, chunks=chunks))
        return
    with pytest.raises(SlimfastError, match=message) as exc:
        slimfast.decompress(bad, threads=1)
    assert "\n" not in str(exc.value)


def test_the_coder_setting(model_dir, small_rgb):
    from slimfast.errors import SlimfastError
    from slimfast.settings import Settings

    assert Settings.from_env({"SLIMFAST_CODER": "range"}).coder == "range"
    assert Settings.from_env({}).coder == "auto"
    with pytest.raises(SlimfastError, match="SLIMFAST_CODER must be one of auto, rans, range"):
        Settings.from_env({"SLIMFAST_CODER": "huffman"})


_WITHOUT_NATIVE = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name == "slimfast.coding._rans":
            raise ImportError("not built")
sys.meta_path.insert(0, Block())
import numpy as np, slimfast
from slimfast.coding import latent_codecs, rans
from slimfast.format import container
assert rans.native is None and latent_codecs.DEFAULT_CODER == "range"
img = np.asarray(slimfast.decompress(sys.argv[1], threads=1))
assert np.array_equal(img, np.load(sys.argv[2]))
out = slimfast.compress(img, model="fasinet-h-mse-q1", threads=1)
assert container.unpack(out).chunk("LAYT") is None
print("ok")
"""


@pytest.mark.slow
def test_an_install_without_the_native_coder_reads_rans_files_and_writes_range(tmp_path, sample_rgb):
    import subprocess
    import sys

    import slimfast

    crop = np.ascontiguousarray(sample_rgb[:64, :96])
    data = slimfast.compress(crop, model="fasinet-h-mse-q1", threads=1)
    (tmp_path / "a.sfi").write_bytes(data)
    np.save(tmp_path / "a.npy", np.asarray(slimfast.decompress(data, threads=1)))
    res = subprocess.run([sys.executable, "-c", _WITHOUT_NATIVE, str(tmp_path / "a.sfi"), str(tmp_path / "a.npy")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr[-2000:]
