"""Settings: every variable parsed in one place, validated, documented once, passed down explicitly."""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import slimfast
from slimfast import settings as settings_module
from slimfast.errors import SlimfastError
from slimfast.settings import DEFAULT_MAX_PIXELS, VARIABLES, Settings

ROOT = Path(__file__).resolve().parents[1]
HOME_CACHE = Path(os.path.expanduser("~")) / ".cache" / "slimfast" / "graphs"

GOOD = [  # (variable, value, field, parsed)
    ("SLIMFAST_BACKEND", "torch", "engine", "torch"), ("SLIMFAST_BACKEND", " ORT ", "engine", "ort"),
    ("SLIMFAST_BACKEND", "", "engine", "auto"),
    ("SLIMFAST_THREADS", "3", "threads", 3), ("SLIMFAST_THREADS", "many", "threads", 0),  # as always: 0
    ("SLIMFAST_THREADS", "-2", "threads", 0),
    ("SLIMFAST_ANALYSIS", "bf16", "analysis", "bf16"), ("SLIMFAST_ANALYSIS", "FP32", "analysis", "fp32"),
    ("SLIMFAST_SYNTHESIS", "int8", "synthesis", "int8"), ("SLIMFAST_SYNTHESIS", "bf16", "synthesis", "bf16"),
    ("SLIMFAST_MAX_PIXELS", "1000", "max_pixels", 1000),
    ("SLIMFAST_MAX_PIXELS", "lots", "max_pixels", DEFAULT_MAX_PIXELS),  # as always: the default
    ("SLIMFAST_MODEL_PATH", os.pathsep.join(["/a", "", "/b"]), "model_path", (Path("/a"), Path("/b"))),
    ("SLIMFAST_MODEL_PATH", "", "model_path", ()),
    ("SLIMFAST_CACHE_DIR", "/tmp/graphs", "cache_dir", Path("/tmp/graphs")),
    *[("SLIMFAST_CACHE_DIR", off, "cache_dir", None) for off in ("", "off", "0", "None", " OFF ")],
    ("SLIMFAST_ORT_TCONV", "subpixel", "ort_tconv", "subpixel"),
    ("SLIMFAST_ORT_TCONV", "convtranspose", "ort_tconv", "convtranspose"), ("SLIMFAST_ORT_TCONV", "", "ort_tconv", None),
    ("SLIMFAST_ORT_OPT", "extended", "ort_optimization", "extended"),
    ("SLIMFAST_ORT_SPIN", "1", "ort_spinning", True), ("SLIMFAST_ORT_SPIN", "0", "ort_spinning", False),
    ("SLIMFAST_ORT_ARENA", "1", "ort_arena", True), ("SLIMFAST_ORT_ARENA", "yes", "ort_arena", False),
    ("SLIMFAST_OV_PRECISION", "f32", "ov_precision", "f32"),
    ("SLIMFAST_ORT_AFFINITY", "0", "ort_affinity", False), ("SLIMFAST_ORT_AFFINITY", "1", "ort_affinity", True),
    ("SLIMFAST_CODER", "range", "coder", "range"), ("SLIMFAST_CODER", "RANS", "coder", "rans"),
]

BAD = [  # (variable, value, the message slimfast gives)
    ("SLIMFAST_BACKEND", "x", "SLIMFAST_BACKEND must be 'torch' or 'ort', not 'x'"),
    ("SLIMFAST_ANALYSIS", "int8", "SLIMFAST_ANALYSIS must be 'auto', 'fp32' or 'bf16', not 'int8'"),
    ("SLIMFAST_SYNTHESIS", "int4", "SLIMFAST_SYNTHESIS must be 'auto', 'fp32', 'int8' or 'bf16', not 'int4'"),
    ("SLIMFAST_ORT_TCONV", "fast", "SLIMFAST_ORT_TCONV must be 'convtranspose' or 'subpixel', not 'fast'"),
    ("SLIMFAST_ORT_OPT", "max", "SLIMFAST_ORT_OPT must be one of disable, basic, extended, all, not 'max'"),
    ("SLIMFAST_OV_PRECISION", "int4", "SLIMFAST_OV_PRECISION must be one of bf16, f32, not 'int4'"),
    ("SLIMFAST_MAX_PIXELS", "0", "SLIMFAST_MAX_PIXELS must be an integer >= 1, not 0"),
]


@pytest.mark.parametrize("var,value,field,parsed", GOOD, ids=[f"{v}={x!r}" for v, x, _, _ in GOOD])
def test_each_variable_is_parsed(var, value, field, parsed):
    s = Settings.from_env({var: value})
    assert getattr(s, field) == parsed
    assert dataclasses.replace(s, **{field: getattr(Settings(), field)}) == Settings()  # nothing else moved


@pytest.mark.parametrize("var,value,message", BAD, ids=[v for v, _, _ in BAD])
def test_a_bad_value_is_a_one_line_error_naming_the_variable(var, value, message):
    with pytest.raises(SlimfastError) as e:
        Settings.from_env({var: value})
    assert str(e.value) == message and "\n" not in str(e.value)


