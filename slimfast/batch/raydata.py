"""The ``ray`` executor: Ray Data, on a local Ray instance or an existing cluster (``--address``).

The task list (source, output, force) becomes a dataset of small blocks; ``map_batches`` sends
them through a pool of :class:`CodecActor`\\ s, each of which loads the codec once and codes its
batches on ``threads`` CPU threads (it reserves that many CPUs); the driver streams the results
back and records them as they come. Workers read the sources and write the outputs themselves, by
path: on a cluster, every node must see the same files at the same paths (a shared file system).

Imported only when this executor runs: slimfast never needs Ray otherwise.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
from collections.abc import Callable

from ..errors import SlimfastError
from ..jobs import Options
from .manifest import arrow_schema
from .worker import RESULT_COLUMNS, WORKER_ENV, Worker

MAX_BLOCKS = 10_000  # more blocks than this cost the driver more than they balance the load


def _ray():
    try:
        import ray
        import ray.data
    except ImportError as exc:
        raise SlimfastError(f"--executor ray needs Ray Data: pip install 'slimfast[ray]' ({exc})") from None
    return ray


class CodecActor:
    """A Ray Data actor: one :class:`Worker` (the codec loaded once), called on Arrow batches of tasks."""

    def __init__(self, options: Options):
        self.worker = Worker(options)
        self.schema = arrow_schema(RESULT_COLUMNS)

    def __call__(self, batch):
        import pyarrow as pa

        return pa.Table.from_pylist(self.worker.code(batch.to_pylist()), schema=self.schema)


def connect(address: str | None, workers: int | None, threads: int) -> tuple[bool, int]:
    """Join the cluster at ``address`` (else at Ray's own ``RAY_ADDRESS``, where set), or start a
    local instance with ``workers * threads`` CPUs (all of them without ``workers``), even where
    ``ray start`` runs one here; an instance this process already runs is used as it is. Returns
    (whether this call connected, the number of workers: the CPUs // threads without ``workers``)."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        cluster = address or os.environ.get("RAY_ADDRESS")
        common = {"include_dashboard": False, "log_to_driver": False, "runtime_env": {"env_vars": WORKER_ENV}}
        with _signals_kept():
            if cluster:
                ray.init(address=cluster, logging_level=logging.WARNING, **common)
            else:  # an instance of our own, for this command only: its notices are not the user's concern
                ray.init(address="local", num_cpus=workers * threads if workers else None,
                         logging_level=logging.ERROR, **common)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    if workers is None:
        workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads)
    return started, workers


@contextlib.contextmanager
def _signals_kept():
    """ray.init replaces the SIGTERM and SIGINT handlers (its own exits with status 15 and prints a
    stack); the command's come back, so that a signal ends a batch like any command: the manifest
    written, exit status 128 + the signal."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, handler in saved.items():
            if handler is not None:
                signal.signal(s, handler)


def _blocks(tasks: list[dict], batch_size: int):
    """The tasks as Arrow tables, one block each: actors take blocks, so a single block would
    keep all but one of them idle."""
    import pyarrow as pa

    columns = {"source": "string", "output": "string", "force": "bool"}
    table = pa.Table.from_pylist(tasks, schema=arrow_schema(columns))
    size = max(batch_size, math.ceil(len(tasks) / MAX_BLOCKS))
    return [table.slice(i, size) for i in range(0, len(tasks), size)]


def run(tasks: list[dict], options: Options, workers: int | None, threads: int, batch_size: int,
        address: str | None, on_results: Callable[[list[dict]], None]) -> int:
    """Code ``tasks`` on a pool of actors; ``on_results`` gets each block's results as it comes
    back. Returns the number of workers."""
    ray = _ray()
    blocks = _blocks(tasks, batch_size)
    started, workers = connect(address, min(workers, len(blocks)) if workers else None, threads)
    workers = min(workers, len(blocks))  # an actor without a block would only cost its start
    try:
        with _quiet_datasets(ray):
            ds = ray.data.from_arrow(blocks)
            ds = _map(ds, ray, options, batch_size, workers, threads)
            _stream(ds, on_results)
    finally:
        if started:
            ray.shutdown()
    return workers


def _map(ds, ray, options: Options, batch_size: int, workers: int, threads: int):
    """The dataset through the actor pool. Actors are not restarted (``max_restarts=0``): a batch
    resumes from its manifest anyway, and a restartable actor whose constructor arguments live in
    the object store makes Ray print an error-level line on stderr for every run (ray issue 53727).
    Ray Data takes the option among its deprecated extra arguments (the named ones have none yet),
    so its deprecation warning is silenced, and a Ray without them gets the defaults."""
    import warnings

    kwargs = dict(fn_constructor_kwargs={"options": options}, batch_size=batch_size, batch_format="pyarrow",
                  compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*ray_remote_args.*deprecated")
            return ds.map_batches(CodecActor, max_restarts=0, **kwargs)
    except TypeError:
        return ds.map_batches(CodecActor, **kwargs)


@contextlib.contextmanager
def _quiet_datasets(ray):
    """No progress bars or start notices from Ray Data (the command draws its own bar, on a
    terminal only); the caller's settings come back afterwards."""
    ctx = ray.data.DataContext.get_current()
    saved = ctx.enable_progress_bars, ctx.print_on_execution_start
    ctx.enable_progress_bars = ctx.print_on_execution_start = False
    try:
        yield
    finally:
        ctx.enable_progress_bars, ctx.print_on_execution_start = saved


def _stream(ds, on_results) -> None:
    results = iter(ds.iter_batches(batch_format="pyarrow", batch_size=None))
    try:
        for batch in results:
            on_results(batch.to_pylist())
    finally:
        close = getattr(results, "close", None)
        if close:  # stops the dataset's execution now, not when the iterator is collected
            close()
