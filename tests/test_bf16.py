"""bf16 synthesis on OpenVINO (slimfast.engines.openvino, `slimfast decompress --bf16`).

The symbols are decoded before the synthesis, so a file's symbols never depend on its precision;
the pixels of a bf16 decode differ from fp32's by bf16 rounding only: on the shipped default model
and the bundled photo, at most BF16_MAX_COST_DB of PSNR and BF16_MAX_LEVELS of any 8-bit pixel.
A bf16 decode repeats exactly in one process (same machine, threads and precision).
"""
from __future__ import annotations

import numpy as np
import pytest

from slimfast.errors import SlimfastError
from slimfast.engines import openvino as ov_backend

from .conftest import SAMPLE
from .test_cli import assert_clean_error, run_cli

# Measured on the bundled photo (kodim23) at every shipped operating point: -0.005 to -0.075 dB,
# at most 2 to 3 levels (evaluate.bf16_cost; RESULTS.md "bf16" has Kodak's).
BF16_MAX_COST_DB = 0.15
BF16_MAX_LEVELS = 4  # of 255

needs_openvino = pytest.mark.skipif(not ov_backend.available(), reason="OpenVINO is not installed")
needs_native_bf16 = pytest.mark.skipif(not (ov_backend.available() and ov_backend.native_bf16()),
                                       reason="no OpenVINO, or no native bf16 in this CPU")


def _sample() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(SAMPLE).convert("RGB"))[:256, :384].copy()


@needs_openvino
def test_openvino_session_runs_the_onnx_runtime_graph(monkeypatch):
    """The same decoder graph on OpenVINO in f32 computes what ONNX Runtime computes, at any size."""
    import slimfast.settings
    from slimfast import runtime, zoo

    m = runtime.load_model(zoo.get().path, threads=1)
    c = m.default_width
    sess = ov_backend.OpenVINOSession(m.onnx_model("decoder", c).SerializeToString(), ["x_hat"], threads=1,
                                      precision_hint="f32")
    rng = np.random.default_rng(0)
    for shape in ((1, c, 4, 6), (1, c, 3, 5)):  # one compiled graph, dynamic spatial sizes
        y = np.round(rng.normal(0, 2, size=shape)).astype(np.float32)
        want = m.session("decoder", c).run(None, {"y_hat": y})[0]
        got = sess.run(None, {"y_hat": y})[0]
        assert got.shape == want.shape == (1, 3, shape[2] * 16, shape[3] * 16)
        assert np.abs(got - want).max() < 1e-3
    with pytest.raises(ValueError, match="precision"):
        ov_backend.OpenVINOSession(b"", ["x_hat"], precision_hint="fp8")
    monkeypatch.setenv("SLIMFAST_OV_PRECISION", "int4")
    with pytest.raises(SlimfastError, match="SLIMFAST_OV_PRECISION"):
        slimfast.settings.Settings.from_env()


