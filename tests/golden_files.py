"""Golden files: what every shipped operating point writes, and what its files decode to.

The golden set pins the codec's output while its structure changes:

* ``tests/golden/<image>/<point>.sfi``: the file each shipped model (every width) writes for
  the bundled sample and two small Kodak crops, encoded with ONNX Runtime on one thread;
* ``tests/golden/legacy-range/<image>/<point>.sfi``: the same files as written before the rANS
  coder (range-coded, no ``LAYT`` chunk): they must go on decoding, to the same symbols as the
  current files and the same pixels; nothing writes them any more, so they are never regenerated;
* ``manifest.json``: per file, the SHA-256 of the symbols it decodes to (identical on every
  machine, engine and thread count: always checked), and, per machine fingerprint (CPU flags
  and library versions), the SHA-256 of the file each engine and thread count encodes and of
  the pixels each decodes (float arithmetic: checked only on a machine with that fingerprint).

The list changes only in a commit that ships a new model version or format, and says so::

    python -m tests.golden_files --write            # regenerate (the machine's fingerprint)
    python -m tests.golden_files --engine ort --threads 2   # one configuration's hashes as JSON

Each configuration runs in its own process: engine and thread count are process settings.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOLDEN = Path(__file__).resolve().parent / "golden"
MANIFEST = GOLDEN / "manifest.json"
LEGACY = "legacy-range"  # files of an older coder: decoded and pinned, never re-encoded
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
KODAK = ROOT.parent / "shared" / "data" / "kodak"
# (name, source, box): odd sizes, so that padding and cropping are part of what is pinned.
IMAGES = (("sample", SAMPLE, None),
          ("kodim01-crop", KODAK / "kodim01.png", (200, 120, 200 + 232, 120 + 152)),
          ("kodim15-crop", KODAK / "kodim15.png", (300, 180, 300 + 168, 180 + 116)))
CONFIGS = (("ort", 1), ("ort", 2), ("torch", 1), ("torch", 2))
_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
          "avx_vnni", "amx_bf16", "amx_int8", "amx_tile")


def fingerprint() -> str:
    """The machine and libraries that float results depend on, as one short string."""
    flags = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    from importlib.metadata import PackageNotFoundError, version

    libs = []
    for dist in ("onnxruntime", "torch", "numpy"):
        try:
            libs.append(f"{dist}={version(dist)}")
        except PackageNotFoundError:
            libs.append(f"{dist}=-")
    have = [f for f in _FLAGS if f in flags]
    return f"{platform.machine()} {'+'.join(have)} {' '.join(libs)}"


def points() -> list[tuple[str, int | None]]:
    """Every shipped operating point: (model, width or None); bundled models only."""
    from slimfast import zoo

    out = []
    for m in zoo.list_models():  # no model_path: SLIMFAST_MODEL_PATH's folders are not shipped
        out += [(m.name, w) for w in sorted(m.widths)] if m.widths else [(m.name, None)]
    return out


def point_name(model: str, width: int | None) -> str:
    return model if width is None else f"{model}-w{width}"


def load_image(source: Path, box):
    from PIL import Image

    with Image.open(source) as im:
        im = im.convert("RGB")
        return im.crop(box) if box else im.copy()


def symbols_sha256(symbols: dict) -> str:
    """One hash over every symbol array, in key order, with its shape (int32 little-endian)."""
    import numpy as np

    h = hashlib.sha256()
    for key in sorted(symbols):
        a = np.ascontiguousarray(np.asarray(symbols[key]).astype("<i4"))
        h.update(f"{key}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def pixels_sha256(image) -> str:
    import numpy as np

    a = np.ascontiguousarray(np.asarray(image))
    return hashlib.sha256(f"{image.mode}{a.shape}".encode() + a.tobytes()).hexdigest()


def decode_symbols(data: bytes) -> dict:
    """The symbols a file decodes to, with the engine this process runs."""
    from slimfast import codec

    return codec.decode_symbols(data)


def golden_files() -> list[Path]:
    return sorted(GOLDEN.glob("*/*.sfi")) + sorted((GOLDEN / LEGACY).glob("*/*.sfi"))


def current_of(rel: str) -> str:
    """The current golden file a legacy one (``legacy-range/<image>/<point>.sfi``) is a copy of."""
    return rel.split("/", 1)[1] if rel.startswith(LEGACY + "/") else rel


def measure(images=IMAGES) -> dict:
    """This process's hashes: every golden file decoded, every source image encoded."""
    import slimfast

    out = {"decode": {}, "encode": {}}
    for path in golden_files():
        data = path.read_bytes()
        rel = str(path.relative_to(GOLDEN))
        out["decode"][rel] = {"symbols": symbols_sha256(decode_symbols(data)),
                              "pixels": pixels_sha256(slimfast.decompress(data))}
    for name, source, box in images:
        if not source.is_file():
            continue
        img = load_image(source, box)
        for model, width in points():
            data = slimfast.load(model).compress(img, width=width)
            out["encode"][f"{name}/{point_name(model, width)}.sfi"] = hashlib.sha256(data).hexdigest()
    return out


def run_config(engine: str, threads: int) -> dict:
    """:func:`measure` in a fresh process with this engine and thread count."""
    env = dict(os.environ, SLIMFAST_BACKEND=engine, SLIMFAST_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    env.pop("SLIMFAST_MODEL_PATH", None)
    res = subprocess.run([sys.executable, "-m", "tests.golden_files", "--engine", engine, "--threads", str(threads)],
                         cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    if res.returncode:
        raise RuntimeError(f"golden measurement ({engine}, {threads} threads) failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout)


def write() -> None:
    """Regenerate the golden files and the manifest on this machine."""
    os.environ.update(SLIMFAST_BACKEND="ort", SLIMFAST_THREADS="1")
    import slimfast

    for name, source, box in IMAGES:
        if not source.is_file():
            raise SystemExit(f"{source} is missing: the golden set needs ../shared/data/kodak")
        img = load_image(source, box)
        (GOLDEN / name).mkdir(parents=True, exist_ok=True)
        for old in (GOLDEN / name).glob("*.sfi"):
            old.unlink()
        for model, width in points():
            (GOLDEN / name / f"{point_name(model, width)}.sfi").write_bytes(slimfast.load(model).compress(img, width=width))
    fp = fingerprint()
    results = {f"{e}-{t}": run_config(e, t) for e, t in CONFIGS}
    files = {}
    for path in golden_files():
        rel = str(path.relative_to(GOLDEN))
        syms = {r["decode"][rel]["symbols"] for r in results.values()}
        if len(syms) != 1:
            raise SystemExit(f"{rel}: engines disagree on the decoded symbols")
        files[rel] = {"symbols": syms.pop(),
                      "pixels": {fp: {k: r["decode"][rel]["pixels"] for k, r in results.items()}}}
        if rel != current_of(rel):
            continue
        files[rel]["encoded"] = {fp: {k: r["encode"][rel] for k, r in results.items()}}
    MANIFEST.write_text(json.dumps({"fingerprints": [fp], "files": files}, indent=1, sort_keys=True) + "\n")
    print(f"{len(files)} golden files, fingerprint {fp}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--write", action="store_true", help="regenerate the golden files and manifest")
    ap.add_argument("--engine", choices=("ort", "torch"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    if args.write:
        write()
        return
    if args.engine == "torch":
        import torch

        torch.set_num_threads(args.threads)
    json.dump(measure(), sys.stdout)


if __name__ == "__main__":
    main()
