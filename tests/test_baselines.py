"""Baseline codecs, the evaluation harness and the benchmark, on small images."""
from __future__ import annotations

import argparse
import csv
import json

import numpy as np
import pytest
from PIL import Image

from slimfast.tools import baselines
from slimfast import metrics

SIGNATURES = {
    "jpeg": lambda d: d[:2] == b"\xff\xd8",
    "webp": lambda d: d[:4] == b"RIFF" and d[8:12] == b"WEBP",
    "avif": lambda d: d[4:8] == b"ftyp" and b"avif" in d[8:32],
    "jpeg2000": lambda d: d[:4] == b"\xff\x4f\xff\x51",
    "heic": lambda d: d[4:8] == b"ftyp" and b"heic" in d[8:32],
    "jpegxl": lambda d: d[:2] == b"\xff\x0a" or d[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n",
}


def _image(h=192, w=256) -> np.ndarray:
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 0.8, y, 128 + 60 * np.sin(x / 9.0) * np.cos(y / 7.0)], axis=2)
    return np.clip(base + 20 + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)


def test_availability_reports_every_codec_without_raising():
    avail = baselines.availability()
    assert set(avail) == set(baselines.NAMES)
    for ok, reason in avail.values():
        assert isinstance(ok, bool) and (ok or reason)
    with pytest.raises(KeyError):
        baselines.get("bpg")


@pytest.mark.parametrize("name", baselines.NAMES)
def test_round_trip_real_files(name):
    codec = baselines.get(name)
    ok, reason = codec.available()
    if not ok:
        pytest.skip(reason)
    img = _image()
    lo, hi = codec.qualities[1], codec.qualities[-2]
    small, big = codec.encode(img, lo), codec.encode(img, hi)
    assert SIGNATURES[name](small) and SIGNATURES[name](big)
    assert 0 < len(small) < len(big)
    out_small, out_big = codec.decode(small), codec.decode(big)
    assert out_small.shape == img.shape and out_small.dtype == np.uint8
    assert out_big.shape == img.shape
    p_small, p_big = metrics.psnr(img, out_small), metrics.psnr(img, out_big)
    assert 20 < p_small < p_big
    assert p_big > 30
    assert codec.version()
    assert list(codec.qualities) == sorted(codec.qualities)


def _write_images(folder, n=2):
    folder.mkdir()
    for i in range(n):
        Image.fromarray(np.roll(_image(), 17 * i, axis=1)).save(folder / f"im{i}.png")
    return folder


def _eval_args(argv):
    from slimfast.tools import evaluate

    p = argparse.ArgumentParser()
    evaluate.add_arguments(p)
    return p.parse_args(argv)


def test_evaluate_baselines_end_to_end(tmp_path):
    pytest.importorskip("scipy", reason="scipy not installed")
    from slimfast.tools import evaluate

    imgs = _write_images(tmp_path / "imgs")
    out = tmp_path / "out"
    plots = pytest.importorskip("matplotlib", reason="matplotlib not installed") is not None
    args = _eval_args([str(imgs), "--out", str(out), "--models", "none", "--baselines", "jpeg", "webp",
                       "--anchors", "--no-progress"] + ([] if plots else ["--no-plots"]))
    assert evaluate.run(args) == 0
    res = json.loads((out / "results.json").read_text())
    n_rows = 2 * (len(baselines.get("jpeg").qualities) + len(baselines.get("webp").qualities))
    assert len(res["records"]) == n_rows
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == n_rows
    # bpp comes from the real byte count, and the mean is the mean of per-image values
    for r in res["records"]:
        assert r["bpp"] == pytest.approx(r["bytes"] * 8 / (r["height"] * r["width"]))
    jpeg50 = [r for r in res["records"] if r["codec"] == "jpeg" and r["param"] == 50]
    mean50 = next(m for m in res["means"] if m["codec"] == "jpeg" and m["param"] == 50)
    assert mean50["bpp"] == pytest.approx(np.mean([r["bpp"] for r in jpeg50]))
    assert mean50["msssim_db"] == pytest.approx(np.mean([r["msssim_db"] for r in jpeg50]))
    bd = {(e["test"], e["ref"], e["metric"]): e for e in res["bd"]}
    assert bd[("webp", "jpeg", "psnr")]["bd_rate"] is not None
    assert ("webp", "bmshj2018-hyperprior", "psnr") in bd  # anchors are references
    assert "mean of per-image" in (out / "summary.md").read_text().lower().replace("means of", "mean of")
    if plots:
        assert (out / "rd_psnr.png").stat().st_size > 1000 and (out / "rd_msssim_db.png").exists()