@needs_native_bf16
def test_bf16_decode_keeps_the_symbols_and_costs_little(monkeypatch):
    import slimfast
    from slimfast import codec, metrics, zoo

    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    monkeypatch.setenv("SLIMFAST_BACKEND", "ort")
    img = _sample()
    data = slimfast.load(zoo.get().name).compress(img)
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "fp32")
    fp32 = np.asarray(codec.decompress(data).convert("RGB")).astype(int)
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "bf16")
    model = codec._model_for(zoo.get(), codec.Settings.from_env(), for_decoding=True)
    assert model.synthesis_precision == "bf16"
    bf16 = np.asarray(codec.decompress(data).convert("RGB")).astype(int)
    assert np.array_equal(bf16, np.asarray(codec.decompress(data).convert("RGB")))  # repeatable
    assert 0 < np.abs(bf16 - fp32).max() <= BF16_MAX_LEVELS  # really bf16, and close
    assert metrics.psnr(img, fp32.astype(np.uint8)) - metrics.psnr(img, bf16.astype(np.uint8)) < BF16_MAX_COST_DB
    # the entropy decoder sees the same symbols whichever precision synthesizes
    from slimfast.format import container

    hdr = container.unpack(data)
    m = model.pad_multiple
    shape = (-(-hdr.image_size[1] // m), -(-hdr.image_size[0] // m))
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "fp32")
    plain = codec._model_for(zoo.get(), codec.Settings.from_env(), for_decoding=True)
    assert plain is not model and plain.synthesis_precision == "fp32"
    sa, sb = model.decode_symbols(hdr.streams, shape, hdr.width), plain.decode_symbols(hdr.streams, shape, hdr.width)
    assert sa.keys() == sb.keys() and all(np.array_equal(sa[k], sb[k]) for k in sa)


@needs_native_bf16
def test_bf16_cost_measures_both_sides():
    from slimfast.tools import evaluate
    from slimfast import zoo

    (r,) = evaluate.bf16_cost([zoo.get()], [("sample", _sample())])
    assert r["model"] == zoo.get().name and r["images"] == 1
    assert abs(r["psnr_bf16_synthesis"] - r["psnr_fp32"]) < BF16_MAX_COST_DB
    assert 0 < r["max_abs_diff"] <= BF16_MAX_LEVELS
    # the bf16 analysis writes a file of about the same size and quality
    assert abs(r["bpp_bf16"] / r["bpp_fp32"] - 1) < 0.02 and abs(r["psnr_bf16"] - r["psnr_fp32"]) < BF16_MAX_COST_DB


@needs_native_bf16
def test_bf16_analysis_files_decode_anywhere(monkeypatch):
    """A file from the bf16 analysis holds ordinary symbols: the fp32 ONNX Runtime path and the
    torch reference decode it to the same symbols and nearly the same pixels."""
    import slimfast
    from slimfast import codec, zoo

    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    monkeypatch.setenv("SLIMFAST_ANALYSIS", "bf16")
    img = _sample()
    data = slimfast.load(zoo.get().name).compress(img)
    monkeypatch.setenv("SLIMFAST_ANALYSIS", "fp32")
    assert data != slimfast.load(zoo.get().name).compress(img)  # really the bf16 analysis
    decoded = {}
    for b in ("ort", "torch"):
        monkeypatch.setenv("SLIMFAST_BACKEND", b)
        decoded[b] = np.asarray(codec.decompress(data).convert("RGB")).astype(int)
    assert np.abs(decoded["ort"] - decoded["torch"]).max() <= 2


@pytest.mark.slow  # starts subprocesses or trains
def test_bf16_errors_are_one_line(tmp_path, monkeypatch, capsys):
    """Missing OpenVINO, a CPU without bf16, the torch backend, and --int8 with --bf16."""
    import slimfast
    from slimfast import codec, zoo

    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    data = slimfast.load(zoo.get().name).compress(_sample()[:64, :64])
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "bf16")
    monkeypatch.setattr(ov_backend, "available", lambda: False)
    with pytest.raises(SlimfastError, match=r"needs OpenVINO: pip install 'slimfast\[openvino\]'"):
        codec.decompress(data)
    monkeypatch.setenv("SLIMFAST_ANALYSIS", "bf16")
    with pytest.raises(SlimfastError, match=r"bf16 analysis needs OpenVINO"):
        slimfast.load(zoo.get().name).compress(_sample()[:64, :64])
    monkeypatch.setenv("SLIMFAST_ANALYSIS", "bf8")
    with pytest.raises(SlimfastError, match="SLIMFAST_ANALYSIS must be"):
        slimfast.load(zoo.get().name).compress(_sample()[:64, :64])
    monkeypatch.setenv("SLIMFAST_ANALYSIS", "fp32")
    monkeypatch.setattr(ov_backend, "available", lambda: True)
    monkeypatch.setattr(ov_backend, "native_bf16", lambda: False)
    with pytest.raises(SlimfastError, match="computes bf16 natively"):
        codec.decompress(data)
    monkeypatch.setenv("SLIMFAST_BACKEND", "torch")
    with pytest.raises(SlimfastError, match="ONNX Runtime backend"):
        codec.decompress(data)

    sfi = tmp_path / "a.sfi"
    sfi.write_bytes(data)
    rc, _, err = run_cli("decompress", sfi, tmp_path / "a.png", "--int8", "--bf16")
    assert rc == 2 and "not allowed with" in err and not (tmp_path / "a.png").exists()
    # the CLI, in this process so that OpenVINO can be made to look absent
    from slimfast.cli import main

    monkeypatch.delenv("SLIMFAST_BACKEND", raising=False)
    monkeypatch.delenv("SLIMFAST_SYNTHESIS", raising=False)
    monkeypatch.setattr(ov_backend, "available", lambda: False)
    capsys.readouterr()
    rc = main(["decompress", str(sfi), str(tmp_path / "a.png"), "--bf16"])
    assert_clean_error(rc, capsys.readouterr().err, "needs OpenVINO")
    assert not (tmp_path / "a.png").exists()


