"""The batch manifest: one Parquet row per input, rewritten atomically as results arrive.

Columns (:data:`COLUMNS`): the source with its size and mtime (nanoseconds) when planned, the
output, ``status`` (``ok``, ``failed``, or ``pending``: planned, not finished when the run
stopped), ``error`` (one line), ``bytes_in`` / ``bytes_out`` (the sizes read and written: those
of the files), ``bpp`` (of the .sfi side), the .sfi file's ``model`` and ``version``, the
``options_hash`` (:func:`options_hash`), the ``command``, ``time`` (when the row was settled,
UTC), ``seconds`` (coding time), ``worker`` (host:pid) and ``output_ours``: whether an existing
output file there is the batch's own (a rerun may replace it without ``--force``); false only
for a row that failed because another file was in the way.

Rows of sources that a later run does not name are kept: the manifest describes the destination.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import SlimfastError
from ..jobs import Options

NAME = "slimfast-manifest.parquet"
COLUMNS = {  # name -> pyarrow type name (pyarrow is imported only when a manifest is read or written)
    "source": "string", "source_size": "int64", "source_mtime_ns": "int64", "output": "string",
    "status": "string", "error": "string", "bytes_in": "int64", "bytes_out": "int64", "bpp": "float64",
    "model": "string", "version": "string", "options_hash": "string", "command": "string",
    "time": "timestamp", "seconds": "float64", "worker": "string", "output_ours": "bool",
}
# Settings that cannot change the bytes written: left out of the hash, so that a rerun with
# another cache folder or pixel limit still resumes.
_NOT_HASHED = ("max_pixels", "model_path", "cache_dir", "ort_spinning", "ort_arena")


def arrow_schema(columns: dict[str, str]):
    """The pyarrow schema of ``columns`` (name -> type name)."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_(),
             "timestamp": pa.timestamp("us", tz="UTC")}
    return pa.schema([(name, types[kind]) for name, kind in columns.items()])


def options_hash(options: Options, model_id: tuple | None = None) -> str:
    """A hash of everything that decides the bytes of an output: the command's options, the
    settings that reach the networks (threads and precisions included), the model the options
    load (name, version, SHA-256) and slimfast's version. ``force`` and the pixel limit are not in it."""
    from .. import __version__

    fields = asdict(options)
    fields.pop("force")
    fields["settings"] = {k: v for k, v in fields["settings"].items() if k not in _NOT_HASHED}
    fields.update(model_id=model_id, slimfast=__version__)
    text = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def read(path: str | os.PathLike) -> dict[str, dict]:
    """The rows of an existing manifest by source (empty where there is none)."""
    if not os.path.exists(path):
        return {}
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as exc:  # noqa: BLE001 - any unreadable manifest is one line
        raise SlimfastError(f"cannot read the manifest {path}: {exc} (delete it to start over)") from None
    if rows and not set(COLUMNS) <= set(rows[0]):
        raise SlimfastError(f"{path} is not a slimfast batch manifest (delete it or name another with --manifest)")
    return {r["source"]: r for r in rows}


def write(path: str | os.PathLike, rows, meta: dict | None = None) -> float:
    """Replace the manifest with ``rows`` atomically (a crash leaves the old or the new one);
    returns the seconds it took."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..jobs.files import write_atomic

    t0 = time.perf_counter()
    table = pa.Table.from_pylist(list(rows), schema=arrow_schema(COLUMNS))
    if meta:
        table = table.replace_schema_metadata({"slimfast": json.dumps(meta, default=str)})
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_atomic(Path(path), buf.getvalue(), force=True)
    return time.perf_counter() - t0
