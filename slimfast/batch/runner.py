"""One batch run: sources to jobs, the checks, the plan against the manifest, the executor, and
the manifest kept up to date while results come in (so that a stopped run resumes)."""
from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

from .. import jobs
from ..errors import SlimfastError
from ..jobs.files import os_text
from . import manifest, sources
from .plan import Plan, make_plan, output_folders

EXECUTORS = ("ray", "local")
COMMANDS = ("compress", "decompress")
# The manifest is rewritten whole: at most this often, or less often where a write takes long
# (5 times its own duration apart), so that millions of rows cost little; a run stopped by
# kill -9 redoes at most this much work.
FLUSH_SECONDS = 10.0


def default_executor() -> str:
    """``ray`` where Ray Data is installed (the ``slimfast[ray]`` extra), else ``local``."""
    return "ray" if importlib.util.find_spec("ray") else "local"


@dataclass(frozen=True)
class BatchConfig:
    executor: str = "local"          # ray or local
    workers: int | None = None       # None: the CPUs (of the cluster, for ray) // threads
    batch_size: int = 4              # tasks per hand-out to a worker
    address: str | None = None       # ray: an existing cluster's address; None: a local instance
    manifest: str | None = None      # None: DST/slimfast-manifest.parquet


@dataclass
class Summary:
    """What a run did. Byte and bpp figures cover this run's inputs that are done (coded now or
    kept from an earlier run); ``seconds`` is the executor's wall time, its start included."""

    files: int = 0
    coded: int = 0
    kept: int = 0
    failed: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    mean_bpp: float | None = None
    seconds: float = 0.0
    first_result_seconds: float | None = None
    workers: int = 0
    worker_stats: dict[str, dict] = field(default_factory=dict)  # host:pid -> files, peak_rss (bytes)
    manifest: str = ""

    @property
    def images_per_second(self) -> float:
        return self.coded / self.seconds if self.seconds > 0 else 0.0


class Book:
    """The manifest's rows during a run: results recorded as they arrive, written now and then."""

    def __init__(self, path: str, plan: Plan, previous: dict[str, dict], meta: dict):
        self.path, self.meta = path, meta
        self.rows = dict(plan.rows)  # this run's inputs first, then earlier runs' other rows
        self.rows.update((k, v) for k, v in previous.items() if k not in self.rows)
        self.stats: dict[str, dict] = {}
        self.started = time.perf_counter()
        self.first: float | None = None
        self.flushed, self.cost = 0.0, 0.0

    def record(self, results: list[dict]) -> list[dict]:
        """Results into their rows; returns the rows."""
        self.first = self.first or time.perf_counter() - self.started
        rows = []
        for r in results:
            row = self.rows[r["source"]]
            row.update((k, v) for k, v in r.items() if k in manifest.COLUMNS)
            rows.append(row)
            stat = self.stats.setdefault(r["worker"], {"files": 0, "peak_rss": 0})
            stat["files"] += 1
            stat["peak_rss"] = max(stat["peak_rss"], r.get("peak_rss") or 0)
        if time.monotonic() - self.flushed > max(FLUSH_SECONDS, 5 * self.cost):
            self.flush()
        return rows

    def flush(self) -> None:
        self.cost = manifest.write(self.path, self.rows.values(), self.meta)
        self.flushed = time.monotonic()


def run(srcs: Iterable[str], dst: str, options: jobs.Options, config: BatchConfig | None = None,
        progress: Callable[[list[dict], int], None] | None = None) -> Summary:
    """Compress (or decompress) every input of ``srcs`` into ``dst``. ``progress(rows, total)`` gets
    the rows settled as the run goes, and the number of inputs: first the rows settled by the plan
    (done earlier, or failed before the work), then each batch of results. A failed input is a ``failed`` row, never an exception;
    what stops the whole run (a bad option, a collision, a dead executor) raises
    :class:`SlimfastError`, and the manifest then records what was done."""
    config = config or BatchConfig()
    _check(dst, options, config)
    planned = sources.collect(srcs, dst, options)
    jobs.check_plan(planned, options)
    jobs.prepare(options)
    path = config.manifest or os.path.join(dst, manifest.NAME)
    previous = manifest.read(path)
    ohash = manifest.options_hash(options, model_id(options))
    plan = make_plan(planned, options.command, ohash, previous, options.force)
    _make_folders([dst, os.path.dirname(os.path.abspath(path)), *output_folders(plan.tasks)])
    book = Book(path, plan, previous, {"command": options.command, "options": asdict(options), "options_hash": ohash})
    book.flush()  # the pending rows first: they mark the outputs this run may write as its own
    if progress:
        progress([r for r in plan.rows.values() if r["status"] != "pending"], len(plan.rows))

    def on_results(results: list[dict]) -> None:
        rows = book.record(results)
        if progress:
            progress(rows, len(plan.rows))

    try:
        workers = _execute(plan, options, config, on_results)
    finally:
        book.flush()
    return _summary(plan, book, workers, path)


