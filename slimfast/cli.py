"""The ``slimfast`` command line.

Every user mistake ends with one line on stderr (``slimfast: error: ...``) and a non-zero exit
status, never a traceback. Outputs are written atomically (temporary file, then rename) and an
existing file is only replaced with ``--force``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path

# The integer hyper-synthesis GEMMs are small: one BLAS thread is fastest, and many times faster
# when the cores are busy (measured). Must be set before numpy loads; the user's setting wins.
# This configures a library (OpenBLAS reads it), not slimfast: slimfast's own settings are a
# Settings built once per command (_settings) and passed to the API, never written to the environment.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import __version__  # noqa: E402
from .errors import SlimfastError, printable

EPILOG = """\
examples:
  slimfast demo                                  compress + decompress the bundled photo
  slimfast compress photo.png photo.sfi          default model and quality
  slimfast compress photo.png photo.sfi -q 0     smallest file of the default model's family (-q 0..100)
  slimfast compress a.png b.jpg out/             several inputs into a folder
  slimfast compress photo.png small.sfi --max-bytes 20000
  slimfast decompress photo.sfi photo.png        output format from the extension
  cat photo.png | slimfast compress - - > photo.sfi
  slimfast info photo.sfi
  slimfast models                                what --model and --quality accept
"""


def _quality_arg(text: str) -> float:
    """-q's value as a number; its range is checked with the API's own message (nan included)."""
    try:
        return float(text)
    except ValueError:
        from .codec import QUALITY_RANGE

        raise argparse.ArgumentTypeError(f"quality must be {QUALITY_RANGE}, not {text!r}") from None


def _default_model_text() -> str:
    """The default model and the quality its own point stands for, for --help (read from the cards)."""
    try:
        from .codec import default_quality_range, model_info
        from .settings import Settings

        path = Settings.from_env().model_path
        info = model_info(None, path)
        low, high = default_quality_range(info, path)
    except Exception:  # noqa: BLE001 - help must print even where no model loads
        return "the default model"
    return f"{info.name}, whose own point is quality {low:.4g} to {high:.4g} (e.g. {(low + high) / 2:.4g})"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, like argparse but without the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


# -- writing outputs ---------------------------------------------------------------------------
# Temporary files are named .NAME.slimfast-PID.tmp: a later run can tell which were left by a
# process that no longer runs (kill -9, a power cut) and remove exactly those.
_TEMP_NAME = re.compile(r"\..+\.slimfast-([1-9][0-9]*)\.tmp")
_TEMPS: set[str] = set()  # temporary files being written now: removed on SIGTERM, SIGINT, SIGHUP
_SWEPT: set[str] = set()  # folders already cleared of stale temporary files by this process


def _write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the target folder; never replace without ``force``. Any OS
    error is a one-line :class:`SlimfastError` naming the file, and leaves an existing file as it was."""
    _check_target(path, force)
    parent = _folder_of(path)
    _remove_stale_temps(parent)
    tmp = str(parent / f".{path.name}.slimfast-{os.getpid()}.tmp")
    _TEMPS.add(tmp)  # before it exists: a signal from here on finds it
    try:
        _write_file(tmp, data)
        _move_into_place(tmp, path, force)
    except OSError as exc:
        raise SlimfastError(f"cannot write {path}: {_os_reason(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        _TEMPS.discard(tmp)


def _folder_of(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _check_target(path: Path, force: bool) -> None:
    """Checked before the work, not only when writing: a refused output costs no encoding."""
    if not _folder_of(path).is_dir():
        raise SlimfastError(f"output directory does not exist: {_folder_of(path)}")
    if path.is_dir():
        raise SlimfastError(f"{path} is a directory")
    if path.exists() and not force:
        raise SlimfastError(f"{path} exists (use --force to overwrite)")


def _write_file(tmp: str, data: bytes) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(tmp)  # our own pid in its name: left by a dead process that had it before
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)  # a full disk may only say so here, and the rename must not publish a short file
    finally:
        os.close(fd)


def _move_into_place(tmp: str, path: Path, force: bool) -> None:
    if force:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # fails if path appeared meanwhile: no silent overwrite
    except FileExistsError:
        raise SlimfastError(f"{path} exists (use --force to overwrite)") from None
    except OSError:  # no hard links here (FAT, some network file systems)
        os.replace(tmp, path)


def _remove_stale_temps(folder: Path) -> None:
    """Remove the temporary files of slimfast processes that no longer run, once per folder and
    process; only names :func:`_write_atomic` makes, and never another live process's."""
    key = os.path.realpath(folder)
    if key in _SWEPT or os.name == "nt":  # os.kill(pid, 0) would end the process on Windows
        return
    _SWEPT.add(key)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in entries:
        m = _TEMP_NAME.fullmatch(e.name)
        if m and int(m.group(1)) != os.getpid() and not _running(int(m.group(1))):
            with contextlib.suppress(OSError):
                if e.is_file(follow_symlinks=False):
                    os.unlink(e.path)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: sends nothing, only asks whether the process exists
    except (ProcessLookupError, OverflowError):  # OverflowError: beyond any pid
        return False
    except OSError:  # EPERM: it runs, as another user
        return True
    return True


def _write_stdout(data: bytes) -> None:
    try:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    except OSError as exc:
        _stdout_failed(exc)


def _stdout_failed(exc: OSError):
    _silence_stdout()
    raise SlimfastError(f"cannot write to stdout: {_os_reason(exc)}") from None


def _silence_stdout() -> None:
    """After a failed write to stdout (a closed pipe, a full disk), send the rest to /dev/null:
    Python flushes stdout again at exit and would print a second error there, with a traceback."""
    with contextlib.suppress(OSError, ValueError):  # no file descriptor (captured): nothing to flush later
        target = sys.stdout.fileno()
        fd = os.open(os.devnull, os.O_WRONLY)
        os.dup2(fd, target)
        os.close(fd)


def _print(*args) -> None:
    """print() to stdout, where a closed pipe or a full disk is a one-line error naming stdout."""
    try:
        print(*args)
    except OSError as exc:
        _stdout_failed(exc)


def _write_output(name: str, data: bytes, force: bool) -> None:
    if name == "-":
        _write_stdout(data)
    else:
        _write_atomic(Path(name), data, force)


def _os_reason(exc: OSError) -> str:
    return exc.strerror or str(exc) or type(exc).__name__


def _read_sfi(name: str) -> bytes:
    """An .sfi file's bytes, read no further than its header declares (a device or an endless
    pipe costs a few bytes, not all memory: container.read_file)."""
    from .format.container import read_file

    return read_file(sys.stdin.buffer if name == "-" else name, what="stdin" if name == "-" else name)


def _read_image(name: str, max_pixels: int) -> bytes:
    """An image file's bytes, at most what an image of ``max_pixels`` can take (imageio.read_bounded)."""
    from .format.imageio import max_input_bytes, read_bounded

    return read_bounded(sys.stdin.buffer if name == "-" else name, max_input_bytes(max_pixels),
                        what="stdin" if name == "-" else name)


def _same_file(a: str, b: Path) -> bool:
    try:
        return a != "-" and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _settings(args, bf16_parts: tuple[str, ...] = ()):
    """The environment's settings with this command's flags applied (a flag wins): ``--threads``,
    ``--int8`` (int8 synthesis), ``--bf16`` (bf16 for ``bf16_parts``: analysis, synthesis) and
    ``--max-pixels``."""
    from .settings import Settings

    changes = {}
    if args.threads:
        if args.threads < 1:
            raise SlimfastError("--threads must be at least 1")
        changes["threads"] = args.threads
    if getattr(args, "int8", False):
        changes["synthesis"] = "int8"
    if getattr(args, "bf16", False):
        changes.update(dict.fromkeys(bf16_parts, "bf16"))
    if getattr(args, "max_pixels", None) is not None:
        if args.max_pixels < 1:
            raise SlimfastError("--max-pixels must be at least 1")
        changes["max_pixels"] = args.max_pixels
    settings = Settings.from_env().replace(**changes)
    _set_torch_threads(settings)
    return settings


def _set_torch_threads(settings) -> None:
    """torch's thread count belongs to the process, not to a model: the command owns the process."""
    if settings.threads:
        from .codec import backend

        if backend(settings) == "torch":
            try:
                import torch
            except ImportError:  # loading the model says what is missing, in one line
                return
            torch.set_num_threads(settings.threads)


# -- commands ----------------------------------------------------------------------------------
def cmd_compress(args) -> int:
    from .codec import load

    settings = _settings(args, bf16_parts=("analysis",))
    inputs, out = args.inputs[:-1], args.inputs[-1]
    many = _batch_output(inputs, out)
    _check_point_options(args)
    codec = load(args.model, settings=settings)
    if args.width is not None and not codec.widths:
        raise SlimfastError(f"--width applies to slimmable models only; {codec.name} is not slimmable "
                            f"(use --quality, or pick a slimmable model from `slimfast models`)")
    jobs = [(i, str(Path(out) / (Path(i).stem + ".sfi")) if many else out) for i in inputs]
    _refuse_collisions(jobs)
    with _pillow_pixel_limit(settings.max_pixels):
        if not many:
            stats = _compress_one(codec, *jobs[0], args, settings.max_pixels)
            if not args.quiet and jobs[0][1] != "-":
                print(_file_line(stats), file=sys.stderr)
            return 0
        return _run_batch(jobs, lambda i, o: _compress_one(codec, i, o, args, settings.max_pixels),
                          quiet=args.quiet, verbose=args.verbose)


def _batch_output(inputs: list[str], out: str) -> bool:
    """Whether the inputs go into a folder (several, or one into an existing folder), after checking that they can."""
    if not inputs:
        raise SlimfastError("give an input and an output (use - for stdin/stdout)")
    many = len(inputs) > 1 or (out != "-" and Path(out).is_dir())
    if many:
        if out == "-":
            raise SlimfastError("several inputs need an output folder, not -")
        if not Path(out).is_dir():
            raise SlimfastError(f"output folder does not exist: {out}")
        if "-" in inputs:
            raise SlimfastError("- (stdin) cannot be combined with other inputs")
    return many


def _check_point_options(args) -> None:
    """-q, --max-bytes, --target-bpp: checked before any image is read, in the flags' names."""
    from .codec import check_quality, check_size_limit

    if args.quality is not None:
        check_quality(args.quality)
    if (args.max_bytes is not None or args.target_bpp is not None) and (args.quality, args.width) != (None, None):
        flag = "-q/--quality" if args.quality is not None else "--width"
        raise SlimfastError(f"{flag} cannot be combined with --max-bytes or --target-bpp "
                            "(they choose the operating point: the largest file that fits)")
    check_size_limit(args.max_bytes, args.target_bpp, names=("--max-bytes", "--target-bpp"))


def _refuse_collisions(jobs: list[tuple[str, str]]) -> None:
    """Two inputs with one stem would write one output: refused before anything is written,
    --force or not (the second would silently replace the first)."""
    seen: dict[str, str] = {}
    for i, o in jobs:
        key = os.path.normcase(os.path.abspath(o))
        if key in seen:
            raise SlimfastError(f"{seen[key]} and {i} would both be written to {o}; "
                                "compress them into different folders, or rename one")
        seen[key] = i


class _Done:
    """One compressed file, for the per-file line and the batch summary."""

    def __init__(self, i: str, o: str, bytes_in: int, bytes_out: int, size: tuple[int, int], seconds: float):
        self.i, self.o, self.bytes_in, self.bytes_out, self.size, self.seconds = i, o, bytes_in, bytes_out, size, seconds

    @property
    def bpp(self) -> float:
        return self.bytes_out * 8 / (self.size[0] * self.size[1])


def _compress_one(codec, i: str, o: str, args, max_pixels: int) -> _Done:
    if o != "-":
        if _same_file(i, Path(o)):
            raise SlimfastError(f"refusing to overwrite the input {i}")
        _check_target(Path(o), args.force)
    raw = _read_image(i, max_pixels)
    img = _open_input(raw, i, max_pixels, getattr(args, "first_frame", False))
    t0 = time.perf_counter()
    data = codec.compress(img, quality=args.quality, width=args.width,
                          max_bytes=args.max_bytes, target_bpp=args.target_bpp, metadata=args.metadata)
    dt = time.perf_counter() - t0
    _write_output(o, data, args.force)
    return _Done(i, o, len(raw), len(data), img.size, dt)


def _file_line(d: _Done) -> str:
    w, h = d.size
    return f"{d.i} -> {d.o}: {d.bytes_out} bytes, {d.bpp:.4f} bpp, {w}x{h}, {d.seconds * 1000:.0f} ms"


def _human_bytes(n: int) -> str:
    """Decimal units, as ls -h --si and the image tools print them: 950 B, 52.1 kB, 1.9 MB."""
    if n < 1000:
        return f"{n} B"
    for unit in ("kB", "MB", "GB", "TB"):
        n /= 1000
        if n < 999.95 or unit == "TB":
            return f"{n:.1f} {unit}"
    raise AssertionError("unreachable")


def _summary_line(done: list[_Done], total: int) -> str:
    """The batch's one summary line: files, bytes in and out, mean bpp over the files written."""
    files = f"{total} files" if len(done) == total else f"{len(done)} of {total} files"
    if not done:
        return f"{files}: nothing written"
    bytes_in = sum(d.bytes_in for d in done)
    bytes_out = sum(d.bytes_out for d in done)
    bpp = sum(d.bpp for d in done) / len(done)
    return f"{files}: {_human_bytes(bytes_in)} -> {_human_bytes(bytes_out)}, {bpp:.2f} bpp mean"


def _open_input(raw: bytes, name: str, max_pixels: int, first_frame: bool = False):
    from .format.imageio import open_image

    if not raw:
        raise SlimfastError(f"empty input: {name}")
    size = _image_size(raw)
    if size and size[0] * size[1] > max_pixels:
        raise SlimfastError(f"input image {size[0]}x{size[1]} is above the limit of {max_pixels} pixels, "
                            "which decoding it would need too (--max-pixels N raises it)")
    return open_image(io.BytesIO(raw), max_pixels, name="stdin" if name == "-" else name, first_frame=first_frame)


def _image_size(raw: bytes) -> tuple[int, int] | None:
    """The size an image's header states, without decoding it (None: not an image Pillow reads)."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked by the caller, from this size
    try:
        with Image.open(io.BytesIO(raw)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - open_image says what is wrong, in one line
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def _pillow_pixel_limit(max_pixels: int):
    """Pillow's own limit set to ours while the command runs: an input within --max-pixels must
    not meet a DecompressionBombWarning (a second line on stderr) or error on the way."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _run_batch(jobs: list[tuple[str, str]], fn, quiet: bool = False, verbose: bool = False) -> int:
    """``fn(input, output)`` for each job; a failure is one line on stderr and the others go on.
    A progress bar only where stderr is a terminal; ``verbose``: a line per file; then one summary
    line (none with ``quiet``, which leaves only the errors). Exit status 1 if any failed."""
    from tqdm import tqdm

    done: list[_Done] = []
    with tqdm(total=len(jobs), unit="img", file=sys.stderr, disable=quiet or not _stderr_is_terminal()) as bar:
        for i, o in jobs:
            try:
                d = fn(i, o)
            except (SlimfastError, OSError) as exc:  # OSError: whatever a file operation did not name
                tqdm.write(_error_line(f"{i}: {exc if isinstance(exc, SlimfastError) else _os_text(exc)}"),
                           file=sys.stderr)
            else:
                done.append(d)
                if verbose and not quiet:
                    tqdm.write(_file_line(d), file=sys.stderr)
            bar.update(1)
    if not quiet:
        print(_summary_line(done, len(jobs)), file=sys.stderr)
    return 0 if len(done) == len(jobs) else 1


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def _output_format(path: str, explicit: str | None) -> str:
    from PIL import Image

    if explicit:
        return explicit.upper()
    if path == "-":
        return "PNG"
    ext = Path(path).suffix.lower()
    Image.init()
    fmt = Image.registered_extensions().get(ext)
    if fmt is None or fmt not in Image.SAVE:
        raise SlimfastError(f"cannot tell the output format from {path!r}; use .png, .jpg, .webp, ... or --format")
    return fmt


def cmd_decompress(args) -> int:
    from .codec import decompress

    settings = _settings(args, bf16_parts=("synthesis",))
    if args.output != "-" and _same_file(args.input, Path(args.output)):
        raise SlimfastError(f"refusing to overwrite the input {args.input}")
    fmt = _output_format(args.output, args.format)
    if args.output != "-":
        _check_target(Path(args.output), args.force)
    data = _read_sfi(args.input)
    t0 = time.perf_counter()
    img = decompress(data, settings=settings)
    dt = time.perf_counter() - t0
    _write_output(args.output, _encode(img, fmt), args.force)
    if args.output != "-" and not args.quiet:
        print(f"{args.input} -> {args.output}: {img.size[0]}x{img.size[1]} {img.mode}, {dt * 1000:.0f} ms",
              file=sys.stderr)
    return 0


def _encode(img, fmt: str) -> bytes:
    if fmt in ("JPEG", "BMP", "PPM") and img.mode in ("RGBA", "LA"):
        raise SlimfastError(f"{fmt} cannot store the alpha channel of this {img.mode} image; use .png or .webp")
    params = {}
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    if fmt == "JPEG":
        params["quality"] = 95
    meta = _metadata_params(img, fmt)
    if meta:
        try:  # metadata a format cannot hold (JPEG's 64 KiB segments) is dropped, not an error
            return _save(img, fmt, {**params, **meta})
        except (OSError, ValueError, KeyError):
            pass
    try:
        return _save(img, fmt, params)
    except (OSError, ValueError, KeyError) as exc:
        raise SlimfastError(f"cannot write {fmt}: {exc}") from None


def _save(img, fmt: str, params: dict) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **params)
    return buf.getvalue()


