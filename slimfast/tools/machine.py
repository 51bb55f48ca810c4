"""What machine and library versions a measurement ran on (for bench, evaluate and report)."""
from __future__ import annotations

import datetime as _dt
import os
import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ["slimfast", "torch", "numpy", "Pillow", "scipy", "pytorch-msssim", "pillow-heif", "imagecodecs",
            "matplotlib", "constriction", "safetensors"]


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                wanted = ("avx512f", "avx512_bf16", "avx512_vnni", "avx2", "amx")
                return sorted(f for f in flags if f.startswith(wanted))
    except OSError:
        pass
    return []


def environment(threads: int | None = None) -> dict:
    """CPU, core count, Python and library versions (from package metadata: nothing heavy imported)."""
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            versions[p] = None
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"cpu": cpu_model(), "cpu_flags": cpu_flags(), "cpus_usable": affinity, "threads": threads,
            "python": platform.python_version(), "platform": platform.platform(), "versions": versions,
            "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