def _check(dst: str, options: jobs.Options, config: BatchConfig) -> None:
    if options.command not in COMMANDS:
        raise SlimfastError(f"batch runs {' or '.join(COMMANDS)}, not {options.command!r}")
    if config.executor not in EXECUTORS:
        raise SlimfastError(f"unknown executor {config.executor!r}; one of {', '.join(EXECUTORS)}")
    if config.workers is not None and config.workers < 1:
        raise SlimfastError("--workers must be at least 1")
    if config.batch_size < 1:
        raise SlimfastError("--batch-size must be at least 1")
    if config.address and config.executor != "ray":
        raise SlimfastError("--address names a Ray cluster: it needs --executor ray")
    if os.path.exists(dst) and not os.path.isdir(dst):
        raise SlimfastError(f"the destination {dst} is a file, not a folder")
    try:
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:
        raise SlimfastError(f"slimfast batch writes its manifest with pyarrow: pip install 'slimfast[ray]' ({exc})") from None


def model_id(options: jobs.Options) -> tuple | None:
    """The model compress loads (name, version, SHA-256) and the precision it codes at here
    (``auto`` resolved: a bf16 analysis writes other bytes): part of the options hash."""
    if options.command != "compress":
        return None
    codec = jobs.codec_for(options.model, options.settings)
    return codec.info.name, codec.info.version, codec.info.sha256, codec.precision["analysis"]


def _make_folders(folders: Iterable[str]) -> None:
    for folder in sorted(set(folders)):
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as exc:
            raise SlimfastError(f"cannot make the folder {folder}: {os_text(exc)}") from None


def threads_of(options: jobs.Options) -> int:
    return options.settings.threads or 1


def _execute(plan: Plan, options: jobs.Options, config: BatchConfig, on_results) -> int:
    """Run the plan's tasks on the chosen executor; the number of workers it ran."""
    if not plan.tasks:
        return 0
    threads = threads_of(options)
    try:
        if config.executor == "ray":
            from . import raydata

            return raydata.run(plan.tasks, options, config.workers, threads, config.batch_size, config.address,
                               on_results)
        from . import local

        workers = config.workers or max(1, (os.cpu_count() or 1) // threads)
        workers = min(workers, -(-len(plan.tasks) // config.batch_size))
        local.run(plan.tasks, options, workers, config.batch_size, on_results)
        return workers
    except SlimfastError:
        raise
    except Exception as exc:  # noqa: BLE001 - a dead worker or cluster: one line, and the manifest says what is done
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SlimfastError(f"the {config.executor} executor stopped ({type(exc).__name__}: {first}); "
                            "run the same command again to resume") from None


def _summary(plan: Plan, book: Book, workers: int, path: str) -> Summary:
    rows = [book.rows[s] for s in plan.rows]
    done = [r for r in rows if r["status"] == "ok"]
    bpps = [r["bpp"] for r in done if r["bpp"] is not None]
    return Summary(files=len(rows), coded=len(done) - plan.kept, kept=plan.kept,
                   failed=sum(r["status"] == "failed" for r in rows), bytes_in=sum(r["bytes_in"] or 0 for r in done),
                   bytes_out=sum(r["bytes_out"] or 0 for r in done), mean_bpp=sum(bpps) / len(bpps) if bpps else None,
                   seconds=time.perf_counter() - book.started, first_result_seconds=book.first, workers=workers,
                   worker_stats=book.stats, manifest=path)