def test_evaluate_rejects_unknown_names_and_empty_folders(tmp_path):
    from slimfast.tools import evaluate

    imgs = _write_images(tmp_path / "imgs", 1)
    assert evaluate.run(_eval_args([str(imgs), "--out", str(tmp_path / "o"), "--models", "none",
                                    "--baselines", "bpg", "--no-progress"])) == 2
    (tmp_path / "empty").mkdir()
    assert evaluate.run(_eval_args([str(tmp_path / "empty"), "--out", str(tmp_path / "o"),
                                    "--models", "none", "--no-progress"])) == 2


def test_evaluate_learned_model_writes_and_decodes_real_files(tmp_path, model_dir):
    pytest.importorskip("scipy", reason="scipy not installed")
    from slimfast.tools import evaluate

    imgs = _write_images(tmp_path / "imgs", 1)
    out = tmp_path / "out"
    args = _eval_args([str(imgs), "--out", str(out), "--models", "test-h", "--baselines", "jpeg",
                       "--no-plots", "--no-progress", "--no-ms-ssim"])
    assert evaluate.run(args) == 0
    res = json.loads((out / "results.json").read_text())
    rows = [r for r in res["records"] if r["kind"] == "model"]
    assert len(rows) == 1 and rows[0]["codec"] == "test-h" and rows[0]["bytes"] > 0
    assert rows[0]["dec_ms"] > 0 and rows[0]["psnr"] is not None
    assert any(c["kind"] == "learned" for c in res["curves"])


def test_bench_baselines_only(tmp_path):
    from slimfast.tools import bench

    Image.fromarray(_image()).save(tmp_path / "s.png")
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--image", str(tmp_path / "s.png"), "--models", "none", "--baselines", "jpeg",
                         "--repeats", "2", "--sizes", "--out", str(tmp_path / "b"), "--no-progress"])
    assert bench.run(args) == 0
    res = json.loads((tmp_path / "b" / "bench.json").read_text())
    t = res["baselines"]["jpeg"]["timings"][0]
    assert t["enc_ms"] > 0 and t["dec_ms"] > 0 and t["bpp"] > 0
    assert "JPEG" in (tmp_path / "b" / "bench.md").read_text()


def test_bench_size_helpers():
    from slimfast.tools import bench

    h, w = bench.size_for(2.0)
    assert h % 16 == 0 and w % 16 == 0 and abs(h * w / 2e6 - 1) < 0.05 and abs(w / h - 1.5) < 0.05
    img = _image(20, 30)
    big = bench.tile_to(img, 50, 70)
    assert big.shape == (50, 70, 3)
    assert np.array_equal(big[:20, :30], img) and np.array_equal(big[20:40, :30], img[::-1])


def test_bench_cold_start_and_install_size():
    from slimfast.tools import bench
    from slimfast import runtime, zoo

    inst = bench.install_sizes()
    if "error" in inst:
        pytest.skip(inst["error"])
    assert inst["core_mb"] > 0 and "torch" not in inst["core_packages"] and "onnxruntime" in inst["core_packages"]
    assert inst["with_torch_mb"] >= inst["core_mb"]
    cold = bench.cold_start(bench.PACKAGE_SAMPLE, 1, 1)
    assert cold.get("error") is None, cold
    assert cold["decompress_ms"] >= cold["decompress_in_process_ms"] > 0
    if runtime.available() and runtime.supports(zoo.get().architecture):
        assert cold["imports_torch"] is False
    res = {"image": {"name": "x.png", "width": 1, "height": 1, "mp": 1e-6},
           "settings": {"threads": 1, "repeats": 1}, "skipped": {}, "baselines": {}, "models": [], "sizes": [],
           "cold_start": cold, "install": inst}
    md = bench.bench_md(res)
    assert "fresh process" in md and "install size" in md


def test_bench_times_widths_in_turn(monkeypatch):
    """Every width gets exactly ``repeats`` timed runs after a warm-up, and each round starts one
    width further along, so no width is always first (or last) in a round."""
    import slimfast
    from slimfast.tools import bench

    calls = []

    class FakeCodec:
        def compress(self, img, width=None):
            calls.append(width)
            return bytes([width])

    monkeypatch.setattr(slimfast, "decompress", lambda data: None)
    widths = [48, 96, 192]
    res = bench._interleaved_times(FakeCodec(), _image(), widths, 4)
    assert calls[:3] == widths  # warm-up
    rounds = [calls[3 + 3 * i: 6 + 3 * i] for i in range(4)]
    assert [r[0] for r in rounds] == [48, 96, 192, 48] and all(sorted(r) == widths for r in rounds)
    assert set(res) == {"48", "96", "192"}
    for v in res.values():
        assert len(v["enc_runs_ms"]) == len(v["dec_runs_ms"]) == 4 and v["enc_ms"] >= 0
