"""Behaving like the image tools people already use (cwebp, avifenc, Pillow): quality 0..100,
size limits that hold, no silent overwrites in a batch, errors that name the user's file."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import slimfast
from slimfast.format import container
from slimfast.cli import main
from slimfast.codec import quality_index

ROOT = Path(__file__).resolve().parents[1]


def one_error_line(capsys, needle: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err, err
    return lines[0]


def exit_status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


@pytest.fixture(scope="module")
def tiny(sample_rgb) -> np.ndarray:
    return np.ascontiguousarray(sample_rgb[200:296, 300:428])  # 128x96 of the bundled photo


@pytest.fixture
def png(tmp_path, small_rgb) -> Path:
    p = tmp_path / "in.png"
    Image.fromarray(small_rgb).save(p)
    return p


# 1 -------------------------------------------------------------------------------------------
def test_size_limits_are_never_exceeded(tiny, tmp_path, capsys):
    codec = slimfast.load("slim-fasinet-l-mse")  # five widths: five operating points
    sizes = [len(codec.compress(tiny, quality=q)) for q in (0, 20, 40, 60, 80)]
    step = max(1, (max(sizes) - min(sizes)) // 12)
    for n in sorted({*range(min(sizes), max(sizes) + step, step), *sizes, *(s - 1 for s in sizes)}):
        fitting = [s for s in sizes if s <= n]
        if not fitting:
            with pytest.raises(slimfast.SlimfastError, match=f"fits {n} bytes: the smallest is {min(sizes)} bytes"):
                codec.compress(tiny, max_bytes=n)
            continue
        assert len(codec.compress(tiny, max_bytes=n)) == max(fitting)
        bpp = n * 8 / tiny.shape[0] / tiny.shape[1]
        assert len(codec.compress(tiny, target_bpp=bpp)) <= n

    src = tmp_path / "t.png"
    Image.fromarray(tiny).save(src)
    out = tmp_path / "o.sfi"
    assert main(["compress", str(src), str(out), "-m", "slim-fasinet-l-mse", "--max-bytes", str(min(sizes) - 1)]) == 1
    one_error_line(capsys, "no operating point of slim-fasinet-l-mse fits")
    assert not out.exists()
    for bad in ("nan", "inf", "0", "-1"):
        assert main(["compress", str(src), str(out), "--target-bpp", bad]) == 1
        one_error_line(capsys, "--target-bpp must be a finite number")
    assert main(["compress", str(src), str(out), "-q", "50", "--max-bytes", "9000"]) == 1
    one_error_line(capsys, "cannot be combined")
    assert not out.exists()


# 3 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["folders", "extensions"])
def test_same_stem_into_one_folder_is_refused(model_dir, small_rgb, tmp_path, capsys, layout):
    names = ["a/photo.png", "b/photo.png"] if layout == "folders" else ["photo.png", "photo.jpg"]
    inputs = [tmp_path / n for n in names]
    for p in inputs:
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(small_rgb).save(p)
    out = tmp_path / "out"
    out.mkdir()
    assert main(["compress", *map(str, inputs), str(out), "-m", "test-l", "--force", "--quiet"]) == 1
    line = one_error_line(capsys, "would both be written")
    assert str(inputs[0]) in line and str(inputs[1]) in line
    assert list(out.iterdir()) == []


# 4 -------------------------------------------------------------------------------------------
def test_readme_installs_the_cpu_wheel_of_torch():
    text = (ROOT / "README.md").read_text()
    assert "pip install torch==2.13.0 && pip install -e '.[test]' && python -m pytest -q" in text
    assert "pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu" in text
    assert "CUDA" in text


# 5 -------------------------------------------------------------------------------------------
def test_quality_is_0_to_100_higher_is_better(model_dir, tiny, small_rgb, tmp_path, capsys):
    assert [quality_index(q, 5) for q in (0, 19.99, 20, 50, 79.9, 80, 100)] == [0, 0, 1, 2, 3, 4, 4]
    assert [quality_index(q, 3) for q in (0, 33.3, 33.4, 66.6, 66.7, 100)] == [0, 0, 1, 1, 2, 2]
    assert quality_index(100, 1) == quality_index(0, 1) == 0
    slim = slimfast.load("slim-fasinet-l-mse")
    widths = [container.unpack(slim.compress(tiny, quality=q)).width for q in (0, 25.5, 50, 70, 100)]
    assert widths == [48, 72, 96, 144, 192]
    assert container.unpack(slim.compress(tiny)).width == slim.info.default_width
    for bad in (150, -1, math.nan, "high", True):
        with pytest.raises(slimfast.SlimfastError, match="0 to 100"):
            slim.compress(tiny, quality=bad)
    assert slimfast.load("fasinet-h-mse").name == "fasinet-h-mse-q4"  # a family: its default model
    Image.fromarray(small_rgb).save(tmp_path / "p.sfi", model="test-l", quality=75)  # the Pillow plugin
    assert Image.open(tmp_path / "p.sfi").size == (56, 40)
    Image.fromarray(small_rgb).save(tmp_path / "p.png")
    for bad in ("nan", "high", "101", "-5"):
        assert exit_status(["compress", str(tmp_path / "p.png"), str(tmp_path / "o.sfi"), "-q", bad]) != 0
        one_error_line(capsys, "0 to 100")
    assert not (tmp_path / "o.sfi").exists()
    with pytest.raises(SystemExit):
        main(["compress", "--help"])
    help_text = capsys.readouterr().out
    assert slimfast.load().name in help_text and "0 to 100" in help_text
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert "0 to 100" in changelog and "floor(q / 100 * n)" in changelog


# 10 ------------------------------------------------------------------------------------------
def test_python_api(model_dir, small_rgb, tmp_path):
    data = slimfast.compress(small_rgb, model="test-l", quality=60)
    assert isinstance(data, bytes)
    path = tmp_path / "x.sfi"
    path.write_bytes(data)
    expected = np.asarray(slimfast.decompress(data))
    with open(path, "rb") as f:
        sources = [path, str(path), io.BytesIO(data), f]
        for src in sources:
            assert np.array_equal(np.asarray(slimfast.decompress(src)), expected)
    for kwargs, needle in (({"model": "slim-fasinet-l-mse", "width": 7}, "choose one of"),
                           ({"model": "test-l", "quality": "high"}, "0 to 100"),
                           ({"model": "test-l", "max_bytes": "big"}, "max_bytes must be"),
                           ({"model": "test-l", "quality": 50, "max_bytes": 100}, "not both")):
        with pytest.raises(slimfast.SlimfastError, match=needle):
            slimfast.compress(small_rgb, **kwargs)
    with pytest.raises(slimfast.SlimfastError, match="path or a binary file object"):
        slimfast.decompress(12345)
    assert (ROOT / "slimfast" / "py.typed").exists()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text()
    assert slimfast.compress.__annotations__["return"] == "bytes"
    assert "family" in slimfast.load.__doc__ and "widths" in slimfast.list_models.__doc__


# 11 ------------------------------------------------------------------------------------------
def test_errors_name_the_users_file(png, tmp_path, capsys):
    cut = tmp_path / "cut.png"
    cut.write_bytes(png.read_bytes()[:200])
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image")
    for src in (cut, junk):
        assert main(["compress", str(src), str(tmp_path / "o.sfi")]) == 1
        line = one_error_line(capsys, str(src))
        assert "BytesIO" not in line and "0x" not in line


# 9 -------------------------------------------------------------------------------------------
import re  # noqa: E402
import sys  # noqa: E402


@pytest.fixture
def three_pngs(tmp_path, small_rgb) -> list[Path]:
    paths = []
    for name in ("a", "b", "c"):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(small_rgb).save(paths[-1])
    (tmp_path / "out").mkdir()
    return paths


def batch(paths, tmp_path, *flags) -> int:
    return main(["compress", *map(str, paths), str(tmp_path / "out"), "-m", "test-l", *flags])


@pytest.mark.parametrize("terminal", [False, True])
def test_batch_progress_bar_only_on_a_terminal(model_dir, three_pngs, tmp_path, capsys, monkeypatch, terminal):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    assert batch(three_pngs, tmp_path) == 0
    err = capsys.readouterr().err
    assert ("img/s" in err or "3/3" in err) == terminal, err
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip()]
    summary = [line for line in lines if line.startswith("3 files: ")]
    assert len(summary) == 1 and summary[0] == lines[-1], err
    if not terminal:
        assert lines == summary, err  # a pipe or a log gets the summary line only


def test_batch_summary_line(model_dir, three_pngs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert batch(three_pngs, tmp_path) == 0
    err = capsys.readouterr().err
    m = re.fullmatch(r"3 files: (\d+(?:\.\d)?) (B|kB|MB) -> (\d+(?:\.\d)?) (B|kB|MB), (\d+\.\d\d) bpp mean\n", err)
    assert m, err
    scale = {"B": 1, "kB": 1e3, "MB": 1e6}
    bytes_in = sum(p.stat().st_size for p in three_pngs)
    outs = sorted((tmp_path / "out").iterdir())
    bytes_out = sum(p.stat().st_size for p in outs)
    # one decimal of the unit shown: within half of its last digit
    assert float(m[1]) * scale[m[2]] == pytest.approx(bytes_in, abs=0.05 * scale[m[2]] + 1)
    assert float(m[3]) * scale[m[4]] == pytest.approx(bytes_out, abs=0.05 * scale[m[4]] + 1)
    h, w = 40, 56
    mean_bpp = sum(p.stat().st_size * 8 / (w * h) for p in outs) / len(outs)
    assert float(m[5]) == pytest.approx(mean_bpp, abs=0.006)


def test_batch_summary_counts_failures(model_dir, three_pngs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    (tmp_path / "out" / "b.sfi").write_bytes(b"precious")  # exists, no --force: b fails
    assert batch(three_pngs, tmp_path) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("slimfast: error: ") and "b.png" in lines[0]
    assert lines[1].startswith("2 of 3 files: ") and "bpp mean" in lines[1]
    for p in three_pngs:
        p.write_bytes(b"not an image")
    assert batch(three_pngs, tmp_path, "--force") == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 4 and lines[-1] == "0 of 3 files: nothing written", lines


def test_verbose_and_quiet(model_dir, three_pngs, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert batch(three_pngs, tmp_path, "-v") == 0
    lines = [line for line in capsys.readouterr().err.replace("\r", "\n").splitlines()
             if line.strip() and "img" not in line]  # the bar's refreshes
    per_file = [line for line in lines if " -> " in line and " ms" in line]
    assert [line.split(" -> ")[0] for line in per_file] == list(map(str, three_pngs)), lines
    assert all(re.search(r": \d+ bytes, \d+\.\d{4} bpp, 56x40, \d+ ms$", line) for line in per_file), lines
    assert lines[-1].startswith("3 files: ")
    assert batch(three_pngs, tmp_path, "--quiet", "--force") == 0
    assert capsys.readouterr().err == ""  # no bar, no summary, even on a terminal
    # a single file: its line by default and with -v, nothing with --quiet
    one = tmp_path / "one.sfi"
    for flags, expected in (([], 1), (["-v"], 1), (["--quiet"], 0)):
        assert main(["compress", str(three_pngs[0]), str(one), "-m", "test-l", "--force", *flags]) == 0
        err = capsys.readouterr().err
        assert len(err.splitlines()) == expected and (not expected or f"-> {one}: " in err), err
    assert exit_status(["compress", str(three_pngs[0]), str(one), "-v", "--quiet"]) == 2


def test_cli_transcript_matches_docs(tmp_path):
    """docs/cli.md is generated: the script still runs, and the doc holds the session it runs now."""
    import subprocess

    out = tmp_path / "cli.md"
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "cli_transcript.py"), "-o", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr

    def commands(text: str) -> list[str]:
        return [line for line in text.splitlines() if line.startswith(("$ slimfast", "## ", "Exit status"))]

    fresh, docs = out.read_text(), (ROOT / "docs" / "cli.md").read_text()
    assert commands(fresh) == commands(docs), "docs/cli.md is stale: run `make cli-doc`"
    assert len(commands(fresh)) >= 3 * 10 and "slimfast-cli-" not in fresh  # no temporary path
    assert not re.search(r"\b\d+ ms\b", fresh) and "Traceback" not in fresh


def test_outputs_honour_the_umask_like_cp(model_dir, tmp_path):  # item 2
    import os
    import stat

    import numpy as np
    from PIL import Image

    from slimfast.cli import main as cli_main

    png = tmp_path / "in.png"
    Image.fromarray(np.full((24, 32, 3), 90, np.uint8)).save(png)
    old = os.umask(0o022)
    try:
        out = tmp_path / "a.sfi"
        assert cli_main(["compress", str(png), str(out), "-m", "test-l", "--quiet"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644
        os.chmod(out, 0o644)
        assert cli_main(["compress", str(png), str(out), "-m", "test-l", "--quiet", "--force"]) == 0
        assert stat.S_IMODE(out.stat().st_mode) == 0o644  # --force does not narrow an existing file
        os.umask(0o077)
        private = tmp_path / "b.sfi"
        assert cli_main(["compress", str(png), str(private), "-m", "test-l", "--quiet"]) == 0
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    finally:
        os.umask(old)
