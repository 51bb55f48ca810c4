"""A pool of worker processes that the server can kill and replace one at a time.

``concurrent.futures.ProcessPoolExecutor`` cannot stop one running task: a request over its
time limit would hold its worker until done. Here each worker is a process with its own pipe:
the server sends a job to an idle worker, waits for the reply up to the time
limit, and on a timeout kills that process and starts another in its place.

Waiting requests are bounded (``queue``): one more is refused at once (:class:`Busy`, a 503 with
``Retry-After``) rather than piling up.
"""
from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

log = logging.getLogger("slimfast.serve")
# One thread per worker: N workers on N cores, numpy's BLAS included.
ONE_THREAD = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
START_TIMEOUT_S = 120.0  # a first start may build and cache the ONNX graphs


class PoolError(Exception):
    """The pool could not run a job; ``status`` and ``headers`` for the HTTP reply."""

    status = 503
    headers: dict = {}


class Busy(PoolError):
    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy ({retry_after} s until a worker is likely free); retry later")
        self.headers = {"Retry-After": str(retry_after)}


class TimedOut(PoolError):
    status = 504

    def __init__(self, seconds: float):
        super().__init__(f"the request ran over this server's time limit of {seconds:g} s (its worker was replaced)")


class WorkerLost(PoolError):
    status = 500

    def __init__(self):
        super().__init__("the worker coding this request stopped unexpectedly (it was replaced)")


class Worker:
    """One worker process and the server's end of its pipe; its methods block (run them in threads).

    A fresh interpreter (``python -m slimfast.serve.worker``), not a fork: forking the server would
    copy uvicorn's threads and locks, and multiprocessing's spawn would import the program's main
    script again, which need not be import-safe.
    """

    def __init__(self, model: str | None):
        self.conn, child = multiprocessing.Pipe()
        env = {**os.environ, **ONE_THREAD}
        try:
            self.process = subprocess.Popen([sys.executable, "-m", "slimfast.serve.worker", str(child.fileno()),
                                             model or ""], pass_fds=[child.fileno()], env=env,
                                            stdin=subprocess.DEVNULL)
        finally:
            child.close()
        self.pid = self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"a worker did not start within {timeout:g} s")
        try:
            reply = self.conn.recv()
        except EOFError:
            raise RuntimeError(f"a worker exited while starting (status {self.process.wait()})") from None
        if reply[0] != "ready":
            raise RuntimeError(reply[1])

    def roundtrip(self, message, timeout: float):
        """The worker's reply to ``message``; ``None`` when it did not come within ``timeout``."""
        self.conn.send(message)
        if not self.conn.poll(timeout):
            return None
        return self.conn.recv()

    def stop(self) -> None:
        self.conn.close()
        self.process.kill()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:  # unkillable for now (D state): the OS reaps it later
            pass


class WorkerPool:
    """``size`` workers that each load ``model`` at start; at most ``queue`` requests wait."""

    def __init__(self, size: int, model: str | None = None, queue: int = 16):
        self.size, self.model, self.queue = size, model, queue
        self._idle: asyncio.Queue[Worker] = asyncio.Queue()
        self._workers: set[Worker] = set()
        self._threads = ThreadPoolExecutor(max_workers=2 * size + 2, thread_name_prefix="slimfast-serve-pipe")
        self._tasks: set[asyncio.Task] = set()
        self.waiting = self.busy = self.replaced = self.done = 0
        self._mean_s = 1.0  # a running mean of job times, for Retry-After

    async def start(self) -> None:
        await asyncio.gather(*(self._spawn() for _ in range(self.size)))

    async def stop(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for w in list(self._workers):
            w.stop()
        self._workers.clear()
        self._threads.shutdown(wait=False, cancel_futures=True)

    async def _spawn(self) -> None:
        loop = asyncio.get_running_loop()
        w = await loop.run_in_executor(self._threads, Worker, self.model)
        self._workers.add(w)
        try:
            await loop.run_in_executor(self._threads, w.wait_ready, START_TIMEOUT_S)
        except Exception:
            self._retire(w)
            raise
        self._idle.put_nowait(w)

    def _retire(self, w: Worker) -> None:
        self._workers.discard(w)
        w.stop()

    def _replace(self, w: Worker) -> None:
        """Kill ``w`` and start another in the background; requests wait for it meanwhile."""
        self.replaced += 1
        self._retire(w)
        task = asyncio.get_running_loop().create_task(self._respawn())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _respawn(self) -> None:
        """Start a replacement, trying again each second: requests wait rather than fail meanwhile."""
        while True:
            try:
                return await self._spawn()
            except Exception as exc:  # noqa: BLE001 - logged; the next try may succeed (memory freed)
                log.error("slimfast serve: cannot start a worker: %s", exc)
                await asyncio.sleep(1)

    def retry_after(self) -> int:
        """Seconds until a worker is likely free: the mean job time times the jobs ahead per worker."""
        ahead = (self.waiting + self.busy) / max(1, self.size)
        return max(1, min(60, math.ceil(self._mean_s * ahead)))

    async def _take(self) -> Worker:
        """An idle worker that is still alive; one that died while idle is replaced."""
        while True:
            w = await self._idle.get()
            if w.alive():
                return w
            self._replace(w)

    async def run(self, job: str, args: tuple, timeout: float):
        """The worker's reply to ``job(*args)``: ``("ok", result)`` or ``("error", status, message)``;
        a :class:`PoolError` when no worker could answer."""
        if self.waiting >= self.queue and self._idle.empty():
            raise Busy(self.retry_after())
        self.waiting += 1
        try:
            w = await self._take()
        finally:
            self.waiting -= 1
        self.busy += 1
        started = time.perf_counter()
        call = asyncio.get_running_loop().run_in_executor(self._threads, w.roundtrip, (job, args), timeout)
        try:
            reply = await asyncio.shield(call)
        except asyncio.CancelledError:  # the client went away: the worker is still coding
            call.add_done_callback(lambda f: self._finish(w, f, started))
            raise
        except Exception:  # the pipe broke: the worker died (out of memory, a crash)
            self._finish(w, call, started)
            raise WorkerLost() from None
        self._finish(w, call, started)
        if reply is None:
            raise TimedOut(timeout)
        return reply

    def _finish(self, w: Worker, call, started: float) -> None:
        """Return ``w`` to the idle workers, or replace it if its job timed out or it died."""
        self.busy -= 1
        self.done += 1
        self._mean_s += (time.perf_counter() - started - self._mean_s) / min(self.done, 20)
        ok = not call.cancelled() and call.exception() is None and call.result() is not None
        if ok and w.alive():
            self._idle.put_nowait(w)
        else:
            self._replace(w)

    def stats(self) -> dict:
        return {"workers": self.size, "alive": sum(w.alive() for w in self._workers),
                "idle": self._idle.qsize(), "busy": self.busy, "waiting": self.waiting, "queue": self.queue,
                "replaced": self.replaced, "done": self.done, "pids": sorted(w.pid for w in self._workers)}
