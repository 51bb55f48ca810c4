"""One worker of a batch, whichever executor runs it: the codec loaded once, then task after task
through :func:`slimfast.jobs.code_file` (the pipeline of ``slimfast compress``)."""
from __future__ import annotations

import dataclasses
import os
import socket
from datetime import datetime, timezone

from .. import jobs

# The library's own threads, for every executor's workers: one each (the networks take --threads through
# the settings). An environment variable is the only way to tell OpenBLAS, and it must be set before
# numpy loads in the worker's process.
# Workers share the CPUs: ONNX Runtime's threads stay unpinned (pinned, every worker's would sit on the same CPUs).
WORKER_ENV = {"OPENBLAS_NUM_THREADS": "1", "SLIMFAST_ORT_AFFINITY": "0"}

# What a worker sends back per task (besides the source, which keys it): the record's figures,
# which worker coded it, when, and the worker's peak memory so far.
RESULT_COLUMNS = {"source": "string", "status": "string", "error": "string", "bytes_in": "int64",
                  "bytes_out": "int64", "bpp": "float64", "model": "string", "version": "string",
                  "seconds": "float64", "worker": "string", "time": "timestamp", "peak_rss": "int64"}


def peak_rss() -> int:
    """This process's peak resident memory in bytes (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    scale = 1 if os.uname().sysname == "Darwin" else 1024  # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


class Worker:
    """Loads the codec of ``options`` at construction (once per worker process), then codes tasks."""

    def __init__(self, options: jobs.Options):
        self.options = options
        # The same options with force: for outputs that the plan found to be the batch's own.
        self.forced = dataclasses.replace(options, force=True)
        jobs.prepare(options)
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    def code(self, tasks: list[dict]) -> list[dict]:
        return [self.code_one(t) for t in tasks]

    def code_one(self, task: dict) -> dict:
        job = jobs.Job(task["source"], task["output"])
        r = jobs.code_file(job, self.forced if task["force"] else self.options)
        return {"source": r.source, "status": r.status, "error": r.error, "bytes_in": r.bytes_in,
                "bytes_out": r.bytes_out, "bpp": r.bpp, "model": r.model, "version": r.version,
                "seconds": r.seconds, "worker": self.name, "time": datetime.now(timezone.utc),
                "peak_rss": peak_rss()}
