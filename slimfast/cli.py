"""The ``slimfast`` command line.

Every user mistake ends with one line on stderr (``slimfast: error: ...``) and a non-zero exit
status, never a traceback. Outputs are written atomically (temporary file, then rename) and an
existing file is only replaced with ``--force``.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

# The integer hyper-synthesis GEMMs are small: one BLAS thread is fastest, and many times faster
# when the cores are busy (measured). Must be set before numpy loads; the user's setting wins.
# This configures a library (OpenBLAS reads it), not slimfast: slimfast's own settings are a
# Settings built once per command (_settings) and passed to the API, never written to the environment.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from . import __version__  # noqa: E402
from .errors import SlimfastError

EPILOG = """\
examples:
  slimfast demo                                  compress + decompress the bundled photo
  slimfast compress photo.png photo.sfi          default model and quality
  slimfast compress photo.png photo.sfi -q 1     smallest file of the default model's family
  slimfast compress a.png b.jpg out/             several inputs into a folder
  slimfast compress photo.png small.sfi --max-bytes 20000
  slimfast decompress photo.sfi photo.png        output format from the extension
  cat photo.png | slimfast compress - - > photo.sfi
  slimfast info photo.sfi
  slimfast models                                what --model and --quality accept
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit status 2, like argparse but without the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def _write_atomic(path: Path, data: bytes, force: bool) -> None:
    """Write via a temporary file in the target folder; never replace without ``force``."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SlimfastError(f"output directory does not exist: {parent}")
    if path.exists() and not force:
        raise SlimfastError(f"{path} exists (use --force to overwrite)")
    if path.is_dir():
        raise SlimfastError(f"{path} is a directory")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
    except OSError as exc:
        raise SlimfastError(f"cannot write to {parent}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if force:
            os.replace(tmp, path)
        else:
            try:
                os.link(tmp, path)  # fails if path appeared meanwhile: no silent overwrite
            except FileExistsError:
                raise SlimfastError(f"{path} exists (use --force to overwrite)") from None
            except OSError:
                os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_input(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read()
    p = Path(name)
    if not p.exists():
        raise SlimfastError(f"no such file: {name}")
    if p.is_dir():
        raise SlimfastError(f"is a directory: {name}")
    try:
        return p.read_bytes()
    except PermissionError:
        raise SlimfastError(f"permission denied: {name}") from None
    except OSError as exc:
        raise SlimfastError(f"cannot read {name}: {exc.strerror}") from None


def _same_file(a: str, b: Path) -> bool:
    try:
        return a != "-" and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _settings(args, bf16_parts: tuple[str, ...] = ()):
    """The environment's settings with this command's flags applied (a flag wins): ``--threads``,
    ``--int8`` (int8 synthesis) and ``--bf16`` (bf16 for ``bf16_parts``: analysis, synthesis)."""
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
    from .imageio import open_image

    settings = _settings(args, bf16_parts=("analysis",))
    inputs, out = args.inputs[:-1], args.inputs[-1]
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
    codec = load(args.model, settings=settings)
    if args.width is not None and not codec.widths:
        raise SlimfastError(f"--width applies to slimmable models only; {codec.name} is not slimmable "
                            f"(use --quality, or pick a slimmable model from `slimfast models`)")
    jobs = [(i, Path(out) / (Path(i).stem + ".sfi") if many else out) for i in inputs]
    for i, o in jobs:
        if o != "-" and _same_file(i, Path(o)):
            raise SlimfastError(f"refusing to overwrite the input {i}")
        if o != "-" and Path(o).exists() and not args.force:
            raise SlimfastError(f"{o} exists (use --force to overwrite)")
    bar = None
    if many:
        from tqdm import tqdm

        bar = tqdm(total=len(jobs), unit="img", file=sys.stderr, disable=args.quiet)
    failures = 0
    for i, o in jobs:
        try:
            raw = _read_input(i)
            img = open_image(io.BytesIO(raw)) if raw else None
            if img is None:
                raise SlimfastError(f"empty input: {i}")
            t0 = time.perf_counter()
            data = codec.compress(img, quality=args.quality, width=args.width,
                                  max_bytes=args.max_bytes, target_bpp=args.target_bpp)
            dt = time.perf_counter() - t0
            if o == "-":
                sys.stdout.buffer.write(data)
                sys.stdout.buffer.flush()
            else:
                _write_atomic(Path(o), data, args.force)
            w, h = img.size
            if not args.quiet and o != "-" and not many:
                print(f"{i} -> {o}: {len(data)} bytes, {len(data) * 8 / (w * h):.4f} bpp, "
                      f"{w}x{h}, {dt * 1000:.0f} ms", file=sys.stderr)
        except SlimfastError as exc:
            if not many:
                raise
            failures += 1
            print(f"slimfast: error: {i}: {exc}", file=sys.stderr)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return 1 if failures else 0


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
        out = Path(args.output)
        if not (out.parent if str(out.parent) else Path(".")).is_dir():
            raise SlimfastError(f"output directory does not exist: {out.parent}")
        if out.exists() and not args.force:
            raise SlimfastError(f"{out} exists (use --force to overwrite)")
    data = _read_input(args.input)
    t0 = time.perf_counter()
    img = decompress(data, settings=settings)
    dt = time.perf_counter() - t0
    if fmt in ("JPEG", "BMP", "PPM") and img.mode in ("RGBA", "LA"):
        raise SlimfastError(f"{fmt} cannot store the alpha channel of this {img.mode} image; use .png or .webp")
    buf = io.BytesIO()
    params = {}
    if img.info.get("icc_profile"):
        params["icc_profile"] = img.info["icc_profile"]
    if fmt == "JPEG":
        params["quality"] = 95
    try:
        img.save(buf, format=fmt, **params)
    except (OSError, ValueError, KeyError) as exc:
        raise SlimfastError(f"cannot write {fmt}: {exc}") from None
    if args.output == "-":
        sys.stdout.buffer.write(buf.getvalue())
        sys.stdout.buffer.flush()
    else:
        _write_atomic(Path(args.output), buf.getvalue(), args.force)
        if not args.quiet:
            print(f"{args.input} -> {args.output}: {img.size[0]}x{img.size[1]} {img.mode}, {dt * 1000:.0f} ms",
                  file=sys.stderr)
    return 0


def cmd_info(args) -> int:
    from . import container

    data = _read_input(args.file)
    hdr = container.unpack(data)
    d = {"file": args.file, "model": hdr.model, "version": hdr.weights_version,
         "weights_id": hdr.weights_id.hex(), "width": hdr.width, "size": list(hdr.image_size),
         "mode": hdr.mode, "bytes": hdr.total_bytes, "bpp": round(hdr.bpp, 6),
         "streams": [len(s) for s in hdr.streams], "alpha_bytes": len(hdr.alpha) if hdr.alpha else 0,
         "icc_bytes": len(hdr.icc) if hdr.icc else 0}
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        for k in ("model", "version", "width", "size", "mode", "bytes", "bpp"):
            v = "x".join(map(str, d[k])) if k == "size" else d[k]
            print(f"{k:8s} {v}")
    return 0


def cmd_models(args) -> int:
    from .settings import Settings
    from .zoo import list_models

    path = Settings.from_env().model_path
    models = list_models(model_path=path)
    if args.json:
        from .zoo import versions_of

        print(json.dumps([{**m.public(), "installed_versions": versions_of(m.name, model_path=path)} for m in models],
                         indent=2))
        return 0
    if not models:
        print("no models installed")
        return 1
    from .zoo import family_members

    print(f"{'name':24s} {'v':>2s} {'family':18s} {'q':>2s} {'width':>5s} {'bpp':>7s} {'PSNR':>6s}  params  steps")
    for m in models:
        q = [x.name for x in family_members(m, model_path=path)].index(m.name) + 1 if not m.widths else "-"
        for p in (m.points or [{}]):
            if m.widths and p.get("width") in m.widths:
                q = sorted(m.widths).index(p["width"]) + 1
            star = "*" if m.default and (not m.widths or p.get("width") == m.default_width) else " "
            bpp = f"{p['bpp']:.3f}" if p.get("bpp") is not None else "-"
            psnr = f"{p['psnr']:.2f}" if p.get("psnr") is not None else "-"
            width = p.get("width") or "-"
            print(f"{star}{m.name:23s} {m.version:>2s} {m.family:18s} {q!s:>2s} {width!s:>5s} {bpp:>7s} {psnr:>6s} "
                  f"{m.params / 1e6:5.2f}M {m.train_steps:6d}")
    print("\n* default model (at its default width). bpp/PSNR: mean over Kodak, measured from real files.\n"
          "--quality Q picks the Q-th rate point of a family (1 = smallest file); --width a slimmable width.\n"
          "v: the current weights version; older versions stay installed so their files decode "
          "(--model NAME@N uses one).")
    if args.details:
        from .errors import require_torch

        require_torch("slimfast models --details (it builds the networks to count their operations)")
        from .complexity import report

        report(models)
    return 0


def cmd_demo(args) -> int:
    import numpy as np

    from .codec import decompress, load
    from .imageio import open_image

    settings = _settings(args, bf16_parts=("analysis", "synthesis"))  # the demo codes both ways
    path = args.image or str(Path(__file__).parent / "data" / "kodim23.png")
    img = open_image(path)
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
    print(f"image    {path} ({w}x{h} {img.mode})")
    from .codec import backend

    from .zoo import get as model_info

    point = codec.resolve(args.quality, None)  # the operating point the file was made with
    info = model_info(point.model, model_path=settings.model_path)
    where = f", width {point.width}" if point.width else ""
    synth = (", int8 synthesis" if getattr(args, "int8", False) else
             ", bf16 analysis and synthesis (OpenVINO)" if getattr(args, "bf16", False) else "")
    print(f"model    {point.model}{where} (v{info.version}), {backend(settings, info.architecture)} backend{synth}")
    print(f"size     {len(data)} bytes" + (f" -> {out}" if out else ""))
    print(f"bpp      {len(data) * 8 / (w * h):.4f}")
    print(f"PSNR     {psnr:.2f} dB")
    print(f"encode   {encode_s * 1000:.0f} ms")
    print(f"decode   {decode_s * 1000:.0f} ms")
    return 0


def cmd_train(argv: list[str]) -> int:
    from .train import main

    return main(argv)


def _torch_or_exit(command: str) -> int:
    from .errors import require_torch

    return _guard(lambda: require_torch(f"slimfast {command}"))


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="slimfast", description="slimfast: learned image compression in real time on CPU.",
                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"slimfast {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common_threads(sp):
        sp.add_argument("--threads", type=int, default=None, metavar="N",
                        help="CPU threads for the networks (default: all cores)")

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
        "examples:\n  slimfast compress photo.png photo.sfi\n  slimfast compress photo.png photo.sfi -q 1\n"
        "  slimfast compress *.png out/ --quality 3\n  slimfast compress photo.png x.sfi --max-bytes 30000\n"
        "  slimfast compress - - < photo.png > photo.sfi"), description=(
        "Compress images to .sfi. The last path is the output: a file, a folder (for several "
        "inputs), or - for stdout. Use - as the input to read stdin."), formatter_class=argparse.RawDescriptionHelpFormatter)
    c.add_argument("inputs", nargs="+", metavar="PATH", help="input images, then the output (.sfi file, folder or -)")
    c.add_argument("-m", "--model", default=None, metavar="NAME", help="model name from `slimfast models` (default: the default model)")
    c.add_argument("-q", "--quality", type=int, default=None, metavar="Q",
                   help="operating point within the model's family, 1 = smallest file (a rate point, or a width of a slimmable model)")
    c.add_argument("-w", "--width", type=int, default=None, metavar="W", help="latent channels of a slimmable model")
    c.add_argument("--max-bytes", type=int, default=None, metavar="N", help="largest file that fits N bytes (best quality that fits)")
    c.add_argument("--target-bpp", type=float, default=None, metavar="X", help="largest file of at most X bits per pixel")
    c.add_argument("-f", "--force", action="store_true", help="overwrite existing outputs")
    c.add_argument("--quiet", action="store_true", help="print nothing on success")
    c.add_argument("--bf16", action="store_true",
                   help="run the analysis in bf16 on OpenVINO (pip install 'slimfast[openvino]'; a CPU with AVX-512 "
                        "BF16 or AMX): faster encoding, a slightly different file at the bpp/PSNR change RESULTS.md "
                        "measures ('bf16'); every decoder reads it")
    common_threads(c)
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
    int8_option(d)
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe a .sfi file", description="Show a .sfi file's model, version, width, size, mode, bytes and bpp.")
    i.add_argument("file", metavar="FILE")
    i.add_argument("--json", action="store_true", help="machine-readable output")
    i.set_defaults(func=cmd_info)

    m = sub.add_parser("models", help="list bundled models", description="List the bundled models, their families, widths and measured Kodak rate-distortion points.")
    m.add_argument("--json", action="store_true", help="machine-readable output (one object per model)")
    m.add_argument("--details", action="store_true", help="complexity per width: parameters, kMAC/pixel")
    m.set_defaults(func=cmd_models)

    dm = sub.add_parser("demo", help="compress + decompress the bundled sample photo and report", description=(
        "The main job: compress and decompress a photo (default: the bundled kodim23.png) with the "
        "default model, then print size, bpp, PSNR and times."))
    dm.add_argument("image", nargs="?", default=None)
    dm.add_argument("-m", "--model", default=None, metavar="NAME")
    dm.add_argument("-q", "--quality", type=int, default=None, metavar="Q")
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
        from .schedule import main as schedule_main

        return schedule_main(argv[1:])
    if argv and argv[0] == "report":
        from .report import main as report_main

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
    return _guard(lambda: args.func(args))


def _guard(fn) -> int:
    try:
        return int(fn() or 0)
    except SlimfastError as exc:
        print(f"slimfast: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("slimfast: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 1
    except MemoryError:
        print("slimfast: error: out of memory", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
