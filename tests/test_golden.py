"""The golden files (tests/golden_files.py): shipped models' files decode to the pinned symbols
on every engine and thread count; pixels and encoder output match where the machine does."""
from __future__ import annotations

import json

import pytest

from . import golden_files as g

# Each configuration is measured in its own process (engine and threads are process settings).
pytestmark = pytest.mark.slow

MANIFEST = json.loads(g.MANIFEST.read_text())
FINGERPRINT = g.fingerprint()
SAME_MACHINE = FINGERPRINT in MANIFEST["fingerprints"]


@pytest.fixture(scope="module", params=[f"{e}-{t}" for e, t in g.CONFIGS])
def measured(request):
    engine, threads = request.param.rsplit("-", 1)
    return request.param, g.run_config(engine, int(threads))


def test_every_shipped_point_has_golden_files():
    expected = {f"{g.point_name(m, w)}.sfi" for m, w in g.points()}
    for name, _, _ in g.IMAGES:
        assert {p.name for p in (g.GOLDEN / name).glob("*.sfi")} == expected, name
    assert set(MANIFEST["files"]) == {str(p.relative_to(g.GOLDEN)) for p in g.golden_files()}


def test_legacy_files_decode_to_the_current_files_symbols():
    """Files of the range coder (no LAYT chunk) and of rANS carry the same symbols."""
    legacy = [rel for rel in MANIFEST["files"] if rel != g.current_of(rel)]
    assert legacy
    for rel in legacy:
        current = MANIFEST["files"].get(g.current_of(rel))
        if current is not None:  # a retired point's legacy file has no current twin
            assert MANIFEST["files"][rel]["symbols"] == current["symbols"], rel
            assert b"LAYT" not in (g.GOLDEN / rel).read_bytes(), rel
            assert b"LAYT" in (g.GOLDEN / g.current_of(rel)).read_bytes(), rel


def test_symbols_identical_on_every_engine_and_thread_count(measured):
    config, got = measured
    for rel, entry in MANIFEST["files"].items():
        assert got["decode"][rel]["symbols"] == entry["symbols"], f"{rel} ({config})"


@pytest.mark.skipif(not SAME_MACHINE, reason="pixels are pinned for the machines in the manifest only")
def test_pixels_identical_for_the_same_engine_and_thread_count(measured):
    config, got = measured
    for rel, entry in MANIFEST["files"].items():
        assert got["decode"][rel]["pixels"] == entry["pixels"][FINGERPRINT][config], f"{rel} ({config})"


@pytest.mark.skipif(not SAME_MACHINE, reason="encoder output is pinned for the machines in the manifest only")
def test_encoder_output_identical(measured):
    config, got = measured
    if not g.KODAK.is_dir():
        pytest.skip("the Kodak crops need ../shared/data/kodak")
    encoded = {rel: entry for rel, entry in MANIFEST["files"].items() if "encoded" in entry}
    assert set(got["encode"]) == set(encoded)
    for rel, entry in encoded.items():
        assert got["encode"][rel] == entry["encoded"][FINGERPRINT][config], f"{rel} ({config})"
