"""``slimfast batch`` (issue 27): sources and mirrored outputs, collisions refused before anything is
written, the manifest, resume, and, on both executors (a process pool and a local Ray instance
with 2 CPUs), the bytes of ``slimfast compress`` with the same options and threads, a corrupt
input recorded as failed while the rest succeed, an interrupted run resumed without redoing what
was done, and a rerun with other options redoing everything."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import numpy as np
from PIL import Image

from slimfast import jobs
from slimfast.batch import BatchConfig, run
from slimfast.batch import manifest as mf
from slimfast.batch.plan import make_plan
from slimfast.batch.sources import collect
from slimfast.cli import main
from slimfast.cli.batch import main as batch_main
from slimfast.errors import SlimfastError
from slimfast.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
N = 30
FOLDERS = ("", "a", "b/c")  # the crops spread over a small tree, to be mirrored
EXECUTORS = ("local", pytest.param("ray", marks=pytest.mark.slow))


# -- fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """30 crops of 64x64 in a tree, and one corrupt PNG."""
    root = tmp_path_factory.mktemp("corpus") / "photos"
    im = Image.open(SAMPLE).convert("RGB")
    for k in range(N):
        folder = root / FOLDERS[k % len(FOLDERS)]
        folder.mkdir(parents=True, exist_ok=True)
        x, y = (k * 97) % (im.width - 64), (k * 41) % (im.height - 64)
        im.crop((x, y, x + 64, y + 64)).save(folder / f"crop{k:02d}.png")
    (root / "a" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    return root


def crops(corpus: Path) -> list[Path]:
    return sorted(corpus.rglob("crop*.png"))


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory, model_dir) -> dict[str, dict[str, bytes]]:
    """What ``slimfast compress -o DIR --threads 1`` writes for each crop, per model."""
    refs = {}
    for model in ("test-h", "test-l"):
        out = tmp_path_factory.mktemp(f"ref-{model}")
        assert main(["compress", *map(str, crops(corpus)), "-o", str(out), "-m", model, "--threads", "1",
                     "--quiet"]) == 0
        refs[model] = {p.stem: p.read_bytes() for p in out.iterdir()}
    assert len(refs["test-h"]) == N and refs["test-h"] != refs["test-l"]
    return refs


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance with 2 CPUs for the module, started as the command starts its own."""
    pytest.importorskip("ray")
    import ray

    from slimfast.batch import raydata

    raydata.connect(None, 2, 1)
    yield
    ray.shutdown()


@pytest.fixture
def executor(request) -> str:
    if request.param == "ray":
        request.getfixturevalue("ray_instance")
    return request.param


def options(model: str = "test-h", **kw) -> jobs.Options:
    return jobs.Options("compress", model=model, settings=Settings.from_env().replace(threads=1), **kw)


def rows(out: Path) -> dict[str, dict]:
    return mf.read(out / mf.NAME)


def check_outputs(corpus: Path, out: Path, expected: dict[str, bytes]) -> None:
    """The tree mirrored, every file as ``slimfast compress`` wrote it."""
    for src in crops(corpus):
        dst = out / src.relative_to(corpus).with_suffix(".sfi")
        assert dst.read_bytes() == expected[src.stem], dst


