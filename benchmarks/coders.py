"""What rANS (files with a LAYT chunk) costs in bytes against the range coder (files without), per
operating point, on Kodak: the same symbols, so the same pixels; only the file sizes differ.

    python benchmarks/coders.py [--images 24] [--out benchmarks/results/coders.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

import slimfast
from slimfast import zoo
from slimfast.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
KODAK = ROOT.parent / "shared" / "data" / "kodak"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=24)
    p.add_argument("--kodak", type=Path, default=KODAK)
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    images = [np.asarray(Image.open(f).convert("RGB")) for f in sorted(a.kodak.glob("*.png"))[: a.images]]
    if not images:
        raise SystemExit(f"no images in {a.kodak}")
    base = Settings.from_env().replace(threads=1, analysis="fp32", synthesis="fp32")  # RD at fp32
    rows = []
    for info in zoo.list_models():
        for width in sorted(info.widths) if info.widths else [None]:
            sizes = {}
            for coder in ("range", "rans"):
                codec = slimfast.load(info.name, settings=base.replace(coder=coder))
                sizes[coder] = [len(codec.compress(img, width=width)) for img in images]
            r, n = np.array(sizes["range"], float), np.array(sizes["rans"], float)
            rows.append({"model": info.name, "width": width, "range_bytes": float(r.mean()),
                         "rans_bytes": float(n.mean()), "change_percent": float(100 * np.mean(n / r - 1)),
                         "max_change_percent": float(100 * np.max(n / r - 1))})
            print(f"{info.name} {width or ''}: range {r.mean():.0f} B, rans {n.mean():.0f} B, "
                  f"{rows[-1]['change_percent']:+.3f}% (max {rows[-1]['max_change_percent']:+.3f}%)", flush=True)
    if a.out:
        a.out.write_text(json.dumps({"command": " ".join(["python", *sys.argv]), "images": len(images),
                                     "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