def test_bench_times_tried_settings_in_rounds(monkeypatch):
    """Each TRIED setting runs once per round, interleaved; its times are medians over rounds."""
    import argparse

    from slimfast.tools import bench
    from slimfast import zoo

    calls = []

    def fake_worker(job, timeout):
        calls.append(job)
        k = len(calls)
        return {"model": job["model"], "width": job["width"], "enc_ms": float(k), "dec_ms": float(100 - k),
                "bpp": 0.3, "psnr": 30.0, "error": None}

    monkeypatch.setattr(bench, "run_worker", fake_worker)
    monkeypatch.setattr(bench, "bf16_available", lambda: False)

    class NoBaselines:
        codecs = {}

    args = argparse.Namespace(repeats=1, threads=1, timeout=10, tried_rounds=3)
    res = bench.tried(zoo.get(), bench.resolve_image(None), NoBaselines(), args, lambda s: None)
    labels = [r["variant"] for r in res["rows"]]
    assert not any("OpenVINO" in label for label in labels) and labels[0].startswith("fp32 transforms")
    n = len(labels)
    assert len(calls) == 3 * n and res["rounds"] == 3
    first = res["rows"][0]  # calls 1, 1 + n, 1 + 2n
    assert first["round_enc_ms"] == [1.0, 1.0 + n, 1.0 + 2 * n] and first["enc_ms"] == 1.0 + n
    assert first["dec_ms"] == 99.0 - n
    md = "\n".join(bench._tried_md({"tried": res, "settings": {"repeats": 1},
                                    "environment": {"cpu_flags": ["avx512_bf16"]}}))
    assert "for 3 rounds" in md and "bf16 and OpenVINO (OpenVINO is not installed here" in md
    assert f"| {99.0 - 2 * n:.1f}-{99.0:.1f} |" in md  # the first setting's decode range over the rounds


# -- precision "auto" (the default): bf16 where the card, the CPU and OpenVINO allow, else fp32 ----------
def _with_card(info, **flags):
    import dataclasses

    return dataclasses.replace(info, card={**info.card, "bf16": flags} if flags else
                               {k: v for k, v in info.card.items() if k != "bf16"})


def test_auto_precision_follows_the_card_the_cpu_and_the_engine(monkeypatch):
    from slimfast import zoo
    from slimfast.codec import resolved_precision
    from slimfast.settings import Settings

    auto = Settings(engine="ort")
    assert (auto.analysis, auto.synthesis) == ("auto", "auto")  # the default
    both = lambda info, s=auto: tuple(resolved_precision(info, s, p) for p in ("analysis", "synthesis"))  # noqa: E731
    monkeypatch.setattr(ov_backend, "unavailable_reason", lambda: "")
    assert both(_with_card(zoo.get())) == ("fp32", "fp32")  # never measured on held-out images: fp32
    half = _with_card(zoo.get(), synthesis=True, analysis=False)
    assert both(half) == ("fp32", "bf16")
    assert both(_with_card(zoo.get(), synthesis=True, analysis=True)) == ("bf16", "bf16")
    assert both(half, Settings(engine="torch")) == ("fp32", "fp32")  # bf16 runs on the ORT graphs only
    assert both(half, Settings(engine="ort", analysis="bf16", synthesis="int8")) == ("bf16", "int8")  # as set
    monkeypatch.setattr(ov_backend, "unavailable_reason", lambda: "needs a CPU that computes bf16 natively")
    assert both(half) == ("fp32", "fp32")  # the fallback where the CPU (or OpenVINO) lacks it


