"""The per-file pipeline that ``slimfast compress``, ``decompress`` and ``upgrade`` run, and that
a batch runner can run from worker processes.

Two steps, both plain functions over plain, picklable data:

* :func:`plan` names every output (``photo.png`` -> ``photo.sfi`` beside it, ``-o`` a file for
  one input or a folder for several; :mod:`slimfast.jobs.plan`) and refuses, before anything is
  written, what must not run: two inputs with one output, an output over an input, an ``.sfi``
  input to ``compress`` without ``allow_reencode``, ``.sfi`` bytes under an image extension
  (``out.png``), an image under ``.sfi``. A caller that names its outputs itself (a tree
  mirrored into a folder) checks them with :func:`check_plan`.
* :func:`code_file` codes one :class:`Job`: reads its input within bounds, compresses,
  decompresses or upgrades it, writes the output atomically (never over an existing file without
  ``force``; the mode follows the umask) and returns a :class:`Record`, failures included, so that
  one bad file never stops the others. The codec is loaded once per process (:func:`codec_for`).

:func:`prepare` checks the options once, before the first file (an unknown model is one error,
not one per file). Nothing here reads the environment: the caller passes
:class:`~slimfast.settings.Settings`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..settings import Settings

COMMANDS = ("compress", "decompress", "upgrade")


@dataclass(frozen=True)
class Options:
    """What to do with every file of a plan (hashable and picklable)."""

    command: str = "compress"            # one of COMMANDS
    model: str | None = None             # compress / upgrade: a model or family name; None: the default
    quality: float | None = None         # 0..100
    width: int | None = None             # a slimmable model's width
    max_bytes: int | None = None
    target_bpp: float | None = None
    effort: int = 0                      # compress: encoder effort, 0..codec.MAX_EFFORT (above 0 needs torch)
    metadata: str = "all"                # all, icc or none
    first_frame: bool = False            # an animated input's first frame
    format: str | None = None            # decompress: the output format; None: from the output's name
    force: bool = False                  # overwrite existing outputs (upgrade: in place when no output is named)
    allow_reencode: bool = False         # compress: accept .sfi inputs
    weights_from: str | None = None      # upgrade: a folder of (retired) weights and their cards
    settings: Settings = field(default_factory=Settings)


@dataclass(frozen=True)
class Job:
    source: str                          # a path, or - for stdin
    output: str                          # a path, or - for stdout


@dataclass(frozen=True)
class Record:
    """What happened to one job. ``status``: ``ok``, ``skipped`` (upgrade: already current) or
    ``failed``; ``error`` says why it failed or was skipped, in one line. ``bytes_in`` / ``bytes_out``:
    the sizes read and written; ``bpp``: the .sfi file's bits per pixel (the output's, or for
    decompress the input's); ``model`` / ``version``: the .sfi file's (upgrade: the new file's,
    ``source_model`` / ``source_version`` the old one's); ``seconds``: coding time, reading and
    writing excluded."""

    source: str
    output: str
    status: str
    error: str | None = None
    bytes_in: int = 0
    bytes_out: int = 0
    bpp: float | None = None
    model: str | None = None
    version: str | None = None
    seconds: float = 0.0
    image_size: tuple[int, int] | None = None
    mode: str | None = None
    source_model: str | None = None
    source_version: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


from .plan import check_plan, declared_pixels, plan  # noqa: E402  (they take the types above)
from .run import code_file, codec_for, prepare  # noqa: E402

__all__ = ["COMMANDS", "Job", "Options", "Record", "check_plan", "code_file", "codec_for", "declared_pixels", "plan",
           "prepare"]
