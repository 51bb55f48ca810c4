"""A file of a retired model version (fasinet-h-mse-q4 version 3, retired by version 4): it fails
with the one line that says how to decode or upgrade it, and `slimfast upgrade` re-encodes it with
the retired weights taken from git history."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import slimfast

ROOT = Path(__file__).resolve().parents[1]
OLD = ROOT / "tests" / "fixtures" / "archived" / "fasinet-h-mse-q4-v3.sfi"


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "slimfast", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def _retired_entry() -> dict:
    entries = json.loads((ROOT / "slimfast" / "weights" / "retired.json").read_text())
    return next(e for e in entries if e["name"] == "fasinet-h-mse-q4" and e["version"] == "3")


@pytest.mark.slow  # starts subprocesses
def test_a_retired_versions_file_says_how_to_decode_it(tmp_path):
    r = _cli("decompress", OLD, "-o", tmp_path / "x.png")
    assert r.returncode == 1 and not (tmp_path / "x.png").exists()
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    entry = _retired_entry()
    assert "version 3" in lines[0] and f"slimfast {entry['last_release']}" in lines[0]
    assert "slimfast upgrade" in lines[0]


@pytest.mark.slow  # starts subprocesses
def test_upgrade_re_encodes_it_with_the_retired_weights_from_git(tmp_path):
    entry = _retired_entry()
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in entry["files"]:
        got = subprocess.run(["git", "-C", str(ROOT), "show", f"{entry['last_commit']}:slimfast/weights/{name}"],
                             capture_output=True, check=False)
        if got.returncode:
            pytest.skip(f"the retired weights are not in this checkout's history ({entry['last_commit'][:12]})")
        (weights / name).write_bytes(got.stdout)
    out = tmp_path / "new.sfi"
    r = _cli("upgrade", OLD, "--weights-from", weights, "-o", out)
    assert r.returncode == 0, r.stderr
    assert "generation" in r.stderr.lower() or "loss" in r.stderr.lower()
    info = json.loads(_cli("info", out, "--json").stdout)
    info = info[0] if isinstance(info, list) else info
    assert info["model"] == "fasinet-h-mse-q4" and info["version"] == slimfast.zoo.get("fasinet-h-mse-q4").version
