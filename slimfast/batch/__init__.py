"""``slimfast batch``: a corpus of images compressed (or decompressed) by many workers, on a
process pool or on Ray Data, resumable from a Parquet manifest.

Every file goes through the same per-file pipeline as ``slimfast compress IN... -o DIR``
(:func:`slimfast.jobs.code_file`, with the same :class:`~slimfast.jobs.Options`), so the bytes
are those of the command with the same options and thread count, on any executor and any number
of workers. The steps:

* :mod:`.sources` turns the sources (folders, globs, text files of paths) into jobs whose outputs
  mirror each folder's tree under the destination; :func:`slimfast.jobs.check_plan` then refuses
  collisions before anything is written.
* :mod:`.plan` reads the previous manifest and keeps what is already done (same source, size,
  mtime and options hash, and the output still there at the recorded size).
* :mod:`.local` (a process pool) or :mod:`.raydata` (Ray Data, imported only when chosen) runs
  the rest through :class:`.worker.Worker`, which loads the codec once per worker.
* :mod:`.runner` records every result in the manifest (:mod:`.manifest`), flushed as it goes,
  so that an interrupted run resumes, and returns a :class:`Summary`.

Neither Ray nor pyarrow is imported until a batch runs: the codec never needs them.
"""
from __future__ import annotations

from .runner import BatchConfig, Summary, run

__all__ = ["BatchConfig", "Summary", "run"]