def test_one_shot_commands_take_fp32_below_the_pixels_that_pay_for_openvino(tmp_path):
    from PIL import Image

    from slimfast import jobs
    from slimfast.cli.common import one_shot, one_shot_settings
    from slimfast.settings import AUTO_BF16_MIN_PIXELS, Settings

    s = Settings()
    small = one_shot_settings(s, AUTO_BF16_MIN_PIXELS - 1)
    assert (small.analysis, small.synthesis) == ("fp32", "fp32")
    assert one_shot_settings(s, AUTO_BF16_MIN_PIXELS) == s
    pinned = Settings(analysis="bf16", synthesis="int8")
    assert one_shot_settings(pinned, 1) == pinned  # an explicit precision is kept
    Image.new("RGB", (40, 30)).save(tmp_path / "a.png")
    (tmp_path / "out").mkdir()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    planned = jobs.plan([str(tmp_path / "a.png"), str(tmp_path / "bad.png")], str(tmp_path / "out") + "/",
                        jobs.Options("compress"))
    assert jobs.declared_pixels(planned, "compress") == 1200  # unreadable inputs count 0 (their jobs say why)
    assert jobs.declared_pixels([jobs.Job("-", "-")], "compress") == 0  # and stdin
    opts = one_shot(jobs.Options("compress", settings=s), planned)
    assert (opts.settings.analysis, opts.settings.synthesis) == ("fp32", "fp32")
    import slimfast

    (tmp_path / "a.sfi").write_bytes(slimfast.compress(np.zeros((30, 40, 3), np.uint8)))
    assert jobs.declared_pixels(jobs.plan([str(tmp_path / "a.sfi")], None, jobs.Options("decompress")),
                                "decompress") == 1200


@needs_native_bf16
def test_auto_is_bf16_where_the_card_allows_and_repeats_exactly(monkeypatch):
    """The shipped default model's card allows bf16 (release --measure-bf16), so on this CPU the
    default codes in bf16: files and pixels repeat exactly for one machine, precision and thread count."""
    import slimfast
    from slimfast import codec, zoo

    monkeypatch.delenv("SLIMFAST_ANALYSIS")
    monkeypatch.delenv("SLIMFAST_SYNTHESIS")
    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    info = zoo.get()
    flags = info.card["bf16"]
    assert flags["synthesis"] and flags["heldout_images"] >= 30
    c = slimfast.load(info.name, threads=2)
    assert c.precision == {"analysis": "bf16" if flags["analysis"] else "fp32", "synthesis": "bf16"}
    img = _sample()
    data = c.compress(img)
    codec._load_weights.cache_clear()  # a freshly compiled graph writes the same file
    assert data == slimfast.load(info.name, threads=2).compress(img)
    s = codec.Settings.from_env().replace(threads=2)
    a = np.asarray(codec.decompress(data, settings=s))
    assert np.array_equal(a, np.asarray(codec.decompress(data, settings=s)))
    fp32 = np.asarray(codec.decompress(data, settings=s.replace(synthesis="fp32"))).astype(int)
    assert 0 < np.abs(a.astype(int) - fp32).max() <= BF16_MAX_LEVELS  # really bf16


@needs_native_bf16  # elsewhere OpenVINO would not start anyway
@pytest.mark.slow  # starts a subprocess
def test_a_small_one_shot_decompress_never_starts_openvino(tmp_path):
    import subprocess
    import sys

    import slimfast

    (tmp_path / "a.sfi").write_bytes(slimfast.compress(_sample()))
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("SLIMFAST_ANALYSIS", "SLIMFAST_SYNTHESIS")}
    code = ("import sys; from slimfast.cli import main; rc = main(['decompress', sys.argv[1], '-o', sys.argv[2]]); "
            "print(rc, 'openvino' in sys.modules)")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "a.sfi"), str(tmp_path / "a.png")],
                       capture_output=True, text=True, env=env, timeout=120)
    assert p.stdout.split() == ["0", "False"], p.stderr


@needs_native_bf16
def test_auto_falls_back_to_fp32_where_the_bf16_graph_cannot_be_built(monkeypatch):
    """An explicit bf16 that cannot run is a one-line error; the default quietly takes fp32."""
    import slimfast
    from slimfast import codec, zoo
    from slimfast.coding.path import CodingPath

    real = CodingPath.prepare_synthesis

    def broken(self, width=None):
        if getattr(self, "synthesis_precision", "fp32") == "bf16":
            raise RuntimeError("no plugin")
        return real(self, width)

    monkeypatch.setattr(CodingPath, "prepare_synthesis", broken)
    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    data = slimfast.compress(_sample(), precision="fp32")
    s = codec.Settings.from_env()
    want = np.asarray(codec.decompress(data, settings=s.replace(synthesis="fp32")))
    assert np.array_equal(np.asarray(codec.decompress(data, settings=s.replace(synthesis="auto"))), want)
    with pytest.raises(SlimfastError, match="bf16 synthesis unavailable .*no plugin"):
        codec.decompress(data, settings=s.replace(synthesis="bf16"))
    assert zoo.get().card["bf16"]["synthesis"]  # so auto did ask for bf16 first
