"""Output names like the image tools' (issue 25, item 6): `compress IN... [-o OUT]`, outputs beside
their inputs, the two-path form where it is unambiguous, several files for decompress and info,
and the refusals that come before anything is written. Also the per-file pipeline itself
(slimfast.jobs), which a batch runner calls from worker processes."""
from __future__ import annotations

import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimfast import jobs
from slimfast.cli import main
from slimfast.errors import SlimfastError
from slimfast.format import container
from slimfast.settings import Settings


def status(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exc:  # argparse's own errors
        return exc.code


def one_error(capsys, needle: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("slimfast: error: ") and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def folder(tmp_path, small_rgb, monkeypatch) -> Path:
    """A folder with photo.png, other.jpg and pic.bmp, and the working directory there."""
    Image.fromarray(small_rgb).save(tmp_path / "photo.png")
    Image.fromarray(small_rgb[::-1]).save(tmp_path / "other.jpg")
    Image.fromarray(small_rgb[:, ::-1]).save(tmp_path / "pic.bmp")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    return tmp_path


def files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def sfi_model(path: Path) -> str:
    return container.unpack(path.read_bytes()).model


# -- names -------------------------------------------------------------------------------------
def test_outputs_beside_their_inputs(model_dir, folder, capsys):
    assert main(["compress", "photo.png", "-m", "test-l"]) == 0
    assert capsys.readouterr().err.startswith("photo.png -> photo.sfi: ")
    assert sfi_model(folder / "photo.sfi") == "test-l"
    (folder / "photo.png").rename(folder / "original.png")
    assert main(["decompress", "photo.sfi"]) == 0
    assert capsys.readouterr().err.startswith("photo.sfi -> photo.png: 56x40 RGB, ")
    assert main(["decompress", "photo.sfi", "--format", "webp", "--quiet"]) == 0
    assert Image.open(folder / "photo.webp").format == "WEBP"
    # several inputs without -o: each beside itself, one summary line
    assert main(["compress", "other.jpg", "pic.bmp", "-m", "test-l"]) == 0
    assert capsys.readouterr().err.startswith("2 files: ")
    assert {"other.sfi", "pic.sfi"} <= set(files(folder))


def test_dash_o_is_a_file_for_one_input_and_a_folder_for_several(model_dir, folder, capsys):
    assert main(["compress", "photo.png", "-o", "named.sfi", "-m", "test-l", "--quiet"]) == 0
    assert sfi_model(folder / "named.sfi") == "test-l"
    (folder / "out").mkdir()
    assert main(["compress", "photo.png", "other.jpg", "-o", "out", "-m", "test-l", "--quiet"]) == 0
    assert files(folder / "out") == ["other.sfi", "photo.sfi"]
    assert main(["compress", "pic.bmp", "-o", "out/", "-m", "test-l", "--quiet"]) == 0  # one input, a folder
    assert files(folder / "out") == ["other.sfi", "photo.sfi", "pic.sfi"]
    assert main(["decompress", "out/photo.sfi", "out/other.sfi", "-o", "out", "--quiet"]) == 0
    assert {"photo.png", "other.png"} <= set(files(folder / "out"))
    assert main(["compress", "photo.png", "other.jpg", "-o", "missing", "-m", "test-l"]) == 1
    one_error(capsys, "output folder does not exist: missing")
    assert main(["compress", "photo.png", "other.jpg", "-o", "-", "-m", "test-l"]) == 1
    one_error(capsys, "several inputs need an output folder, not -")


def test_the_two_path_form_stays(model_dir, folder, capsysbinary):
    assert main(["compress", "photo.png", "two.sfi", "-m", "test-l", "--quiet"]) == 0
    assert (folder / "two.sfi").exists() and not (folder / "photo.sfi").exists()
    (folder / "dir").mkdir()
    assert main(["compress", "photo.png", "dir", "-m", "test-l"]) == 0
    assert files(folder / "dir") == ["photo.sfi"]
    capsysbinary.readouterr()
    assert main(["compress", "photo.png", "-", "-m", "test-l"]) == 0
    assert capsysbinary.readouterr().out[:4] == b"\x89SFI"
    assert main(["decompress", "two.sfi", "two.tiff", "--quiet"]) == 0
    assert Image.open(folder / "two.tiff").size == (56, 40)
    assert main(["decompress", "two.sfi", "-"]) == 0
    assert capsysbinary.readouterr().out[:4] == b"\x89PNG"


def test_decompress_and_info_take_several_files(model_dir, folder, capsys):
    assert main(["compress", "photo.png", "other.jpg", "pic.bmp", "-m", "test-l", "--quiet"]) == 0
    sfis = ["photo.sfi", "other.sfi", "pic.sfi"]
    for name in ("photo.png", "other.jpg", "pic.bmp"):
        (folder / name).unlink()
    assert main(["decompress", *sfis, "-v"]) == 0
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(" -> ")[0] for line in lines[:3]] == sfis and lines[3].startswith("3 files: "), lines
    assert {"photo.png", "other.png", "pic.png"} <= set(files(folder))
    assert main(["info", *sfis]) == 0
    out = capsys.readouterr().out
    assert out.count("model    test-l") == 3 and "file     other.sfi" in out and "\n\nfile     pic.sfi" in out
    assert main(["info", *sfis, "--json"]) == 0
    assert [d["file"] for d in json.loads(capsys.readouterr().out)] == sfis
    (folder / "bad.sfi").write_bytes(b"not sfi at all")
    assert main(["info", "photo.sfi", "bad.sfi", "pic.sfi", "--json"]) == 1
    captured = capsys.readouterr()
    assert [d["file"] for d in json.loads(captured.out)] == ["photo.sfi", "pic.sfi"]
    assert captured.err.count("\n") == 1 and "bad.sfi: not a slimfast" in captured.err


def test_decompress_batch_feedback(model_dir, folder, capsys, monkeypatch):
    assert main(["compress", "photo.png", "other.jpg", "-m", "test-l", "--quiet"]) == 0
    (folder / "out").mkdir()
    assert main(["decompress", "photo.sfi", "other.sfi", "-o", "out", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["decompress", "photo.sfi", "other.sfi", "-o", "out", "--force"]) == 0
    err = capsys.readouterr().err
    assert "2/2" in err and err.splitlines()[-1].startswith("2 files: "), err


# -- refusals, before anything is written --------------------------------------------------------
def test_an_sfi_input_needs_allow_reencode(model_dir, folder, capsys):
    assert main(["compress", "photo.png", "-m", "test-l", "--quiet"]) == 0
    for extra in ([], ["--force"]):
        assert main(["compress", "photo.sfi", "-o", "again.sfi", "-m", "test-l", *extra]) == 1
        one_error(capsys, "photo.sfi is already an .sfi file")
    (folder / "disguised.png").write_bytes((folder / "photo.sfi").read_bytes())
    assert main(["compress", "disguised.png", "-m", "test-l"]) == 1  # found by its bytes too
    one_error(capsys, "disguised.png is already an .sfi file")
    assert main(["compress", "photo.sfi", "-m", "test-l", "--allow-reencode"]) == 1  # beside: itself
    one_error(capsys, "refusing to overwrite the input photo.sfi")
    assert "again.sfi" not in files(folder) and "disguised.sfi" not in files(folder)
    assert main(["compress", "photo.sfi", "-o", "again.sfi", "-m", "test-l", "--allow-reencode", "--quiet"]) == 0
    assert sfi_model(folder / "again.sfi") == "test-l"


def test_no_sfi_bytes_under_an_image_extension(model_dir, folder, capsys):
    before = files(folder)
    assert main(["compress", "pic.bmp", "out.png", "-m", "test-l"]) == 1  # the old habit, out.png missing
    one_error(capsys, "refusing to write .sfi bytes under the image extension .png: out.png (name it out.sfi)")
    for argv in (["compress", "pic.bmp", "-o", "out.png"], ["compress", "pic.bmp", "-o", "out.JPG", "--force"]):
        assert main([*argv, "-m", "test-l"]) == 1
        one_error(capsys, "under the image extension")
    assert main(["compress", "pic.bmp", "nothing", "-m", "test-l"]) == 1
    one_error(capsys, "no such file: nothing")
    assert files(folder) == before  # not even pic.sfi
    assert main(["compress", "pic.bmp", "-m", "test-l", "--quiet"]) == 0
    assert main(["decompress", "pic.sfi", "-o", "copy.sfi"]) == 1  # and no image under .sfi
    one_error(capsys, "decompress writes images, not .sfi files")
    assert main(["decompress", "pic.sfi", "-o", "x.png", "--format", "sfi"]) == 1
    one_error(capsys, "decompress writes images")
    assert "copy.sfi" not in files(folder) and "x.png" not in files(folder)


def test_collisions_and_repeats_are_refused_before_anything_is_written(model_dir, folder, capsys):
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    (folder / "out").mkdir()
    for sub in ("a", "b"):
        (folder / sub / "photo.png").write_bytes((folder / "photo.png").read_bytes())
    assert main(["compress", "a/photo.png", "b/photo.png", "-o", "out", "-m", "test-l", "--force"]) == 1
    one_error(capsys, "a/photo.png and b/photo.png would both be written to out/photo.sfi")
    assert main(["compress", "photo.png", "./photo.png", "-m", "test-l"]) == 1
    one_error(capsys, "the input ./photo.png is given twice")
    assert main(["compress", "-", "photo.png", "-o", "out", "-m", "test-l"]) == 1
    one_error(capsys, "- (stdin) cannot be combined")
    assert main(["compress", "-", "-m", "test-l"]) == 1
    one_error(capsys, "stdin needs an output")
    assert files(folder / "out") == [] and "photo.sfi" not in files(folder)


def test_a_failed_file_in_a_batch_leaves_the_others(model_dir, folder, capsys):
    (folder / "broken.png").write_bytes(b"not an image")
    (folder / "other.sfi").write_bytes(b"precious")
    assert main(["compress", "photo.png", "broken.png", "other.jpg", "-m", "test-l"]) == 1
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3 and lines[-1].startswith("1 of 3 files: "), lines
    assert "broken.png" in lines[0] and "other.jpg" in lines[1] and "exists" in lines[1]
    assert (folder / "other.sfi").read_bytes() == b"precious" and sfi_model(folder / "photo.sfi") == "test-l"


# -- the pipeline itself ---------------------------------------------------------------------------
def options(**kw) -> jobs.Options:
    return jobs.Options(settings=Settings.from_env().replace(threads=1), **kw)


def test_plan_and_code_file_records(model_dir, folder):
    opts = options(model="test-l")
    planned = jobs.plan(["photo.png", "other.jpg", "missing.png"], None, opts)
    assert planned == [jobs.Job("photo.png", "photo.sfi"), jobs.Job("other.jpg", "other.sfi"),
                       jobs.Job("missing.png", "missing.sfi")]
    jobs.prepare(opts)
    ok, _, bad = [jobs.code_file(j, opts) for j in planned]
    size = (folder / "photo.sfi").stat().st_size
    assert (ok.status, ok.error, ok.bytes_in, ok.bytes_out) == ("ok", None, (folder / "photo.png").stat().st_size, size)
    assert ok.bpp == pytest.approx(size * 8 / (56 * 40)) and (ok.model, ok.version) == ("test-l", "1")
    assert ok.image_size == (56, 40) and ok.mode == "RGB" and ok.seconds > 0
    assert bad.status == "failed" and "no such file: missing.png" in bad.error and not bad.ok
    again = jobs.code_file(planned[0], opts)
    assert again.status == "failed" and "exists" in again.error
    assert (folder / "photo.sfi").stat().st_size == size
    back = jobs.code_file(jobs.Job("photo.sfi", "back.png"), options(command="decompress"))
    assert back.ok and back.bytes_in == size and back.bytes_out == (folder / "back.png").stat().st_size
    with pytest.raises(SlimfastError, match="would both be written"):
        jobs.check_plan([jobs.Job("a.png", "x.sfi"), jobs.Job("b.png", "x.sfi")], opts)


def test_plain_picklable_data(model_dir):
    opts = options(model="test-l", quality=50.0, metadata="icc")
    job, record = jobs.Job("a.png", "a.sfi"), jobs.Record("a.png", "a.sfi", "failed", "boom")
    for value in (opts, job, record):
        assert pickle.loads(pickle.dumps(value)) == value
    assert hash(opts) == hash(pickle.loads(pickle.dumps(opts)))  # the codec cache's key
    assert jobs.codec_for("test-l", opts.settings) is jobs.codec_for("test-l", opts.settings)


@pytest.mark.slow  # starts subprocesses or trains
def test_a_worker_process_writes_the_bytes_the_cli_writes(model_dir, folder):
    import concurrent.futures
    import multiprocessing

    assert main(["compress", "photo.png", "-o", "cli.sfi", "-m", "test-l", "--threads", "1", "--quiet"]) == 0
    opts = options(model="test-l")
    (job,) = jobs.plan([str(folder / "photo.png")], str(folder / "worker.sfi"), opts)
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        record = pool.submit(jobs.code_file, job, opts).result(timeout=300)
    assert record.ok and record.bytes_out == (folder / "worker.sfi").stat().st_size
    assert (folder / "worker.sfi").read_bytes() == (folder / "cli.sfi").read_bytes()
    assert np.array_equal(np.asarray(Image.open(folder / "worker.sfi")), np.asarray(Image.open(folder / "cli.sfi")))