def _metadata_params(img, fmt: str) -> dict:
    """Pillow save parameters carrying the decoded image's EXIF and XMP into ``fmt``, where it
    holds them: PNG (eXIf, XMP as iTXt), JPEG and WebP (both), TIFF (EXIF); elsewhere none."""
    exif, xmp = img.info.get("exif"), img.info.get("xmp")
    params = {}
    if exif and fmt in ("PNG", "JPEG", "WEBP", "TIFF"):
        params["exif"] = exif
    if xmp and fmt in ("JPEG", "WEBP"):
        params["xmp"] = xmp
    elif xmp and fmt == "PNG":
        from PIL.PngImagePlugin import PngInfo

        try:
            text = xmp.decode("utf-8")
        except UnicodeDecodeError:
            return params
        info = PngInfo()
        info.add_itxt("XML:com.adobe.xmp", text, zip=False)
        params["pnginfo"] = info
    return params


def cmd_info(args) -> int:
    from .format import container

    data = _read_sfi(args.file)
    hdr = container.unpack(data)
    d = {"file": args.file, "model": hdr.model, "version": hdr.weights_version,
         "weights_id": hdr.weights_id.hex(), "width": hdr.width, "size": list(hdr.image_size),
         "mode": hdr.mode, "bytes": hdr.total_bytes, "bpp": round(hdr.bpp, 6),
         "streams": [len(s) for s in hdr.streams], "alpha_bytes": len(hdr.alpha) if hdr.alpha else 0,
         "icc_bytes": len(hdr.icc) if hdr.icc else 0, "format": hdr.format_version,
         "chunks": [printable(kind) for kind, _ in hdr.chunks]}
    if args.json:  # json.dumps escapes control and non-ASCII characters: the header's text is safe there
        _print(json.dumps(d, indent=2))
    else:
        for k in ("model", "version", "width", "size", "mode", "bytes", "bpp", "format"):
            v = "x".join(map(str, d[k])) if k == "size" else d[k]
            _print(f"{k:8s} {printable(v)}")  # model and version are the file's text: never raw
    return 0