# -- sources, plan and options (no worker started) -----------------------------------------------
def test_sources_mirror_folders_and_list_files_by_their_common_parent(tmp_path, monkeypatch):
    for name in ("p/x/1.png", "p/x/2.jpg", "p/notes.txt", "p/.hidden.png", "p/.git/3.png", "q/y/4.png", "q/z/5.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "list.txt").write_text("q/y/4.png\n\nq/z/5.png\n")
    monkeypatch.chdir(tmp_path)
    opts = options()
    outs = {Path(j.source).relative_to(tmp_path).as_posix(): Path(j.output).relative_to(tmp_path / "o").as_posix()
            for j in collect(["p", "list.txt"], "o", opts)}
    assert outs == {"p/x/1.png": "x/1.sfi", "p/x/2.jpg": "x/2.sfi", "q/y/4.png": "y/4.sfi", "q/z/5.png": "z/5.sfi"}
    assert {j.output for j in collect(["q/*/*.png"], "o", opts)} == {str(tmp_path / "o/y/4.sfi"), str(tmp_path / "o/z/5.sfi")}
    assert [Path(j.source).name for j in collect(["@list.txt"], "o", opts)] == ["4.png", "5.png"]
    assert [Path(j.output).name for j in collect(["p/x/1.png"], "o", opts)] == ["1.sfi"]
    # the destination inside a source is not a source
    assert [j.source for j in collect(["q"], "q/y/out", opts) if "out" in j.source] == []
    for bad, words in (("missing", "no such file or folder: missing"), ("p/*.webp", "no file matches")):
        with pytest.raises(SlimfastError, match=words):
            collect([bad], "o", opts)


def test_collisions_are_refused_before_anything_is_written(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    for name in ("photo.png", "photo.jpg"):
        Image.new("RGB", (8, 8)).save(tmp_path / "in" / name)
    assert batch_main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--executor", "local"]) == 1
    err = capsys.readouterr().err.strip()
    assert "would both be written to" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, words", [
    (["--decompress", "-q", "50"], "-q applies to compression"),
    (["--format", "png"], "--format applies to --decompress"),
    (["--executor", "local", "--address", "auto"], "--address names a Ray cluster"),
    (["--threads", "0"], "--threads must be at least 1"),
    (["-q", "50", "--max-bytes", "100"], "cannot be combined"),
])
def test_misplaced_options_are_one_line_errors(tmp_path, capsys, argv, words):
    assert batch_main([str(tmp_path), "--out", str(tmp_path / "out"), *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1, err


def test_without_pyarrow_the_command_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow then fails, as where it is not installed
    assert batch_main([str(tmp_path), "--out", str(tmp_path / "out"), "--executor", "local"]) == 1
    err = capsys.readouterr().err.strip()
    assert "pip install 'slimfast[ray]'" in err and len(err.splitlines()) == 1, err


def test_the_options_hash_follows_what_decides_the_bytes(tmp_path):
    base = mf.options_hash(options(), ("m", "1", "ab"))
    assert base == mf.options_hash(options(force=True), ("m", "1", "ab"))
    assert base == mf.options_hash(jobs.Options("compress", model="test-h", settings=Settings.from_env().replace(
        threads=1, max_pixels=10, cache_dir=tmp_path)), ("m", "1", "ab"))
    for other in (options(quality=50), options("test-l"), options(metadata="icc"), options(effort=1),
                  jobs.Options("compress", model="test-h", settings=Settings.from_env().replace(threads=2))):
        assert mf.options_hash(other, ("m", "1", "ab")) != base
    assert mf.options_hash(options(), ("m", "2", "cd")) != base


def test_the_plan_keeps_what_is_done_and_replaces_only_its_own_outputs(tmp_path):
    src = {n: tmp_path / f"{n}.png" for n in ("done", "touched", "failed", "foreign", "ours")}
    for p in src.values():
        p.write_bytes(b"image")
    planned = [jobs.Job(str(p), str(tmp_path / f"{n}.sfi")) for n, p in src.items()]
    previous = {}
    for job in planned:
        st = os.stat(job.source)
        previous[job.source] = {**dict.fromkeys(mf.COLUMNS), "source": job.source, "output": job.output, "status": "ok",
                                "options_hash": "h", "source_size": st.st_size, "source_mtime_ns": st.st_mtime_ns,
                                "bytes_out": 3, "output_ours": True}
        Path(job.output).write_bytes(b"sfi")
    os.utime(src["touched"], ns=(0, 0))
    previous[str(src["failed"])]["status"] = "failed"
    previous[str(src["ours"])]["status"] = "pending"  # written, or not, when a run stopped
    del previous[str(src["foreign"])]
    plan = make_plan(planned, "compress", "h", previous, force=False)
    assert plan.kept == 1 and plan.rows[str(src["done"])] is previous[str(src["done"])]
    assert {Path(t["source"]).stem: t["force"] for t in plan.tasks} == {"touched": True, "failed": True, "ours": True}
    foreign = plan.rows[str(src["foreign"])]
    assert foreign["status"] == "failed" and "exists (use --force" in foreign["error"] and not foreign["output_ours"]
    assert make_plan(planned, "compress", "other", previous, force=False).kept == 0


# -- end to end, on both executors ---------------------------------------------------------------
@pytest.mark.slow  # starts worker processes (local) or a Ray instance
@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_batch_writes_the_bytes_of_compress_records_failures_and_redoes_only_on_other_options(
        executor, corpus, reference, tmp_path, capsys):
    out = tmp_path / "out"
    argv = [str(corpus), "--out", str(out), "--executor", executor, "--workers", "2", "-m", "test-h"]
    assert batch_main(argv) == 1  # the corrupt input failed
    err = capsys.readouterr().err
    assert f"{N + 1} files: {N} coded, 0 already done, 1 failed" in err and "corrupt.png" in err, err
    check_outputs(corpus, out, reference["test-h"])
    recorded = rows(out)
    assert len(recorded) == N + 1
    bad = recorded[str(corpus / "a" / "corrupt.png")]
    assert bad["status"] == "failed" and bad["error"] and not (out / "a" / "corrupt.sfi").exists()
    for r in recorded.values():
        if r["status"] == "ok":
            assert r["bytes_in"] == r["source_size"] == os.path.getsize(r["source"])
            assert r["bytes_out"] == os.path.getsize(r["output"])
            assert r["bpp"] == pytest.approx(r["bytes_out"] * 8 / (64 * 64))
            assert r["model"] == "test-h" and r["version"] and r["worker"] and r["time"] is not None
    # two workers ran; on a loaded machine one of them may have coded every file before the other started
    assert 1 <= len({r["worker"] for r in recorded.values() if r["worker"]}) <= 2
    # the same command again: only the failed input is tried again
    assert batch_main(argv) == 1
    assert f"0 coded, {N} already done, 1 failed" in capsys.readouterr().err
    assert {k: r["time"] for k, r in rows(out).items() if r["status"] == "ok"} == \
           {k: r["time"] for k, r in recorded.items() if r["status"] == "ok"}
    # other options: everything again, over the batch's own outputs (no --force needed)
    (corpus / "a" / "corrupt.png").rename(corpus / "a" / "corrupt.bak")
    try:
        assert batch_main([*argv[:-1], "test-l"]) == 0
    finally:
        (corpus / "a" / "corrupt.bak").rename(corpus / "a" / "corrupt.png")
    assert f"{N} files: {N} coded, 0 already done, 0 failed" in capsys.readouterr().err
    check_outputs(corpus, out, reference["test-l"])


@pytest.mark.slow  # starts a Ray instance in a subprocess
def test_the_command_starts_and_stops_its_own_ray_instance(corpus, reference, tmp_path, ray_instance):
    """As a user runs it: a local instance of 2 CPUs of its own (another already running here is
    left alone), the failure and the summary on stderr, exit status 1."""
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-m", "slimfast.cli.batch", str(corpus), "--out", str(out), "--executor", "ray",
                        "--workers", "2", "-m", "test-h"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 1 and "Traceback" not in p.stderr, p.stderr
    assert "core_worker" not in p.stderr and "RayDeprecationWarning" not in p.stderr, p.stderr  # no Ray noise (raydata._map)
    assert p.stderr.strip().splitlines()[-1].endswith("images/s on 2 ray workers"), p.stderr
    assert "corrupt.png" in p.stderr
    check_outputs(corpus, out, reference["test-h"])
    assert len(rows(out)) == N + 1


class Interrupt:
    """A progress callback that stops the run (as Ctrl-C would) once ``after`` results are in."""

    def __init__(self, after: int):
        self.after, self.seen, self.fired = after, 0, False

    def __call__(self, rows: list[dict], total: int) -> None:
        self.seen += sum(r["worker"] is not None for r in rows)
        if self.seen >= self.after and not self.fired:
            self.fired = True
            raise KeyboardInterrupt


@pytest.mark.slow  # starts worker processes (local) or a Ray instance
@pytest.mark.parametrize("executor", EXECUTORS, indirect=True)
def test_an_interrupted_run_resumes_without_redoing_finished_files(executor, corpus, reference, tmp_path):
    out = tmp_path / "out"
    config = BatchConfig(executor=executor, workers=2, batch_size=2)
    with pytest.raises(KeyboardInterrupt):
        run([str(corpus)], str(out), options(), config, progress=Interrupt(after=6))
    before = rows(out)
    finished = {k: r for k, r in before.items() if r["status"] == "ok"}
    assert 6 <= len(finished) < N and all(r["status"] in ("ok", "pending", "failed") for r in before.values())
    assert sum(r["status"] != "ok" for r in before.values()) > 1
    summary = run([str(corpus)], str(out), options(), config)
    assert (summary.kept, summary.coded, summary.failed) == (len(finished), N - len(finished), 1)
    after = rows(out)
    assert all(after[k]["time"] == r["time"] and after[k]["worker"] == r["worker"] for k, r in finished.items())
    check_outputs(corpus, out, reference["test-h"])


@pytest.mark.slow  # starts worker processes
def test_decompress_batch_writes_what_decompress_writes(corpus, reference, tmp_path, model_dir):
    sfi = tmp_path / "sfi"
    sfi.mkdir()
    for stem, data in reference["test-h"].items():
        (sfi / f"{stem}.sfi").write_bytes(data)
    assert batch_main([str(sfi), "--out", str(tmp_path / "png"), "--decompress", "--executor", "local", "--quiet"]) == 0
    (tmp_path / "ref").mkdir()
    assert main(["decompress", *map(str, sorted(sfi.glob("*.sfi"))), "-o", str(tmp_path / "ref"), "--threads", "1",
                 "--quiet"]) == 0
    written = sorted((tmp_path / "ref").iterdir())
    assert len(written) == N
    for p in written:
        assert (tmp_path / "png" / p.name).read_bytes() == p.read_bytes()


def test_the_command_is_registered():
    from slimfast.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    if "batch" not in sub.choices:
        pytest.skip("slimfast/cli/main.py does not register batch yet")
    with pytest.raises(SystemExit) as stop:
        main(["batch", "--help"])
    assert stop.value.code == 0


def test_effort_reaches_the_workers(tmp_path):
    pytest.importorskip("torch")
    import slimfast

    (tmp_path / "in").mkdir()
    rgb = np.asarray(Image.open(ROOT / "slimfast" / "data" / "kodim23.png").convert("RGB"))[200:264, 300:364]
    Image.fromarray(rgb).save(tmp_path / "in" / "a.png")
    argv = [str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--executor", "local", "--workers", "1",
            "-m", "fasinet-h-mse-q1", "--effort", "1"]
    assert batch_main(argv) == 0
    want = slimfast.load("fasinet-h-mse-q1", threads=1).compress(rgb, effort=1)
    assert (tmp_path / "out" / "a.sfi").read_bytes() == want
