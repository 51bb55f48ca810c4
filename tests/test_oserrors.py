"""Hostile files and a hostile system: full disks, closed pipes, read-only folders, signals,
crafted headers and model cards. Each failure is one line on stderr and a non-zero exit status,
never a traceback, and never loses or half-writes a file."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, UnidentifiedImageError

import slimfast
from slimfast.format import container
from slimfast.cli import main

from .test_cli import assert_clean_error, run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def png(tmp_path, small_rgb) -> Path:
    p = tmp_path / "in.png"
    Image.fromarray(small_rgb).save(p)
    return p


@pytest.fixture
def sfi(model_dir, png, tmp_path) -> Path:
    p = tmp_path / "x.sfi"
    assert main(["compress", str(png), str(p), "-m", "test-l", "--quiet"]) == 0
    return p


def one_line(err: str) -> str:
    assert "Traceback" not in err and "Exception ignored" not in err, err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    return lines[0]


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp"))


def popen(*args, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "slimfast", *map(str, args)], cwd=ROOT, **kw)


# -- bug 3: every OS error is one line naming the file, and loses nothing --------------------------
@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("command", ["compress", "decompress", "info"])
def test_stdout_on_a_full_disk(sfi, png, command):
    args = {"compress": ("compress", png, "-", "-m", "test-l"), "decompress": ("decompress", sfi, "-"),
            "info": ("info", sfi)}[command]
    with open("/dev/full", "wb") as full:
        p = popen(*args, stdout=full, stderr=subprocess.PIPE)
        _, err = p.communicate(timeout=300)
    line = one_line(err.decode())
    assert p.returncode == 1 and "stdout" in line and "No space left" in line, line


@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_stdout_pipe_closed_by_the_reader(sfi, png, command):
    args = {"compress": ("compress", png, "-", "-m", "test-l"), "decompress": ("decompress", sfi, "-")}[command]
    p = popen(*args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader went away (| head -c 0) before anything was written
    err = p.stderr.read().decode()
    p.wait(timeout=300)
    line = one_line(err)
    assert p.returncode == 1 and "stdout" in line and "Broken pipe" in line, line


def _raise_for(name_part: str, code: int, real):
    """``real`` (os.fsync, os.link, ...), failing with ``code`` for paths containing ``name_part``."""
    def fake(*args, **kw):
        paths = [a for a in args if isinstance(a, (str, os.PathLike))]
        if isinstance(args[0], int) and os.path.exists(f"/proc/self/fd/{args[0]}"):
            paths.append(os.readlink(f"/proc/self/fd/{args[0]}"))
        if any(name_part in os.fspath(p) for p in paths):
            raise OSError(code, os.strerror(code))
        return real(*args, **kw)
    return fake


# Where a full disk, a read-only file system or a permission problem shows up while writing.
WRITE_FAULTS = {"fsync ENOSPC": ("fsync", errno.ENOSPC), "write ENOSPC": ("write", errno.ENOSPC),
                "rename EROFS": ("replace", errno.EROFS), "create EACCES": ("open", errno.EACCES),
                "rename EACCES": ("replace", errno.EACCES), "write EIO": ("write", errno.EIO)}


@pytest.mark.parametrize("fault", list(WRITE_FAULTS))
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_failed_write_is_one_line_and_keeps_the_old_file(sfi, png, tmp_path, monkeypatch, capsys, command, fault):
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc to tell which file a descriptor is")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / ("y.sfi" if command == "compress" else "y.png")
    out.write_bytes(b"precious")
    func, code = WRITE_FAULTS[fault]
    for f in (func, "link") if func == "replace" else (func,):
        monkeypatch.setattr(os, f, _raise_for(str(out_dir), code, getattr(os, f)))
    src = png if command == "compress" else sfi
    extra = ["-m", "test-l"] if command == "compress" else []
    rc = main([command, str(src), str(out), "--force", "--quiet", *extra])
    monkeypatch.undo()
    line = one_line(capsys.readouterr().err)
    assert rc == 1 and str(out) in line and os.strerror(code) in line, line
    assert out.read_bytes() == b"precious"
    assert temp_files(out_dir) == []


def test_a_batch_goes_on_after_a_failure(model_dir, png, tmp_path, monkeypatch, capsys):
    inputs = []
    for name in ("a", "b", "c", "d"):
        inputs.append(tmp_path / f"{name}.png")
        inputs[-1].write_bytes(png.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    (out / "d.sfi").write_bytes(b"precious")  # exists, no --force: d fails, alone
    for f in ("link", "replace"):  # b: the disk is full when it is renamed into place
        monkeypatch.setattr(os, f, _raise_for("b.sfi", errno.ENOSPC, getattr(os, f)))
    rc = main(["compress", *map(str, inputs), str(out), "-m", "test-l", "--quiet"])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 1 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert "b.png" in lines[0] and "b.sfi" in lines[0] and "No space left" in lines[0]
    assert "d.png" in lines[1] and "exists" in lines[1]
    assert sorted(p.name for p in out.iterdir()) == ["a.sfi", "c.sfi", "d.sfi"]
    assert (out / "d.sfi").read_bytes() == b"precious"
    for name in ("a", "c"):
        assert container.unpack((out / f"{name}.sfi").read_bytes()).model == "test-l"


class _FailingStdin:
    """stdin that is a folder (``< dir``: Python itself refuses to start with one) or fails to read."""

    def __init__(self, code: int):
        self.buffer = self
        self.code = code

    def read(self, *args):
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.parametrize("code", [errno.EISDIR, errno.EIO])
def test_stdin_that_cannot_be_read(model_dir, tmp_path, monkeypatch, capsys, code):
    monkeypatch.setattr(sys, "stdin", _FailingStdin(code))
    for args in (["compress", "-", str(tmp_path / "o.sfi"), "-m", "test-l"], ["decompress", "-", "-"], ["info", "-"]):
        assert main(args) == 1
        line = one_line(capsys.readouterr().err)
        assert "stdin" in line and os.strerror(code) in line, line
    assert not (tmp_path / "o.sfi").exists()


@pytest.mark.slow  # starts subprocesses or trains
def test_a_directory_where_a_file_is_expected(sfi, tmp_path):
    (tmp_path / "y.png").mkdir()
    for force in ([], ["--force"]):
        rc, _, err = run_cli("decompress", sfi, tmp_path / "y.png", *force)
        assert_clean_error(rc, err, "is a directory")  # not "exists (use --force)": forcing cannot help
    assert (tmp_path / "y.png").is_dir() and not list((tmp_path / "y.png").iterdir())
    for args in (("info", tmp_path), ("decompress", tmp_path, tmp_path / "z.png")):
        rc, _, err = run_cli(*args)
        assert_clean_error(rc, err, "is a directory")


# -- bug 4: text from a file never reaches the terminal raw ----------------------------------------
FORGED_MODEL = "test-l\x1b[31m\x1b[2J"
FORGED_VERSION = "1\nOK: decoded"


@pytest.fixture
def forged(sfi, tmp_path) -> Path:
    hdr = container.unpack(sfi.read_bytes())
    hdr.model, hdr.weights_version = FORGED_MODEL, FORGED_VERSION
    p = tmp_path / "forged.sfi"
    p.write_bytes(container.pack(hdr))
    return p


def assert_no_control_characters(text: str) -> None:
    assert not [c for c in text.replace("\n", "") if ord(c) < 32 or ord(c) == 127], repr(text)


@pytest.mark.slow  # starts subprocesses or trains
def test_forged_header_text_is_escaped_in_errors(forged, tmp_path):
    rc, _, err = run_cli("decompress", forged, tmp_path / "y.png")
    line = one_line(err)
    assert rc == 1 and "not installed" in line
    assert_no_control_characters(err)
    assert "\\x1b[31m" in line and "1\\nOK: decoded" in line  # shown, escaped
    with pytest.raises(slimfast.SlimfastError) as exc:
        slimfast.decompress(forged.read_bytes())
    assert "\n" not in str(exc.value) and "\x1b" not in str(exc.value)


@pytest.mark.slow  # starts subprocesses or trains
def test_forged_header_text_is_escaped_in_info(forged):
    rc, out, err = run_cli("info", forged)
    text = out.decode()
    assert rc == 0 and err == ""
    assert_no_control_characters(text)
    assert len(text.splitlines()) == 10 and "\\x1b[31m" in text
    rc, out, _ = run_cli("info", forged, "--json")
    assert rc == 0
    assert_no_control_characters(out.decode())
    d = json.loads(out)
    assert (d["model"], d["version"]) == (FORGED_MODEL, FORGED_VERSION)  # the data itself, unchanged


def test_printable():
    from slimfast.errors import printable

    assert printable("fasinet-h-mse-q4") == "fasinet-h-mse-q4"
    assert printable("a\x1b[2Jb\nc\r\t\x7f") == "a\\x1b[2Jb\\nc\\r\\t\\x7f"
    assert printable("é\u202e") == "\\xe9\\u202e"  # bidi overrides reorder the line: escaped too
    assert printable("é\u202e", ascii_only=False) == "é\\u202e"
    assert printable("x" * 500) == "x" * 80 + "..."


# -- bug 6: no temporary files left behind -------------------------------------------------------
SLOW_WRITE = """
import os, signal, sys, time
for name in ("SIGTERM", "SIGHUP"):  # whatever the test runner ignores, as nohup or a background job does
    signal.signal(getattr(signal, name), signal.SIG_DFL)
