"""A worker process: one codec on one thread, answering jobs from the server over a pipe
(a socket pair whose end the server passes as a file descriptor).

Messages in: ``(job, args)``; out: ``("ok", result)`` or ``("error", status, message)``; at
start, ``("ready", pid)`` once the default model is loaded, or ``("failed", message)``. The
server kills a worker that runs over the request time limit and starts another, so a job never
needs to watch the clock itself.
"""
from __future__ import annotations

import os
import signal
import sys
import traceback

from . import compare, jobs

JOBS = {
    "compress": jobs.compress,
    "decompress": jobs.decompress,
    "compare": compare.compare,
}


def handle(message) -> tuple:
    job, args = message
    try:
        return ("ok", JOBS[job](*args))
    except jobs.JobError as exc:
        return ("error", exc.status, exc.message)
    except MemoryError:
        return ("error", 503, "the server ran out of memory for this request")
    except Exception:  # noqa: BLE001 - a bug, not the request's fault: logged here, never sent to the client
        traceback.print_exc(file=sys.stderr)
        return ("error", 500, "internal error")


def main(conn, model: str | None) -> None:
    """Serve jobs on ``conn`` until the server closes it."""
    # The server process handles Ctrl-C and stops its workers; a worker reacting as well would
    # only print a traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        jobs.codec(model)
    except Exception as exc:  # noqa: BLE001 - reported to the server, which fails to start with it
        conn.send(("failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the server closed its end: it stopped, or replaced this worker
            return
        conn.send(handle(message))


if __name__ == "__main__":  # python -m slimfast.serve.worker FD MODEL: how the pool starts a worker
    from multiprocessing.connection import Connection

    main(Connection(int(sys.argv[1])), sys.argv[2] or None)
