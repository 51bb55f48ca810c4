"""The package's layering (pyproject.toml, [tool.importlinter]): checked on every run, so that a
cycle, an upward import, the codec importing a tool or the torch-free core importing torch fails."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # starts subprocesses or trains
def test_import_contracts_hold():
    exe = shutil.which("lint-imports")
    if exe is None:
        assert not os.environ.get("CI"), "CI installs '.[test]', which has import-linter"
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    r = subprocess.run([exe, "--config", str(ROOT / "pyproject.toml")], cwd=ROOT, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-2000:]
    assert "BROKEN" not in r.stdout and r.stdout.count("KEPT") >= 3


@pytest.mark.slow  # starts subprocesses or trains
def test_ruff_is_clean():
    """The style contract of pyproject.toml ([tool.ruff]: pyflakes and pycodestyle, 130 columns)."""
    exe = shutil.which("ruff")
    if exe is None:
        assert not os.environ.get("CI"), "CI installs '.[test]', which has ruff"
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    r = subprocess.run([exe, "check", "slimfast", "tests", "benchmarks", "scripts"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-4000:]


MAX_FUNCTION_LINES = 80


def test_functions_read_at_once():
    """No function in the package is over 80 lines, unless a ``# long:`` comment on its first
    line says why."""
    import ast

    long = []
    for path in sorted((ROOT / "slimfast").rglob("*.py")):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES and "# long:" not in lines[node.lineno - 1]:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({n} lines)")
    assert not long, "\n".join(long)