def cmd_models(args) -> int:
    from .settings import Settings
    from .zoo import list_models

    path = Settings.from_env().model_path
    models = list_models(model_path=path)
    if args.json:
        from .zoo import versions_of

        _print(json.dumps([{**m.public(), "installed_versions": versions_of(m.name, model_path=path)} for m in models],
                          indent=2))
        return 0
    if not models:
        _print("no models installed")
        return 1
    from .zoo import family_members

    _print(f"{'name':24s} {'v':>2s} {'family':18s} {'quality':>7s} {'width':>5s} {'bpp':>7s} {'PSNR':>6s}  params  steps")
    for m in models:
        members = [x.name for x in family_members(m, model_path=path)]
        q = _quality_text(members.index(m.name), len(members)) if not m.widths else "-"
        for p in (m.points or [{}]):
            if m.widths and p.get("width") in m.widths:
                q = _quality_text(sorted(m.widths).index(p["width"]), len(m.widths))
            star = "*" if m.default and (not m.widths or p.get("width") == m.default_width) else " "
            bpp = f"{p['bpp']:.3f}" if p.get("bpp") is not None else "-"
            psnr = f"{p['psnr']:.2f}" if p.get("psnr") is not None else "-"
            width = p.get("width") or "-"
            _print(f"{star}{m.name:23s} {m.version:>2s} {m.family:18s} {q:>7s} {width!s:>5s} {bpp:>7s} {psnr:>6s} "
                   f"{m.params / 1e6:5.2f}M {m.train_steps:6d}")
    _print("\n* default model (at its default width). bpp/PSNR: mean over Kodak, measured from real files.\n"
           "quality: the --quality values (0 to 100) that pick the point within its family; --width W a slimmable width.\n"
           "v: the current weights version; older versions stay installed so their files decode "
           "(--model NAME@N uses one).")
    if args.details:
        from .errors import require_torch

        require_torch("slimfast models --details (it builds the networks to count their operations)")
        from .tools.complexity import report

        report(models)
    return 0


