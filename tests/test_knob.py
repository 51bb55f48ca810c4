"""The continuous quality knob: quantization steps, the QUAL chunk, quality to (point, step)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import slimfast
from slimfast import codec, quality
from slimfast.codec import pad_image, to_input
from slimfast.coding import intmath
from slimfast.coding.intmath import STEP_MAX, STEP_MIN, STEP_ONE
from slimfast.errors import CorruptFileError, UnreadableFileError
from slimfast.format import container

STEPS = (STEP_MIN, 3000, STEP_ONE, 5000, 9000, STEP_MAX)


@pytest.fixture(scope="module")
def crop(sample_rgb) -> np.ndarray:
    return np.ascontiguousarray(sample_rgb[100:228, 200:392])


def test_divide_by_step_is_integer_floor_division_at_the_extremes():
    v = np.array([-(2.0 ** intmath.ACT_CLIP), -4097.0, -1.0, 0.0, 1.0, 4095.0, 4097.0, 2.0 ** intmath.ACT_CLIP])
    for step in (STEP_MIN, STEP_MIN + 1, 4095, STEP_ONE, 4097, 12345, STEP_MAX - 1, STEP_MAX):
        got = intmath.divide_by_step(v, step)
        assert got.tolist() == [float(int(a) * STEP_ONE // step) for a in v], step


@pytest.mark.parametrize("name", ["test-h", "fasinet-h-mse-q4"])
def test_every_step_round_trips_the_symbols_exactly(name, model_dir, crop):
    model = slimfast.load(name, threads=1).model
    x = to_input(pad_image(crop, model.pad_multiple))
    sizes = []
    for step in STEPS:
        lat = model.compress(x, step=step)
        assert lat.step == step
        back = model.decode_symbols(lat.strings, lat.shape, step=step)
        sym = model.encode_symbols(x, step=step)
        assert all(np.array_equal(back[k], sym[k]) for k in sym)
        payload = sum(map(len, lat.strings))
        sizes.append(payload)
        if name != "test-h":  # random weights code many escapes, which the estimate leaves out
            # + lengths and each stream's two 32-bit rANS states, which carry 23 bits of no information each
            assert abs(payload * 8 - model.estimate_bits(sym, step=step)) < 0.02 * payload * 8 + 160
    if name != "test-h":  # trained weights: a coarser step never costs more bytes
        assert sizes == sorted(sizes, reverse=True)


def test_a_step_needs_a_hyperprior(model_dir, crop):
    model = slimfast.load("test-l", threads=1).model
    with pytest.raises(ValueError, match="no hyperprior"):
        model.compress(to_input(pad_image(crop, model.pad_multiple)), step=5000)


def test_the_knob_maps_quality_to_points_and_steps():
    k = quality.Knob((0.0012, 0.013, 0.1), 1)
    assert k.at(quality.DEFAULT_QUALITY) == (1, STEP_ONE)
    assert k.at(0) == (0, STEP_MAX)
    top, step = k.at(100)
    assert top == 2 and step == round(STEP_ONE * quality.TOP_STEP)
    ranges = [k.quality_range(i) for i in range(3)]
    assert ranges[0][0] == 0 and ranges[-1][1] == 100
    assert all(a[1] == b[0] for a, b in zip(ranges, ranges[1:]))
    qs = np.linspace(0, 100, 401)
    picks = [k.at(q) for q in qs]
    assert [i for i, _ in picks] == sorted(i for i, _ in picks)  # points never go back down
    for q, (i, step) in zip(qs, picks):
        lo, hi = ranges[i]
        assert lo <= q <= hi and STEP_MIN <= step <= STEP_MAX
    with pytest.raises(ValueError):
        quality.Knob((0.01, 0.01), 0)


def test_families_without_a_hyperprior_keep_the_ladder(model_dir):
    assert codec.knob_for(slimfast.zoo.get("fasinet-l-msssim-q4")) is None
    assert codec.knob_for(slimfast.zoo.get("slim-fasinet-l-mse")) is None
    c = slimfast.load("fasinet-l-msssim-q4", threads=1)
    assert c.resolve(50, None).step == STEP_ONE
    assert codec.knob_for(slimfast.zoo.get("fasinet-h-mse-q4")) is not None
    assert codec.knob_for(slimfast.zoo.get("slim-fasinet-h-mse")) is not None


def test_quality_75_and_no_quality_write_the_same_file_without_a_quality_chunk(crop):
    c = slimfast.load("fasinet-h-mse-q4", threads=1)
    plain = c.compress(crop)
    assert c.compress(crop, quality=quality.DEFAULT_QUALITY) == plain
    assert container.unpack(plain).chunk("QUAL") is None


def test_file_size_grows_with_quality_and_files_decode(crop):
    c = slimfast.load("fasinet-h-mse-q4", threads=1)
    sizes, psnrs = [], []
    for q in range(0, 101, 10):
        data = c.compress(crop, quality=q)
        hdr = container.unpack(data)
        point = c.resolve(q, None)
        assert hdr.model == point.model
        assert (hdr.chunk("QUAL") is None) == (point.step == STEP_ONE)
        out = np.asarray(slimfast.decompress(data)).astype(np.float64)
        sizes.append(len(data))
        psnrs.append(10 * np.log10(255 ** 2 / np.mean((out - crop) ** 2)))
    assert sizes == sorted(sizes)
    assert psnrs[-1] - psnrs[0] > 8


def _with_chunk(data: bytes, payload: bytes) -> bytes:
    hdr = container.unpack(data)
    hdr.chunks = [c for c in hdr.chunks if c[0] != "QUAL"] + [("QUAL", payload)]
    return container.pack(hdr)


@pytest.mark.parametrize("payload,match", [(b"\x00\x00", "quantization step 0"),
                                           (b"\xff\xff", "quantization step 65535"),
                                           (b"\x01", "quality chunk of 1 bytes")])
def test_bad_quality_chunks_fail_in_one_line(payload, match, crop):
    data = _with_chunk(slimfast.load("fasinet-h-mse-q4", threads=1).compress(crop), payload)
    with pytest.raises(CorruptFileError, match=match):
        slimfast.decompress(data)


def test_a_quality_chunk_in_a_factorized_models_file_is_corrupt(model_dir, crop):
    data = _with_chunk(slimfast.load("test-l", threads=1).compress(crop), container.pack_step(5000))
    with pytest.raises(CorruptFileError, match="no hyperprior"):
        slimfast.decompress(data)


def test_a_reader_that_predates_the_chunk_refuses_the_file(monkeypatch, crop):
    data = slimfast.load("fasinet-h-mse-q4", threads=1).compress(crop, quality=50)
    monkeypatch.delitem(container.CHUNK_TYPES, "QUAL")
    with pytest.raises(UnreadableFileError, match="needs a newer slimfast: unknown critical chunk 'QUAL'"):
        container.unpack(data)


def test_cli_decompress_of_a_bad_step_is_one_line(tmp_path, crop):
    src = tmp_path / "bad.sfi"
    src.write_bytes(_with_chunk(slimfast.load("fasinet-h-mse-q4", threads=1).compress(crop), b"\x00\x00"))
    res = subprocess.run([sys.executable, "-m", "slimfast", "decompress", str(src), "-o", str(tmp_path / "out.png")],
                         capture_output=True, text=True)
    assert res.returncode != 0 and len(res.stderr.strip().splitlines()) == 1
    assert "quantization step" in res.stderr and not (tmp_path / "out.png").exists()


def test_max_bytes_never_writes_more_and_beats_the_ladder(crop):
    """Over many limits: never above it, never below the best point of the ladder that fits, and
    close to it where the knob reaches (the knob moves in small steps)."""
    c = slimfast.load("fasinet-h-mse-q4", threads=1)
    ladder = [len(slimfast.load(p.model, threads=1).compress(crop)) for p in c.operating_points()]
    smallest = len(c.compress(crop, quality=0))
    largest = len(c.compress(crop, quality=100))
    for n in np.unique(np.geomspace(smallest, largest * 1.2, 17).astype(int)):
        data = c.compress(crop, max_bytes=int(n))
        assert len(data) <= n
        assert len(data) >= max((s for s in ladder if s <= n), default=0)
        if 2 * smallest <= n < largest:  # the smallest files move in coarser steps (z's bytes are fixed)
            assert len(data) > 0.9 * n, (n, len(data))
        assert slimfast.decompress(data).size == (crop.shape[1], crop.shape[0])
    with pytest.raises(slimfast.SlimfastError, match=f"fits {smallest - 1} bytes: the smallest file is {smallest}"):
        c.compress(crop, max_bytes=smallest - 1)
    bpp = (largest // 2) * 8 / (crop.shape[0] * crop.shape[1])
    assert len(c.compress(crop, target_bpp=bpp)) <= largest // 2