def test_the_cache_dir_follows_xdg_and_home():
    assert Settings.from_env({}).cache_dir == HOME_CACHE
    assert Settings.from_env({"XDG_CACHE_HOME": "/xdg"}).cache_dir == Path("/xdg/slimfast/graphs")
    assert Settings.from_env({"XDG_CACHE_HOME": "/xdg", "SLIMFAST_CACHE_DIR": "/c"}).cache_dir == Path("/c")


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("SLIMFAST_THREADS", "5")
    assert Settings.from_env().threads == 5


def _table() -> dict[str, dict[str, str]]:
    """The module docstring's table: variable -> {column: text of its first line}."""
    lines = settings_module.__doc__.splitlines()
    border = next(i for i, line in enumerate(lines) if line.startswith("===="))
    spans = [m.span() for m in re.finditer(r"=+", lines[border])]
    heads = [lines[border + 1][a:b].strip() for a, b in spans]
    rows = {}
    for line in lines[border + 3:]:
        if line.startswith("===="):
            break
        if line[:1].strip():
            cells = [line[a:b if k < len(spans) - 1 else None].strip() for k, (a, b) in enumerate(spans)]
            rows[cells[0]] = dict(zip(heads, cells))
    return rows


# How the table states each default, and the value it means.
DOCUMENTED_DEFAULTS = {"engine": ("auto", "auto"), "threads": ("0", 0), "analysis": ("auto", "auto"),
                       "synthesis": ("auto", "auto"), "max_pixels": ("67108864", 64 * 1024 * 1024),
                       "model_path": ("none", ()), "cache_dir": ("XDG_CACHE_HOME/", HOME_CACHE),
                       "ort_tconv": ("the architecture's", None), "ort_optimization": ("all", "all"),
                       "ort_spinning": ("off", False), "ort_arena": ("off", False), "ov_precision": ("bf16", "bf16"),
                       "coder": ("auto", "auto"), "ort_affinity": ("on", True)}


def test_every_setting_is_in_the_table_with_its_real_default():
    table = _table()
    fields = [f.name for f in dataclasses.fields(Settings)]
    assert sorted(VARIABLES) == sorted(fields) == sorted(DOCUMENTED_DEFAULTS)
    assert sorted(table) == sorted(VARIABLES.values())
    defaults = Settings()
    for field, (text, value) in DOCUMENTED_DEFAULTS.items():
        row = table[VARIABLES[field]]
        assert row["Default"].startswith(text), (field, row)
        assert f"``{field}``" in row["Meaning (the :class:`Settings` field)"], (field, row)
        assert getattr(defaults, field) == value, field
    assert Settings.from_env({}) == defaults


def test_the_readme_points_at_the_table():
    readme = (ROOT / "README.md").read_text()
    backends = readme[readme.index("## Backends"):readme.index("## ", readme.index("## Backends") + 3)]
    assert "slimfast/settings.py" in backends


@pytest.mark.parametrize("changes", [{"engine": "x"}, {"threads": -1}, {"threads": "2"}, {"threads": True},
                                     {"max_pixels": 0}, {"ort_arena": "yes"}, {"model_path": 5},
                                     {"cache_dir": 3}, {"synthesis": "int4"}, {"ov_precision": None}])
def test_keywords_are_validated_too(changes):
    with pytest.raises(SlimfastError) as e:
        Settings(**changes)
    assert "\n" not in str(e.value) and next(iter(changes)) in str(e.value)
    with pytest.raises(SlimfastError):
        Settings().replace(**changes)


def test_settings_are_frozen_hashable_and_take_folders_as_strings():
    s = Settings(model_path=["/a", Path("/b")], cache_dir="/c")
    assert s.model_path == (Path("/a"), Path("/b")) and s.cache_dir == Path("/c")
    assert Settings(model_path="/a").model_path == (Path("/a"),)
    assert hash(s) == hash(s.replace()) and s.replace(threads=2) != s
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.threads = 3


def test_keywords_beat_the_environment(monkeypatch):
    from slimfast.codec import resolve_settings

    monkeypatch.setenv("SLIMFAST_THREADS", "3")
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "int8")
    monkeypatch.setenv("SLIMFAST_BACKEND", "torch")
    assert (resolve_settings().threads, resolve_settings().synthesis) == (3, "int8")
    s = resolve_settings(threads=1, engine="ort", precision="fp32")
    assert (s.threads, s.engine, s.analysis, s.synthesis) == (1, "ort", "fp32", "fp32")
    s = resolve_settings(precision="bf16", synthesis="int8")  # one side wins over precision
    assert (s.analysis, s.synthesis) == ("bf16", "int8")
    assert resolve_settings(precision="int8").analysis == "fp32"
    given = Settings(threads=4)
    assert resolve_settings(given) is given  # given settings replace the environment's
    with pytest.raises(SlimfastError, match="precision must be"):
        resolve_settings(precision="int4")


