#!/usr/bin/env python
"""Pack a compact training set that can travel with the repository (e.g. to a lent GPU).

    python scripts/pack_trainset.py                      # -> data/trainset/ (git-ignored)
    python scripts/pack_trainset.py --src ../shared/data/train --out data/trainset --max-mb 25

The default budget is what the lent GPU machine takes (64 MiB with the repository) minus the
repository's files (tracked, or untracked and not ignored) and 1 MiB of margin, so the two always travel together.

Contents: BSDS500 photos first, then ImageNet samples, as many as the budget allows. Each image
is copied as it is unless re-encoding it as JPEG (quality ``--quality``, 4:4:4) makes it
smaller, in which case the re-encoded bytes are kept (the sources are JPEG >= q90 already: one
more high-quality generation costs little, and training down-scales patches by 0.6-1.0
anyway). Within each set, images are taken in a fixed pseudo-random order (CRC32 of the name)
so that every class has the same chance; any that would overflow the budget is skipped and the
next one tried.

File names (and sub-folders) are kept, so :func:`slimfast.tools.train.split_validation`, which
hashes the name, holds out exactly the packed images that it holds out of the full set.
Kodak is never packed. A ``MANIFEST.json`` lists every file, its size and how it was packed.
Only Pillow is needed; nothing is downloaded.
"""
from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import zlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}


def images(folder: Path) -> list[Path]:
    return sorted(f for f in folder.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTS)


def reencode(path: Path, quality: int) -> bytes:
    from PIL import Image

    with Image.open(path) as im:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    return buf.getvalue()


CARRY_LIMIT = 64 * 2 ** 20  # what travels to a lent GPU machine: the repository plus carried paths


def tracked_bytes() -> int | None:
    """Size of what travels with the repository: tracked files and untracked ones git does not
    ignore (None outside a git checkout)."""
    import subprocess

    try:
        names = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                               capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return sum((ROOT / n).stat().st_size for n in names.decode().split("\0") if n and (ROOT / n).is_file())


def default_budget_mb() -> float:
    tracked = tracked_bytes()
    if tracked is None:
        return 25.0
    return round((CARRY_LIMIT - tracked - 2 ** 20) / 1e6, 1)


def main(argv: list[str] | None = None) -> int:
    auto_mb = default_budget_mb()
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--src", type=Path, default=ROOT.parent / "shared" / "data" / "train",
                   help="folder holding bsds500/ and imagenet-samples/ (default: %(default)s)")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "trainset", help="default: %(default)s")
    p.add_argument("--max-mb", type=float, default=None,
                   help="size budget in MB (10^6 bytes; default: 64 MiB minus the repository's files "
                        f"minus 1 MiB, now {auto_mb})")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality for re-encoding (default %(default)s)")
    p.add_argument("--min-side", type=int, default=256, help="skip images whose short side is smaller")
    args = p.parse_args(argv)

    bsds, inet = args.src / "bsds500", args.src / "imagenet-samples"
    if not bsds.is_dir():
        print(f"error: {bsds} not found (give --src)", file=sys.stderr)
        return 2
    if args.max_mb is None:
        args.max_mb = auto_mb
    if args.max_mb <= 1:
        print(f"error: a budget of {args.max_mb} MB leaves no room for images", file=sys.stderr)
        return 2
    budget = int(args.max_mb * 1e6) - 256 * 1024  # room for the manifest
    if args.out.exists():
        shutil.rmtree(args.out)
    manifest, used = [], 0

    def put(rel: Path, data: bytes, source: Path, how: str) -> None:
        nonlocal used
        dest = args.out / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        used += len(data)
        manifest.append({"file": rel.as_posix(), "bytes": len(data), "how": how})

    from PIL import Image

    def order(folder: Path) -> list[Path]:
        return sorted(images(folder), key=lambda f: (zlib.crc32(f.name.encode()), f.name)) if folder.is_dir() else []

    skipped = {"bsds500": 0, "imagenet-samples": 0}
    for folder in (bsds, inet):
        for f in order(folder):
            with Image.open(f) as im:
                if folder is inet and min(im.size) < args.min_side:
                    continue
            data, how = f.read_bytes(), "copy"
            small = reencode(f, args.quality)
            if len(small) < len(data):
                data, how = small, f"jpeg q{args.quality}"
            if used + len(data) > budget:
                skipped[folder.name] += 1
                continue
            put(Path(folder.name) / f.relative_to(folder), data, f, how)
        if folder is bsds:
            n_bsds = len(manifest)
    skipped_bsds, skipped = skipped["bsds500"], skipped["imagenet-samples"]

    (args.out / "MANIFEST.json").write_text(json.dumps(
        {"source": str(args.src), "budget_mb": args.max_mb, "bytes": used, "bsds500": n_bsds,
         "imagenet_samples": len(manifest) - n_bsds,
         "bsds500_skipped": skipped_bsds, "imagenet_skipped": skipped, "quality": args.quality, "files": manifest}, indent=1))
    total = sum(f.stat().st_size for f in args.out.rglob("*") if f.is_file())
    print(f"{args.out}: {n_bsds} BSDS500 ({skipped_bsds} did not fit) + {len(manifest) - n_bsds} ImageNet samples "
          f"({skipped} did not fit), {total / 1e6:.1f} MB of {args.max_mb} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