def _quality_text(index: int, n: int) -> str:
    from .codec import quality_range

    low, high = quality_range(index, n)
    return f"{low:.0f}-{high:.0f}"


def cmd_demo(args) -> int:
    import numpy as np

    from .codec import decompress, load
    from .format.imageio import open_image

    settings = _settings(args, bf16_parts=("analysis", "synthesis"))  # the demo codes both ways
    path = args.image or str(Path(__file__).parent / "data" / "kodim23.png")
    img = open_image(path, settings.max_pixels)
    codec = load(args.model, settings=settings)
    codec.compress(img, quality=args.quality)  # warm-up: first call pays for lazy imports
    t0 = time.perf_counter()
    data = codec.compress(img, quality=args.quality)
    encode_s = time.perf_counter() - t0
    decompress(data, settings=settings)  # warm-up: the decoder's graph is built (or loaded) on first use
    t0 = time.perf_counter()
    rec = decompress(data, settings=settings)
    decode_s = time.perf_counter() - t0
    w, h = img.size
    a = img.rgb.astype(np.float64)
    b = np.asarray(rec.convert("RGB"), dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    psnr = 10 * np.log10(255 ** 2 / mse) if mse > 0 else float("inf")
    out = None
    if args.output:
        _write_atomic(Path(args.output), data, args.force)
        out = args.output
    _print(f"image    {path} ({w}x{h} {img.mode})")
    from .codec import backend

    from .zoo import get as model_info

    point = codec.resolve(args.quality, None)  # the operating point the file was made with
    info = model_info(point.model, model_path=settings.model_path)
    where = f", width {point.width}" if point.width else ""
    synth = (", int8 synthesis" if getattr(args, "int8", False) else
             ", bf16 analysis and synthesis (OpenVINO)" if getattr(args, "bf16", False) else "")
    _print(f"model    {point.model}{where} (v{info.version}), {backend(settings, info.architecture)} backend{synth}")
    _print(f"size     {len(data)} bytes" + (f" -> {out}" if out else ""))
    _print(f"bpp      {len(data) * 8 / (w * h):.4f}")
    _print(f"PSNR     {psnr:.2f} dB")
    _print(f"encode   {encode_s * 1000:.0f} ms")
    _print(f"decode   {decode_s * 1000:.0f} ms")
    return 0


def cmd_train(argv: list[str]) -> int:
    from .tools.train import main

    return main(argv)


def _torch_or_exit(command: str) -> int:
    from .errors import require_torch

    return _guard(lambda: require_torch(f"slimfast {command}"))


# Long on purpose: one declaration per option, read top to bottom like `--help` itself.
def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="slimfast", description="slimfast: learned image compression in real time on CPU. "
                f"Default model: {_default_model_text()}; quality (-q) runs from 0 to 100, higher is better.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"slimfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    default_model = _default_model_text()

    def model_option(sp):
        sp.add_argument("-m", "--model", default=None, metavar="NAME",
                        help="model or family name from `slimfast models` (a family: its default model); "
                             f"default: {default_model}")

    def quality_option(sp):
        sp.add_argument("-q", "--quality", type=_quality_arg, default=None, metavar="Q",
                        help="0 to 100, higher is better, fractions allowed: picks one of the model family's n "
                             "operating points (rate points, or a slimmable model's widths) evenly, point "
                             "floor(Q / 100 * n) from the smallest file (100: the largest). Default: the model's own point")

    def common_threads(sp):
        sp.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the networks, N >= 1 (default: all cores)")

    def max_pixels_option(sp, what: str, why: str):
        from .settings import DEFAULT_MAX_PIXELS

        sp.add_argument("--max-pixels", type=int, default=None, metavar="N",
                        help=f"largest {what}, in pixels, N >= 1 (default: SLIMFAST_MAX_PIXELS, else "
                             f"{DEFAULT_MAX_PIXELS}); {why}")

    def int8_option(sp, bf16_both: bool = False):
        g = sp.add_mutually_exclusive_group()
        g.add_argument("--int8", action="store_true",
                       help="decode with int8 synthesis: faster, at the small PSNR cost the model card records "
                            "(int8_synthesis); the decoded symbols are the same. `slimfast models --json` shows which "
                            "models are calibrated for it (int8_synthesis: null where not) and at what cost")
        g.add_argument("--bf16", action="store_true",
                       help=("encode and decode with bf16 analysis and synthesis" if bf16_both else
                             "decode with bf16 synthesis") + " on OpenVINO (pip install 'slimfast[openvino]'; a CPU "
                            "with AVX-512 BF16 or AMX): faster, at the small cost RESULTS.md measures ('bf16')"
                            + ("" if bf16_both else "; the decoded symbols are the same"))

    c = sub.add_parser("compress", help="image(s) -> .sfi", usage="slimfast compress [options] IN [IN ...] OUT",
                       epilog=(
        "examples:\n  slimfast compress photo.png photo.sfi\n  slimfast compress photo.png photo.sfi -q 0\n"
        "  slimfast compress *.png out/ --quality 75\n  slimfast compress photo.png x.sfi --max-bytes 30000\n"
        "  slimfast compress - - < photo.png > photo.sfi"), description=(
        "Compress images to .sfi. The last path is the output: a file, a folder (for several "
        "inputs), or - for stdout. Use - as the input to read stdin."), formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("inputs", nargs="+", metavar="PATH", help="input images, then the output (.sfi file, folder or -)")
    model_option(c)
    quality_option(c)
    c.add_argument("-w", "--width", type=int, default=None, metavar="W",
                   help="latent channels of a slimmable model: one of its widths (48 72 96 144 192 for the bundled ones)")
    c.add_argument("--max-bytes", type=int, default=None, metavar="N",
                   help="N >= 1: the largest file of the family's operating points that fits N bytes; "
                        "an error (nothing written) if none does. Not with -q or --width")
    c.add_argument("--target-bpp", type=float, default=None, metavar="X",
                   help="X > 0: as --max-bytes, for at most X bits per pixel")
    c.add_argument("--metadata", choices=("all", "icc", "none"), default="all",
                   help="what to keep besides pixels: all (ICC profile, EXIF with orientation reset to 1, XMP; "
                        "the default), icc (ICC profile only: EXIF may hold the GPS location) or none")
    c.add_argument("--first-frame", action="store_true",
                   help="code an animated image's (GIF, WebP, APNG) first frame; without it one is refused, "
                        "since a .sfi file stores one frame")
    c.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    talk = c.add_mutually_exclusive_group()
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="a line per file: bytes, bpp, size, time (a single file prints it anyway)")
    talk.add_argument("--quiet", action="store_true", help="print nothing on success (errors still print their line)")
    c.add_argument("--bf16", action="store_true",
                   help="run the analysis in bf16 on OpenVINO (pip install 'slimfast[openvino]'; a CPU with AVX-512 "
                        "BF16 or AMX): faster encoding, a slightly different file at the bpp/PSNR change RESULTS.md "
                        "measures ('bf16'); every decoder reads it")
    common_threads(c)
    max_pixels_option(c, "input image",
                      "a larger one is refused before it is read (its file would need a higher limit to decode)")
    c.set_defaults(func=cmd_compress)

    d = sub.add_parser("decompress", help=".sfi -> image", description=(
        "Decompress a .sfi file. The output format follows the extension (png, jpg, webp, tiff, bmp, ...); "
        "- writes PNG to stdout. The file names the model it needs."))
    d.add_argument("input", metavar="IN")
    d.add_argument("output", metavar="OUT")
    d.add_argument("--format", default=None, help="output format when the extension says nothing (e.g. PNG)")
    d.add_argument("-f", "--force", action="store_true", help="overwrite an existing output")
    d.add_argument("--quiet", action="store_true")
    common_threads(d)
    max_pixels_option(d, "image to decode", "a file above it is refused before decoding, "
                                             "so that a hostile header cannot take all memory")
    int8_option(d)
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe a .sfi file",
                       description="Show a .sfi file's model, version, width, size, mode, bytes, bpp and format.")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list bundled models",
                       description="List the bundled models, their families, widths and measured Kodak rate-distortion points.")
    m.add_argument("--json", action="store_true", help="machine-readable output (one object per model)")
    m.add_argument("--details", action="store_true", help="complexity per width: parameters, kMAC/pixel")
    m.set_defaults(func=cmd_models)

    dm = sub.add_parser("demo", help="compress + decompress the bundled sample photo and report", description=(
        "The main job: compress and decompress a photo (default: the bundled kodim23.png) with the "
        "default model, then print size, bpp, PSNR and times."))
    dm.add_argument("image", nargs="?", default=None)
    model_option(dm)
    quality_option(dm)
    dm.add_argument("-o", "--output", default=None, metavar="FILE.sfi", help="also keep the compressed file")
    dm.add_argument("-f", "--force", action="store_true")
    common_threads(dm)
    int8_option(dm, bf16_both=True)
    dm.set_defaults(func=cmd_demo)

    for name, helptext in (("train", "train a model (see slimfast train --help)"),
                           ("evaluate", "RD evaluation against JPEG/WebP/AVIF/HEIC/JPEG 2000/JPEG XL"),
                           ("bench", "latency benchmark against traditional codecs"),
                           ("schedule", "joint multi-width training with lambda scheduling (slimmable models)"),
                           ("report", "regenerate RESULTS.md (evaluate + bench)")):
        sp = sub.add_parser(name, help=helptext, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("train", "schedule"):
        if _torch_or_exit(argv[0]):
            return 1
    if argv and argv[0] == "train":
        return cmd_train(argv[1:])
    if argv and argv[0] == "schedule":
        from .tools.schedule import main as schedule_main

        return schedule_main(argv[1:])
    if argv and argv[0] == "report":
        from .tools.report import main as report_main

        return report_main(argv[1:])
    if argv and argv[0] in ("evaluate", "bench"):
        try:
            mod = __import__(f"slimfast.{argv[0]}", fromlist=["run"])
        except ImportError as exc:
            print(f"slimfast: error: {argv[0]} needs the eval extra: pip install 'slimfast[eval]' ({exc})", file=sys.stderr)
            return 1
        sp = _Parser(prog=f"slimfast {argv[0]}", description=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
        mod.add_arguments(sp)
        args = sp.parse_args(argv[1:])
        return _guard(lambda: mod.run(args))
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return _guard(lambda: args.func(args), signals=True)


def _guard(fn, signals: bool = False) -> int:
    """Run a command: every failure is one line on stderr and an exit status, never a traceback.
    With ``signals``, SIGTERM, SIGINT and SIGHUP end it cleanly (see :func:`_signals_handled`)."""
    try:
        with _signals_handled() if signals else contextlib.nullcontext():
            code = int(fn() or 0)
            _flush_stdout()
            return code
    except SlimfastError as exc:
        print(_error_line(exc), file=sys.stderr)
        return 1
    except _Signalled as exc:
        print(f"slimfast: interrupted ({signal.Signals(exc.signum).name})", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("slimfast: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("slimfast: error: out of memory", file=sys.stderr)
        return 1
    except OSError as exc:  # one that no file operation above named (most do)
        print(_error_line(_os_text(exc)), file=sys.stderr)
        return 1


def _flush_stdout() -> None:
    """What the command printed, written now: a closed pipe or a full disk is then this command's
    one-line error, not a traceback at interpreter exit."""
    try:
        sys.stdout.flush()
    except OSError as exc:
        _stdout_failed(exc)


def _error_line(message) -> str:
    # Messages quote headers, file names and model cards: control characters (ANSI escapes,
    # newlines forging a second line) are escaped, so that the line is exactly one line.
    return f"slimfast: error: {printable(message, limit=2000, ascii_only=False)}"


def _os_text(exc: OSError) -> str:
    if exc.filename is None and isinstance(exc, BrokenPipeError):  # the one pipe the commands write to
        return f"cannot write to stdout: {_os_reason(exc)}"
    return f"{exc.filename}: {_os_reason(exc)}" if exc.filename else _os_reason(exc)


class _Signalled(BaseException):
    """Raised by :func:`_on_signal`: a BaseException, so that no ``except Exception`` stops it."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    for tmp in list(_TEMPS):  # the writes' finally blocks remove them too; this does not depend on them
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    raise _Signalled(signum)


@contextlib.contextmanager
def _signals_handled():
    """SIGTERM, SIGINT and SIGHUP remove the temporary files of writes in progress and end the
    command with status 128 + the signal's number (kill -9 cannot be caught: the next write into
    that folder removes what it left). A signal the caller ignores (nohup) stays ignored."""
    sigs = [getattr(signal, n) for n in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, n)]
    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    saved = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        if saved[s] is not signal.SIG_IGN:
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        for s, h in saved.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


if __name__ == "__main__":
    sys.exit(main())
