"""The ``slimfast`` command line: one module per command (:mod:`.compress`, :mod:`.decompress`,
:mod:`.info`, :mod:`.models`, :mod:`.demo`, :mod:`.upgrade`; :mod:`.tools` hands training,
evaluation and benchmarks to :mod:`slimfast.tools`), over the per-file pipeline :mod:`slimfast.jobs`.

Every user mistake ends with one line on stderr (``slimfast: error: ...``) and a non-zero exit
status, never a traceback. Outputs are written atomically (temporary file, then rename) and an
existing file is only replaced with ``--force``.
"""
from __future__ import annotations

import os

# The integer hyper-synthesis GEMMs are small: one BLAS thread is fastest, and many times faster
# when the cores are busy (measured). Must be set before numpy loads; the user's setting wins.
# This configures a library (OpenBLAS reads it), not slimfast: slimfast's own settings are a
# Settings built once per command (common.settings) and passed to the API, never written to the environment.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .common import settings as _settings  # noqa: E402, F401  (tests build a command's settings with it)
from .main import build_parser, main  # noqa: E402

__all__ = ["build_parser", "main"]
