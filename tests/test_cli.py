"""The command line: outputs, and every user mistake as one line + non-zero exit."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimfast.cli import main


def run_cli(*args, stdin: bytes | None = None, env_extra=None):
    env = dict(os.environ)
    env.update(env_extra or {})
    p = subprocess.run([sys.executable, "-m", "slimfast", *map(str, args)], input=stdin,
                       capture_output=True, env=env, timeout=300)
    return p.returncode, p.stdout, p.stderr.decode()


def assert_clean_error(rc, err, needle):
    assert rc != 0
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert needle in lines[0], err


@pytest.fixture
def png(tmp_path, small_rgb) -> Path:
    p = tmp_path / "in.png"
    Image.fromarray(small_rgb).save(p)
    return p


def test_compress_decompress_info(model_dir, png, tmp_path, capsys):
    sfi = tmp_path / "x.sfi"
    assert main(["compress", str(png), str(sfi), "-m", "test-h", "--threads", "1"]) == 0
    assert main(["info", str(sfi), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["model"] == "test-h" and info["bytes"] == sfi.stat().st_size
    assert info["bpp"] == pytest.approx(sfi.stat().st_size * 8 / (56 * 40), abs=1e-5)
    assert info["format"] == 2 and info["chunks"] == ["LAYT"] and info["coder"] == "rans"  # the layout chunk
    from slimfast.format import container

    hdr = container.unpack(sfi.read_bytes())
    hdr.chunks = [("exif", b"Exif\0\0")]  # a skippable chunk makes it version 2
    (tmp_path / "v2.sfi").write_bytes(container.pack(hdr))
    assert main(["info", str(tmp_path / "v2.sfi"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == 2 and info["chunks"] == ["exif"]
    for ext in ("png", "webp", "jpg", "tiff", "bmp"):
        out = tmp_path / f"y.{ext}"
        assert main(["decompress", str(sfi), str(out)]) == 0
        assert Image.open(out).size == (56, 40)


def test_several_inputs_into_a_folder(model_dir, png, tmp_path):
    second = tmp_path / "second.jpg"
    Image.open(png).save(second)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["compress", str(png), str(second), str(out), "-m", "test-l", "--quiet"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["in.sfi", "second.sfi"]


@pytest.mark.slow  # starts subprocesses or trains
def test_stdin_to_stdout(model_dir, png):
    rc, out, err = run_cli("compress", "-", "-", "-m", "test-l", stdin=png.read_bytes())
    assert rc == 0 and out[:4] == b"\x89SFI"
    rc, out2, err = run_cli("decompress", "-", "-", stdin=out)
    assert rc == 0 and out2[:4] == b"\x89PNG"


@pytest.mark.slow  # starts subprocesses or trains
def test_existing_output_needs_force_and_is_kept(model_dir, png, tmp_path):
    sfi = tmp_path / "x.sfi"
    sfi.write_bytes(b"precious")
    rc, _, err = run_cli("compress", png, sfi, "-m", "test-l")
    assert_clean_error(rc, err, "exists")
    assert sfi.read_bytes() == b"precious"
    rc, _, err = run_cli("compress", png, sfi, "-m", "test-l", "--force")
    assert rc == 0 and sfi.read_bytes()[:4] == b"\x89SFI"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("case", ["missing", "not_image", "empty", "directory", "no_outdir", "same_file",
                                  "width_not_slim", "unknown_model", "bad_quality"])
@pytest.mark.slow  # starts subprocesses or trains
def test_compress_errors(model_dir, png, tmp_path, case):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"this is not an image at all")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    before = png.read_bytes()
    args, needle = {
        "missing": ([tmp_path / "nope.png", tmp_path / "o.sfi"], "no such file"),
        "not_image": ([junk, tmp_path / "o.sfi"], "not an image"),
        "empty": ([empty, tmp_path / "o.sfi"], "empty"),
        "directory": ([tmp_path, tmp_path / "o.sfi"], "directory"),
        "no_outdir": ([png, tmp_path / "nodir" / "o.sfi"], "does not exist"),
        "same_file": ([png, png, "--force"], "input"),
        "width_not_slim": ([png, tmp_path / "o.sfi", "-m", "test-l", "--width", "96"], "slimmable"),
        "unknown_model": ([png, tmp_path / "o.sfi", "-m", "nonesuch"], "unknown model"),
        "bad_quality": ([png, tmp_path / "o.sfi", "-m", "test-l", "-q", "150"], "0 to 100"),
    }[case]
    rc, _, err = run_cli("compress", *args)
    assert_clean_error(rc, err, needle)
    assert png.read_bytes() == before
    assert not (tmp_path / "o.sfi").exists()


@pytest.mark.slow  # starts subprocesses or trains
def test_zero_pixel_image_is_rejected(model_dir, tmp_path):
    # A PNG cannot hold 0 pixels; a valid-looking TIFF header claiming 0x0 must still fail cleanly.
    p = tmp_path / "zero.ppm"
    p.write_bytes(b"P6\n0 0\n255\n")
    rc, _, err = run_cli("compress", p, tmp_path / "o.sfi", "-m", "test-l")
    assert rc != 0 and "Traceback" not in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("case", ["truncated", "crc", "magic", "version", "unknown_model", "huge", "bad_ext"])
def test_decompress_errors(model_dir, png, tmp_path, case):
    import struct
    import zlib

    sfi = tmp_path / "x.sfi"
    assert main(["compress", str(png), str(sfi), "-m", "test-l", "--quiet"]) == 0
    data = sfi.read_bytes()
    fix = lambda d: d[:-4] + struct.pack("<I", zlib.crc32(d[:-4]) & 0xFFFFFFFF)  # noqa: E731
    from slimfast.format import container

    hdr = container.unpack(data)
    hdr.model = "gone-model"
    out = tmp_path / "y.png"
    bad, needle = {
        "truncated": (data[:-10], "truncated"),
        "crc": (data[:-5] + bytes([data[-5] ^ 1]) + data[-4:], "CRC"),
        "magic": (b"GIF8" + data[4:], "magic"),
        "version": (fix(data[:4] + b"\x09" + data[5:]), "version"),
        "unknown_model": (container.pack(hdr), "gone-model"),
        "huge": (fix(data[:24] + struct.pack("<II", 100000, 5) + data[32:]), "limit"),
        "bad_ext": (data, "format"),
    }[case]
    sfi.write_bytes(bad)
    if case == "bad_ext":
        out = tmp_path / "y.unknownext"
    rc, _, err = run_cli("decompress", sfi, out)
    assert_clean_error(rc, err, needle)
    assert not out.exists()


@pytest.mark.slow  # starts subprocesses or trains
def test_alpha_to_jpeg_is_refused_not_dropped(model_dir, tmp_path, small_rgb):
    p = tmp_path / "a.png"
    Image.fromarray(np.dstack([small_rgb, small_rgb[:, :, 0]]), "RGBA").save(p)
    sfi = tmp_path / "a.sfi"
    assert main(["compress", str(p), str(sfi), "-m", "test-l", "--quiet"]) == 0
    rc, _, err = run_cli("decompress", sfi, tmp_path / "a.jpg")
    assert_clean_error(rc, err, "alpha")


def test_models_json_schema(model_dir, capsys):
    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    names = {m["name"] for m in models}
    assert {"test-l", "test-h"} <= names
    for m in models:
        for key in ("name", "family", "architecture", "version", "default", "widths", "params",
                    "train_steps", "points", "installed_versions", "int8_synthesis", "bf16"):
            assert key in m
        assert m["version"] in m["installed_versions"]
    assert sum(m["default"] for m in models) >= 1
    by_name = {m["name"]: m for m in models}
    assert by_name["test-l"]["int8_synthesis"] is None  # not calibrated
    assert by_name["test-l"]["bf16"] is None  # not measured: precision auto keeps fp32
    bundled = [m for m in models if m["name"] == "fasinet-h-mse-q4"]
    assert bundled and bundled[0]["bf16"] == {"synthesis": True, "analysis": True}


def test_models_says_what_precision_runs_here(model_dir, capsys, monkeypatch):
    from slimfast.engines import openvino

    assert main(["models"]) == 0
    assert "precision: analysis fp32, synthesis fp32 (SLIMFAST_ANALYSIS" in capsys.readouterr().out  # the suite pins it
    monkeypatch.setenv("SLIMFAST_ANALYSIS", "auto")
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "auto")
    monkeypatch.setattr(openvino, "unavailable_reason", lambda: "needs OpenVINO: pip install 'slimfast[openvino]'")
    assert main(["models"]) == 0
    assert "precision (auto): fp32 here; bf16 needs OpenVINO" in capsys.readouterr().out
    monkeypatch.setattr(openvino, "unavailable_reason", lambda: "")
    assert main(["models"]) == 0
    assert "precision (auto): bf16 on OpenVINO for " in capsys.readouterr().out


@pytest.mark.slow  # starts subprocesses or trains
def test_version_and_help():
    rc, out, _ = run_cli("--version")
    assert rc == 0 and out.decode().startswith("slimfast ")
    rc, out, _ = run_cli("compress", "--help")
    text = out.decode()
    assert rc == 0 and "--quality" in text and "--width" in text and "--force" in text
    rc, _, err = run_cli("compress")
    assert rc == 2 and "Traceback" not in err


# -- without PyTorch (an extra since the ONNX Runtime backend runs the codec) ----------------------
NO_TORCH = """
import importlib.abc, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Block())
from slimfast.cli import main
code = main(sys.argv[1:])
assert "torch" not in sys.modules
sys.exit(code)
"""


def _run_without_torch(*args, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "SLIMFAST_BACKEND"}
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-c", NO_TORCH, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300, cwd=Path(__file__).resolve().parents[1])


@pytest.mark.slow  # starts subprocesses or trains
def test_codec_runs_without_torch_and_torch_commands_fail_cleanly(tmp_path):
    pytest.importorskip("onnxruntime")
    from slimfast import runtime, zoo

    if not runtime.supports(zoo.get().architecture):
        pytest.skip("the default model needs the torch backend")
    src = Path(__file__).resolve().parents[1] / "slimfast" / "data" / "kodim23.png"
    r = _run_without_torch("compress", src, tmp_path / "a.sfi")
    assert r.returncode == 0, r.stderr
    r = _run_without_torch("decompress", tmp_path / "a.sfi", tmp_path / "a.png")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.png").stat().st_size > 0
    for args, env in ((("train", "--out", tmp_path / "run"), None),
                      (("schedule", "--out", tmp_path / "run"), None),
                      (("decompress", tmp_path / "a.sfi", tmp_path / "b.png"), {"SLIMFAST_BACKEND": "torch"})):
        r = _run_without_torch(*args, env_extra=env)
        assert r.returncode == 1, (args, r.stderr)
        assert r.stderr.count("\n") == 1 and "needs PyTorch" in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "b.png").exists()


@pytest.mark.slow  # starts subprocesses or trains
def test_demo_runs_the_main_job_and_reports_the_real_file(tmp_path):
    from slimfast import zoo

    out_file = tmp_path / "k.sfi"
    rc, out, err = run_cli("demo", "-o", out_file)
    assert rc == 0, err
    fields = dict(line.split(None, 1) for line in out.decode().splitlines() if line.strip())
    info = zoo.get()
    assert fields["model"].startswith(info.name)
    if info.widths:
        assert f"width {info.default_width}" in fields["model"]
    assert abs(float(fields["bpp"]) - out_file.stat().st_size * 8 / (768 * 512)) < 1e-3  # bpp is the file's
    assert float(fields["PSNR"].split()[0]) > 25
    rc, _, err = run_cli("demo", "-o", out_file)                  # never overwrites without --force
    assert_clean_error(rc, err, "exists")


def test_bench_size_sweep_argument():
    import argparse

    from slimfast.tools import bench

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    assert p.parse_args([]).sizes == [0.4, 2, 8, 24]
    assert p.parse_args(["--sizes", "none"]).sizes == [None] and p.parse_args(["--sizes"]).sizes == []
    assert p.parse_args(["--sizes", "0.5", "3"]).sizes == [0.5, 3.0]
    for bad in ("-1", "0", "big"):
        with pytest.raises(SystemExit):
            p.parse_args(["--sizes", bad])


def test_bench_tried_settings_run_and_render(monkeypatch):
    """Each setting of bench.TRIED is a real change: its worker runs and codes the same file."""
    from slimfast.tools import bench
    from slimfast import zoo

    info = zoo.get()  # the default model
    image = bench.resolve_image(None)
    jobs = {label: {"model": info.name, "width": info.default_width, "image": str(image), "mp": None,
                    "repeats": 1, "threads": 1, "synthesis": "fp32", "env": env, **fields}
            for label, env, fields in bench.TRIED if not fields.get("synthesis")}
    fp32 = next(label for label, _, _ in bench.TRIED if label.startswith("fp32 transforms"))
    shipped = bench.run_worker(jobs[fp32], 300)  # the rows below it change one setting of this one
    other = bench.run_worker(jobs["stride-4 transposed convolutions as ConvTranspose"], 300)
    torch_ = bench.run_worker(jobs["PyTorch eager (the reference path)"], 300)
    for r in (shipped, other, torch_):
        assert r.get("error") is None, r
    assert shipped["backend"] == other["backend"] == "ort" and torch_["backend"] == "torch"
    assert other["bytes"] == shipped["bytes"] and abs(other["psnr"] - shipped["psnr"]) < 0.01
    rows = [dict(shipped, variant=fp32, baselines={}),
            dict(torch_, variant="PyTorch eager (the reference path)", baselines={}),
            {"variant": "broken", "error": "boom"}]
    md = "\n".join(bench._tried_md({"tried": {"model": info.name, "width": None, "rows": rows},
                                    "settings": {"repeats": 1}, "environment": {"cpu_flags": ["avx2"]}}))
    assert "## What was tried" in md and "| broken | failed: boom" in md
    assert f"{torch_['dec_ms'] / shipped['dec_ms']:.2f}" in md and "neither AVX-512 BF16 nor AMX" in md


def test_runtime_settings_from_the_environment(monkeypatch):
    import slimfast
    from slimfast import runtime, zoo
    from slimfast.errors import SlimfastError

    info = next(i for i in zoo.list_models() if i.architecture == "fasinet-h")
    path = info.path
    monkeypatch.setenv("SLIMFAST_ORT_TCONV", "convtranspose")
    monkeypatch.setenv("SLIMFAST_ORT_OPT", "extended")
    m = slimfast.load(info.name, engine="ort").model  # the API reads the environment, the runtime its arguments
    assert m.tconv_for() == "convtranspose" and m.optimization == "extended" and not m.spinning
    assert runtime.load_model(path, tconv="subpixel").tconv_for() == "subpixel"  # an argument wins
    monkeypatch.setenv("SLIMFAST_ORT_TCONV", "fast")
    with pytest.raises(SlimfastError, match="SLIMFAST_ORT_TCONV"):
        slimfast.load(info.name)
    with pytest.raises(ValueError):
        runtime.load_model(path, tconv="fast")