signal.signal(signal.SIGINT, signal.default_int_handler)
marker, folder = sys.argv[1:3]
def slow_fsync(fd):
    with open(marker, "w") as f:
        f.write("\\n".join(os.listdir(folder)))
    time.sleep(120)
os.fsync = slow_fsync
from slimfast.cli import main
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_a_signal_during_a_write_leaves_no_temporary_file(model_dir, png, tmp_path, sig):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    marker = tmp_path / "writing"
    p = subprocess.Popen([sys.executable, "-c", SLOW_WRITE, str(marker), str(out_dir), "compress", str(png),
                          str(out_dir / "x.sfi"), "-m", "test-l"], cwd=ROOT, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not marker.exists() or not marker.read_text():
        assert p.poll() is None and time.time() < deadline, p.stderr.read()
        time.sleep(0.05)
    assert temp_files(out_dir), "the write had begun"
    p.send_signal(getattr(signal, sig))
    err = p.communicate(timeout=60)[1].decode()
    assert list(out_dir.iterdir()) == []
    assert p.returncode == 128 + getattr(signal, sig), err
    assert "interrupted" in one_line(err)
    assert marker.read_text() == f".x.sfi.slimfast-{p.pid}.tmp"  # a name a later run can recognise


@pytest.mark.slow  # starts subprocesses or trains
def test_stale_temporary_files_of_dead_processes_are_removed(model_dir, png, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True)
    dead_pid = int(dead.stdout)  # exited and reaped
    pid_max = int(Path("/proc/sys/kernel/pid_max").read_text()) if Path("/proc/sys/kernel/pid_max").exists() else 1 << 22
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    try:
        stale = [f".a.sfi.slimfast-{dead_pid}.tmp", f".b.png.slimfast-{pid_max + 1}.tmp"]
        kept = [f".c.sfi.slimfast-{live.pid}.tmp", f".d.sfi.slimfast-{os.getpid()}.tmp",  # live processes
                f".e.sfi.{dead_pid}.tmp", f"f.slimfast-{dead_pid}.tmp", ".g.sfi.slimfast-x1.tmp",  # not our names
                f".h.sfi.slimfast-{dead_pid}.tmp.bak"]
        for name in stale + kept:
            (out / name).write_bytes(b"partial")
        rc, _, err = run_cli("compress", png, out / "x.sfi", "-m", "test-l", "--quiet")
        assert rc == 0, err
        assert sorted(p.name for p in out.iterdir()) == sorted(kept + ["x.sfi"])
    finally:
        live.kill()
        live.wait()


# -- bug 7: a model card must pin its weights ------------------------------------------------------
@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("sha256", ["missing", "", "abc123", "z" * 64, None])
def test_a_card_without_a_valid_sha256_is_refused(model_dir, png, tmp_path, monkeypatch, sha256):
    folder = tmp_path / "models"
    folder.mkdir()
    card = json.loads((model_dir / "test-l.json").read_text())
    card["name"] = card["family"] = "nohash"
    if sha256 == "missing":
        del card["sha256"]
    else:
        card["sha256"] = sha256
    (folder / "nohash.json").write_text(json.dumps(card))
    weights = bytearray((model_dir / "test-l.safetensors").read_bytes())
    weights[-1] ^= 1  # tampered: nothing may notice but the hash
    (folder / "nohash.safetensors").write_bytes(bytes(weights))
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", os.pathsep.join([str(model_dir), str(folder)]))
    with pytest.raises(slimfast.SlimfastError, match="nohash.json.*sha256"):
        slimfast.load("nohash")
    rc, _, err = run_cli("compress", png, tmp_path / "o.sfi", "-m", "nohash")
    assert_clean_error(rc, err, "nohash.json")
    assert not (tmp_path / "o.sfi").exists()
    assert "nohash" not in {m.name for m in slimfast.list_models()}
    assert slimfast.load("test-l").name == "test-l"  # the other models still load


def test_published_cards_carry_their_weights_sha256(model_dir):
    from slimfast.models.weights import file_digest
    from slimfast.zoo import BUNDLED_DIR

    for card_path in [*BUNDLED_DIR.glob("*.json"), *model_dir.glob("*.json")]:
        if card_path.name == "retired.json":
            continue
        card = json.loads(card_path.read_text())
        assert card["sha256"] == file_digest(card_path.with_suffix(".safetensors")), card_path


# -- bug 8: the Pillow plugin's errors are Pillow's kinds too ---------------------------------------
def _catches(action, kind) -> bool:
    try:
        action()
    except kind:
        return True
    return False


@pytest.mark.parametrize("case", ["truncated header", "magic only", "newer version"])
def test_pillow_open_errors_are_unidentified_image_errors(sfi, tmp_path, case):
    data = sfi.read_bytes()
    bad = tmp_path / "bad.sfi"
    bad.write_bytes({"truncated header": data[:12], "magic only": data[:4],
                     "newer version": data[:4] + b"\x09" + data[5:]}[case])
    for kind in (UnidentifiedImageError, OSError, slimfast.SlimfastError):
        assert _catches(lambda: Image.open(bad), kind), kind


@pytest.mark.parametrize("case", ["crc", "truncated", "model"])
def test_pillow_load_errors_are_oserrors(sfi, tmp_path, case):
    data = sfi.read_bytes()
    hdr = container.unpack(data)
    hdr.model = "gone-model"
    bad = tmp_path / "bad.sfi"
    bad.write_bytes({"crc": data[:-5] + bytes([data[-5] ^ 1]) + data[-4:], "truncated": data[:-10],
                     "model": container.pack(hdr)}[case])
    for kind in (OSError, slimfast.SlimfastError):
        with Image.open(bad) as im:  # the header is fine: opening works, decoding fails
            assert _catches(im.load, kind), kind


# -- bug 1: the pixel limit, on the command line and in Pillow --------------------------------------
@pytest.mark.slow  # starts subprocesses or trains
def test_max_pixels_option(sfi, png, tmp_path):
    rc, _, err = run_cli("decompress", sfi, tmp_path / "y.png", "--max-pixels", 56 * 40 - 1)
    assert_clean_error(rc, err, "limit")
    assert not (tmp_path / "y.png").exists()
    rc, _, err = run_cli("decompress", sfi, tmp_path / "y.png", "--max-pixels", 56 * 40,
                         env_extra={"SLIMFAST_MAX_PIXELS": "100"})  # the flag wins over the environment
    assert rc == 0, err
    rc, _, err = run_cli("compress", png, tmp_path / "z.sfi", "-m", "test-l", "--max-pixels", 100)
    assert_clean_error(rc, err, "limit of 100 pixels")
    assert not (tmp_path / "z.sfi").exists()
    rc, _, err = run_cli("compress", png, tmp_path / "z.sfi", "-m", "test-l", "--max-pixels", 0)
    assert_clean_error(rc, err, "--max-pixels")
    for command in ("compress", "decompress"):
        rc, out, _ = run_cli(command, "--help")
        assert rc == 0 and "--max-pixels" in out.decode() and "67108864" in out.decode()


@pytest.mark.slow  # starts subprocesses or trains
def test_compress_within_max_pixels_meets_no_pillow_warning(model_dir, tmp_path, monkeypatch):
    big = tmp_path / "big.png"
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(big)
    # Pillow's limit alone would warn (above 1000) and refuse (above 2000): --max-pixels governs.
    code = ("import sys, warnings; from PIL import Image; Image.MAX_IMAGE_PIXELS = 1000; "
            "warnings.simplefilter('error', Image.DecompressionBombWarning); "
            "from slimfast.cli import main; sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "compress", str(big),
                        str(tmp_path / "b.sfi"), "-m", "test-l", "--max-pixels", "5000", "--quiet"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300, check=False)
    assert r.returncode == 0 and r.stderr == "", r.stderr


def test_pillow_plugin_follows_pillows_pixel_limit(sfi, monkeypatch):
    pixels = 56 * 40
    monkeypatch.setenv("SLIMFAST_MAX_PIXELS", "100")  # in Pillow, Pillow's limit governs
    with Image.open(sfi) as im:
        im.load()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels // 2 + 10)
    with pytest.warns(Image.DecompressionBombWarning), Image.open(sfi) as im:
        im.load()  # above 1x: a warning, and it decodes
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels // 2 - 10)
    with pytest.raises(Image.DecompressionBombError):
        Image.open(sfi)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pixels)
    with Image.open(sfi) as im:
        Image.MAX_IMAGE_PIXELS = 100  # lowered after opening: still checked before decoding
        with pytest.raises(Image.DecompressionBombError):
            im.load()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    with warnings.catch_warnings(), Image.open(sfi) as im:
        warnings.simplefilter("error")
        im.load()