def test_cli_flags_beat_the_environment_and_leave_it_alone(monkeypatch, tmp_path, small_rgb):
    from PIL import Image

    from slimfast import cli

    monkeypatch.setenv("SLIMFAST_THREADS", "3")
    monkeypatch.setenv("SLIMFAST_SYNTHESIS", "fp32")
    monkeypatch.delenv("SLIMFAST_ANALYSIS", raising=False)
    before = dict(os.environ)
    parse = cli.build_parser().parse_args
    s = cli._settings(parse(["decompress", "a.sfi", "b.png", "--threads", "2", "--int8"]), ("synthesis",))
    assert (s.threads, s.analysis, s.synthesis) == (2, "auto", "int8")
    s = cli._settings(parse(["compress", "a.png", "b.sfi", "--bf16"]), ("analysis",))
    assert (s.threads, s.analysis, s.synthesis) == (3, "bf16", "fp32")
    s = cli._settings(parse(["demo", "--bf16"]), ("analysis", "synthesis"))
    assert (s.analysis, s.synthesis) == ("bf16", "bf16")
    s = cli._settings(parse(["compress", "a.png", "--fp32"]), ("analysis",))
    assert (s.analysis, s.synthesis) == ("fp32", "fp32")
    Image.fromarray(small_rgb).save(tmp_path / "a.png")
    assert cli.main(["compress", str(tmp_path / "a.png"), str(tmp_path / "a.sfi"), "--threads", "1", "--quiet"]) == 0
    assert cli.main(["decompress", str(tmp_path / "a.sfi"), str(tmp_path / "b.png"), "--threads", "1"]) == 0
    assert dict(os.environ) == before


# The tools (slimfast/tools/) configure the processes they start, and training reads torchrun's and
# CUDA's variables; the command line (cli/__init__.py) sets OpenBLAS's.
# The server's pool starts its workers with one BLAS/OpenMP thread, which only the environment of a new
# process can set (so do the batch command's local workers); the batch command joins the cluster of Ray's
# own RAY_ADDRESS, as every Ray tool does.
MAY_TOUCH_THE_ENVIRONMENT = {"settings.py", "serve/pool.py", "batch/raydata.py", "batch/local.py"}


def test_nothing_below_the_api_reads_the_environment():
    pattern = re.compile(r"\b(environ|getenv|putenv|unsetenv)\b")
    offenders = []
    for path in sorted((ROOT / "slimfast").rglob("*.py")):
        rel = path.relative_to(ROOT / "slimfast").as_posix()
        if rel in MAY_TOUCH_THE_ENVIRONMENT or rel.startswith("tools/"):
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line) and not (rel == "cli/__init__.py" and "OPENBLAS_NUM_THREADS" in line):
                offenders.append(f"{rel}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _ort_or_skip():
    from slimfast import runtime, zoo

    if not (runtime.available() and runtime.supports(zoo.get().architecture)):
        pytest.skip("needs onnxruntime and a default model it runs")


def test_thread_counts_reach_the_models_and_keep_the_symbols(monkeypatch):
    _ort_or_skip()
    from slimfast.format import container

    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    one, two = slimfast.load(threads=1, engine="ort"), slimfast.load(threads=2, engine="ort")
    assert (one.model.threads, two.model.threads) == (1, 2) and one.model is not two.model
    assert slimfast.load(threads=1, engine="ort").model is one.model  # the same settings share a model
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:64, 0:96]
    img = np.clip(np.stack([x * 2, y * 3, x + y], axis=2) + rng.normal(0, 6, (64, 96, 3)), 0, 255).astype(np.uint8)
    data = one.compress(img)
    hdr = container.unpack(data)
    m = one.model.pad_multiple
    shape = (-(-hdr.image_size[1] // m), -(-hdr.image_size[0] // m))
    a = one.model.decode_symbols(hdr.streams, shape, hdr.width)
    b = two.model.decode_symbols(hdr.streams, shape, hdr.width)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    pa = np.asarray(one.decompress(data)).astype(int)
    pb = np.asarray(slimfast.decompress(data, threads=2, engine="ort")).astype(int)
    assert np.abs(pa - pb).max() <= 1


@pytest.mark.slow  # starts subprocesses or trains
def test_a_child_process_takes_its_settings_from_the_environment():
    """How slimfast bench and evaluate configure their workers: environment in, Settings.from_env out."""
    _ort_or_skip()
    code = ("import slimfast; c = slimfast.load(); "
            "print(c.settings.threads, c.settings.synthesis, c.settings.ort_tconv, c.model.threads)")
    env = {k: v for k, v in os.environ.items() if k != "SLIMFAST_MODEL_PATH"}
    env.update(SLIMFAST_THREADS="2", SLIMFAST_SYNTHESIS="int8", SLIMFAST_ORT_TCONV="subpixel",
               SLIMFAST_BACKEND="ort", OMP_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["2", "int8", "subpixel", "2"]
