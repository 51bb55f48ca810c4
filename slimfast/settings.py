"""Every runtime setting of slimfast, in one frozen :class:`Settings`, and the environment variables.

The top-level API (``slimfast.load``, ``slimfast.decompress``, ``slimfast.list_models``, the
``slimfast`` command and the Pillow plugin) starts from :meth:`Settings.from_env`, the one
place in the package that reads these variables; everything below it (the codec's models,
:mod:`slimfast.runtime`, :mod:`slimfast.zoo`) receives the values as arguments. Keyword
arguments (``slimfast.load(threads=2)``) and command-line flags (``--threads 2``, ``--int8``,
``--bf16``) override the environment.

=====================  ==========================  ==================  ==============================================
Variable               Values                      Default             Meaning (the :class:`Settings` field)
=====================  ==========================  ==================  ==============================================
SLIMFAST_BACKEND       auto, ort, torch            auto                ``engine``; auto: ort where ONNX Runtime (a core
                                                                       dependency) imports and covers the model, else torch
SLIMFAST_THREADS       integer >= 0                0: the engine's     ``threads`` of the networks (``--threads``)
                                                   (a thread per core)
SLIMFAST_ANALYSIS      auto, fp32, bf16            auto                ``analysis``: the encoder's precision
                                                                       (``compress --bf16``, on OpenVINO); auto:
                                                                       see below
SLIMFAST_SYNTHESIS     auto, fp32, int8, bf16      auto                ``synthesis``: the decoder's precision
                                                                       (``decompress --int8``, ``--bf16``)
SLIMFAST_MAX_PIXELS    integer >= 1                67108864 (64 Mi)    ``max_pixels``: the largest image one decode
                                                                       may produce and the encoder accepts
                                                                       (``max_pixels=`` of load and decompress)
SLIMFAST_MODEL_PATH    folders, ``os.pathsep``     none                ``model_path``: model folders searched after
                       between them                                    the bundled one (:mod:`slimfast.zoo`)
SLIMFAST_CACHE_DIR     a folder; "", off, 0, none  XDG_CACHE_HOME/     ``cache_dir`` of built ONNX graphs (``None``:
                       turn the cache off          slimfast/graphs     no cache); without XDG_CACHE_HOME,
                                                                       ``~/.cache/slimfast/graphs``
SLIMFAST_ORT_TCONV     convtranspose, subpixel     the architecture's  ``ort_tconv``: the form of transposed
                                                   faster form         convolutions in ONNX Runtime graphs
SLIMFAST_ORT_OPT       disable, basic, extended,   all                 ``ort_optimization``: ONNX Runtime's graph
                       all                                             optimization level
SLIMFAST_ORT_SPIN      1: on                       off                 ``ort_spinning``: idle ORT workers spin
SLIMFAST_ORT_ARENA     1: on                       off                 ``ort_arena``: ONNX Runtime's memory arena
SLIMFAST_ORT_AFFINITY  0: off                      on                  ``ort_affinity``: ONNX Runtime's worker threads
                                                                       pinned, one per CPU (turn off where several
                                                                       slimfast processes share the CPUs)
SLIMFAST_OV_PRECISION  bf16, f32                   bf16                ``ov_precision`` of the bf16 parts on
                                                                       OpenVINO (f32: a diagnostic, bench times it)
SLIMFAST_CODER         auto, rans, range           auto                ``coder``: the entropy coder new files use;
                                                                       auto: rans where its native code was built,
                                                                       else range (files every slimfast reads)
=====================  ==========================  ==================  ==============================================

Precision ``auto`` (:func:`slimfast.codec.resolved_precision`) is bf16 for a side (analysis or
synthesis) where the model's card measured bf16 within its bounds on held-out training images
(``python -m slimfast.tools.release --measure-bf16``: at most 0.05 dB, and for the analysis at
most 0.5% larger files), the model runs on ONNX Runtime's graphs, OpenVINO is installed and the
CPU computes bf16 natively (AVX-512 BF16 or AMX); fp32 everywhere else. Symbols never depend on the
synthesis' precision; pixels repeat exactly for one machine, precision and thread count. The
``slimfast compress`` / ``decompress`` commands take fp32 for ``auto`` when their images add up
to less than :data:`AUTO_BF16_MIN_PIXELS`: OpenVINO's start in a fresh process (about 0.15 s)
costs more there than bf16 saves.

A bad value is a :class:`~slimfast.errors.SlimfastError` with a one-line message naming the
variable, except where slimfast always took it silently: ``SLIMFAST_THREADS`` that is not an
integer (or below 0) means 0, ``SLIMFAST_MAX_PIXELS`` that is not an integer means the default,
``SLIMFAST_ORT_SPIN`` / ``SLIMFAST_ORT_ARENA`` other than ``1`` mean off, and
``SLIMFAST_ORT_AFFINITY`` other than ``0`` means on.

The graph cache (``SLIMFAST_CACHE_DIR``) keeps the 64 most recently used graphs, a few MB each
(:mod:`slimfast.engines.ort`), keyed by the weights' SHA-256, the part, width and form, the int8
ranges, the code that builds graphs and the onnx / onnxruntime versions. Where the CPU can be told
(Linux), ONNX Runtime's graphs are kept as ONNX Runtime optimized them, the key naming the
optimization level and the CPU's instruction set as well, so that a later process starts their
sessions with the optimizer off; elsewhere, and for OpenVINO, as built. A graph from the cache
computes what a fresh build computes, and removing the folder is always safe.
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SlimfastError

ENGINES = ("auto", "ort", "torch")
ANALYSIS_PRECISIONS = ("auto", "fp32", "bf16")
SYNTHESIS_PRECISIONS = ("auto", "fp32", "int8", "bf16")
# One-shot commands below this many pixels in all resolve precision "auto" to fp32 (module docstring).
AUTO_BF16_MIN_PIXELS = 16_000_000
TCONV_FORMS = ("convtranspose", "subpixel")
ORT_OPTIMIZATIONS = ("disable", "basic", "extended", "all")
OV_PRECISIONS = ("bf16", "f32")
CODERS = ("auto", "rans", "range")
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
CACHE_OFF = ("", "off", "0", "none")

# field -> (variable, allowed values, how the error lists them: the messages slimfast always gave)
_CHOICES = {
    "engine": ("SLIMFAST_BACKEND", ENGINES, "'torch' or 'ort'"),
    "analysis": ("SLIMFAST_ANALYSIS", ANALYSIS_PRECISIONS, "'auto', 'fp32' or 'bf16'"),
    "synthesis": ("SLIMFAST_SYNTHESIS", SYNTHESIS_PRECISIONS, "'auto', 'fp32', 'int8' or 'bf16'"),
    "ort_tconv": ("SLIMFAST_ORT_TCONV", (None, *TCONV_FORMS), "'convtranspose' or 'subpixel'"),
    "ort_optimization": ("SLIMFAST_ORT_OPT", ORT_OPTIMIZATIONS, "one of " + ", ".join(ORT_OPTIMIZATIONS)),
    "ov_precision": ("SLIMFAST_OV_PRECISION", OV_PRECISIONS, "one of " + ", ".join(OV_PRECISIONS)),
    "coder": ("SLIMFAST_CODER", CODERS, "one of " + ", ".join(CODERS)),
}
VARIABLES = {**{f: v[0] for f, v in _CHOICES.items()}, "threads": "SLIMFAST_THREADS",
             "max_pixels": "SLIMFAST_MAX_PIXELS", "model_path": "SLIMFAST_MODEL_PATH",
             "cache_dir": "SLIMFAST_CACHE_DIR", "ort_spinning": "SLIMFAST_ORT_SPIN", "ort_arena": "SLIMFAST_ORT_ARENA",
             "ort_affinity": "SLIMFAST_ORT_AFFINITY"}


def default_cache_dir(xdg_cache_home: str | None = None) -> Path:
    """``$XDG_CACHE_HOME/slimfast/graphs``, or ``~/.cache/slimfast/graphs`` without it."""
    base = Path(xdg_cache_home) if xdg_cache_home else Path(os.path.expanduser("~")) / ".cache"
    return base / "slimfast" / "graphs"


@dataclass(frozen=True)
class Settings:
    """The runtime settings (see the module docstring's table); validated on construction."""

    engine: str = "auto"
    threads: int = 0
    analysis: str = "auto"
    synthesis: str = "auto"
    max_pixels: int = DEFAULT_MAX_PIXELS
    model_path: tuple[Path, ...] = ()
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    ort_tconv: str | None = None
    ort_optimization: str = "all"
    ort_spinning: bool = False
    ort_arena: bool = False
    ort_affinity: bool = True
    ov_precision: str = "bf16"
    coder: str = "auto"

    def __post_init__(self) -> None:
        # Folders arrive as strings or Paths, one or several: compare and hash them as Paths.
        paths = (self.model_path,) if isinstance(self.model_path, (str, os.PathLike)) else self.model_path
        if not isinstance(paths, Iterable) or not all(isinstance(p, (str, os.PathLike)) for p in paths):
            raise SlimfastError(f"model_path must be folders (str or Path), not {self.model_path!r}")
        object.__setattr__(self, "model_path", tuple(Path(p) for p in paths))
        if not isinstance(self.cache_dir, (str, os.PathLike, type(None))):
            raise SlimfastError(f"cache_dir must be a folder (str or Path) or None, not {self.cache_dir!r}")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))
        _validate({f.name: getattr(self, f.name) for f in dataclasses.fields(self)}, lambda name: name)

    def replace(self, **changes) -> Settings:
        """A copy with ``changes`` applied (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """The settings the environment (``os.environ``, or ``environ``) gives; unset: the defaults."""
        env = os.environ if environ is None else environ
        defaults = {f.name: f.default for f in dataclasses.fields(cls)}
        values = {f: env.get(var, "").strip().lower() or defaults[f] for f, (var, _, _) in _CHOICES.items()}
        values.update(threads=max(_int_or(env.get("SLIMFAST_THREADS"), 0), 0),
                      max_pixels=_int_or(env.get("SLIMFAST_MAX_PIXELS"), DEFAULT_MAX_PIXELS),
                      model_path=tuple(Path(p) for p in env.get("SLIMFAST_MODEL_PATH", "").split(os.pathsep) if p),
                      cache_dir=_cache_dir(env),
                      ort_spinning=env.get("SLIMFAST_ORT_SPIN", "0").strip() == "1",
                      ort_arena=env.get("SLIMFAST_ORT_ARENA", "0").strip() == "1",
                      ort_affinity=env.get("SLIMFAST_ORT_AFFINITY", "1").strip() != "0")
        _validate(values, VARIABLES.__getitem__)  # first, so that the message names the variable
        return cls(**values)


def _int_or(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _cache_dir(env: Mapping[str, str]) -> Path | None:
    value = env.get("SLIMFAST_CACHE_DIR")
    if value is None:
        return default_cache_dir(env.get("XDG_CACHE_HOME"))
    return None if value.strip().lower() in CACHE_OFF else Path(value)


def _validate(values: Mapping[str, object], label) -> None:
    """Raise a one-line :class:`SlimfastError` for the first bad value; ``label(field)`` names it."""
    for f, (_, allowed, phrase) in _CHOICES.items():
        if values[f] not in allowed:
            raise SlimfastError(f"{label(f)} must be {phrase}, not {values[f]!r}")
    for f, low in (("threads", 0), ("max_pixels", 1)):
        v = values[f]
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise SlimfastError(f"{label(f)} must be an integer >= {low}, not {v!r}")
    for f in ("ort_spinning", "ort_arena", "ort_affinity"):
        if not isinstance(values[f], bool):
            raise SlimfastError(f"{label(f)} must be True or False, not {values[f]!r}")
