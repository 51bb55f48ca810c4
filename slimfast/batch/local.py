"""The ``local`` executor: a pool of worker processes on this machine.

Processes are spawned, not forked: the parent has loaded the codec (to check the options), and
a forked child would inherit ONNX Runtime sessions whose thread pools did not survive the fork.
Workers ignore SIGINT, so that Ctrl-C on a terminal reaches the parent only; the parent then stops
handing out work, lets each worker finish the task list it holds, and records the manifest.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from ..jobs import Options
from .worker import WORKER_ENV, Worker

_WORKER: Worker | None = None  # the one worker of this process (set by _start)


def _start(options: Options) -> None:
    global _WORKER
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _WORKER = Worker(options)


def _code(tasks: list[dict]) -> list[dict]:
    return _WORKER.code(tasks)


def chunks(tasks: list[dict], size: int) -> Iterator[list[dict]]:
    for i in range(0, len(tasks), size):
        yield tasks[i:i + size]


def run(tasks: list[dict], options: Options, workers: int, batch_size: int,
        on_results: Callable[[list[dict]], None]) -> None:
    """Code ``tasks`` on ``workers`` processes, ``batch_size`` tasks per hand-out; ``on_results``
    gets each hand-out's results as it comes back. A few hand-outs per worker are in flight at a
    time, so that a corpus of millions is never queued at once."""
    todo = chunks(tasks, batch_size)
    pending: set[Future] = set()

    def fill(pool: ProcessPoolExecutor) -> None:
        while len(pending) < 2 * workers and (batch := next(todo, None)) is not None:
            pending.add(pool.submit(_code, batch))

    ctx = multiprocessing.get_context("spawn")
    with _one_blas_thread(), ProcessPoolExecutor(workers, mp_context=ctx, initializer=_start,
                                                  initargs=(options,)) as pool:
        try:
            fill(pool)
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    pending.discard(future)
                    on_results(future.result())
                fill(pool)
        except BaseException:
            _finish_started(pool, pending, on_results)
            raise


@contextlib.contextmanager
def _one_blas_thread():
    """Workers start with :data:`.worker.WORKER_ENV` (one OpenBLAS thread, as the Ray actors do):
    several workers with a BLAS thread pool each oversubscribe the cores (2 workers ran at half the
    rate of 1). A spawned process copies this environment when it starts, before numpy loads in
    it; the user's own settings win."""
    unset = [k for k in WORKER_ENV if k not in os.environ]
    for k in unset:
        os.environ[k] = WORKER_ENV[k]
    try:
        yield
    finally:
        for k in unset:
            os.environ.pop(k, None)


def _finish_started(pool: ProcessPoolExecutor, pending: set[Future], on_results) -> None:
    """On the way out (Ctrl-C, a signal): drop the hand-outs not started, wait for those started
    (their outputs are being written anyway) and record them, so that a rerun need not redo them."""
    for future in pending:
        future.cancel()
    pool.shutdown(wait=True)
    for future in pending:
        if not future.cancelled() and future.exception() is None:
            on_results(future.result())
