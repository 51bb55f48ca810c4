"""Load test of ``slimfast serve`` on loopback: throughput, latency and memory against workers.

For each worker count, it starts ``python -m slimfast.serve`` on a free 127.0.0.1 port, warms
every worker, then runs N concurrent clients (threads, one keep-alive connection each) for a
fixed time, each alternating POST /v1/compress of a photo crop and POST /v1/decompress of the
result. Bounded: ``--seconds`` per run and ``--max-requests`` in all per run. Reported per
worker count: requests per second, latency p50 / p90 / p99, errors (anything but a 200; must be
0), and the server's resident memory (the server, its fork server and workers, summed from
/proc) after warm-up, each second under load, and after the run; ``rss_growth_under_load_mb`` is
the peak of the run's last third less that of its first (about 0 when memory is stable).
Exit status 1 on any error.

    python benchmarks/serve_load.py [--workers 1 2] [--clients 4] [--seconds 10] [--max-requests 5000]
                                    [--size 384x256] [--out benchmarks/results/serve_load.json]
"""
from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "slimfast" / "data" / "kodim23.png"
HOST = "127.0.0.1"  # loopback only: this never talks to another machine


def photo(size: tuple[int, int]) -> bytes:
    from PIL import Image

    im = Image.open(SAMPLE).convert("RGB")
    w, h = min(size[0], im.width), min(size[1], im.height)
    left, top = (im.width - w) // 2, (im.height - h) // 2
    buf = io.BytesIO()
    im.crop((left, top, left + w, top + h)).save(buf, "PNG")
    return buf.getvalue()


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (Linux /proc; 0 elsewhere)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


class Server:
    def __init__(self, workers: int):
        self.port = free_port()
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "slimfast.serve", "--host", HOST, "--port", str(self.port),
                                      "--workers", str(workers), "--log-level", "warning"], cwd=ROOT, env=env)
        self.wait_healthy()

    def wait_healthy(self, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"slimfast serve exited with status {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://{HOST}:{self.port}/healthz", timeout=2) as r:
                    if json.load(r)["status"] == "ok":
                        return
            except OSError:
                time.sleep(0.2)
        raise SystemExit("slimfast serve did not become healthy")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def post(conn: http.client.HTTPConnection, path: str, body: bytes) -> tuple[int, bytes]:
    conn.request("POST", path, body=body, headers={"Content-Type": "application/octet-stream"})
    r = conn.getresponse()
    return r.status, r.read()


class Client(threading.Thread):
    """One connection, alternating compress and decompress until the deadline or the shared budget."""

    def __init__(self, port: int, image: bytes, deadline: float, budget: list, lock: threading.Lock):
        super().__init__(daemon=True)
        self.port, self.image, self.deadline, self.budget, self.lock = port, image, deadline, budget, lock
        self.latencies: list[float] = []
        self.errors: list[str] = []

    def _take(self) -> bool:
        with self.lock:
            if self.budget[0] <= 0:
                return False
            self.budget[0] -= 1
            return True

    def run(self) -> None:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
        sfi = None
        while time.monotonic() < self.deadline and self._take():
            path, body = ("/v1/decompress", sfi) if sfi else ("/v1/compress", self.image)
            t0 = time.perf_counter()
            try:
                status, data = post(conn, path, body)
            except OSError as exc:
                self.errors.append(f"{path}: {exc}")
                conn = http.client.HTTPConnection(HOST, self.port, timeout=120)
                continue
            self.latencies.append(time.perf_counter() - t0)
            if status != 200:
                self.errors.append(f"{path}: HTTP {status} {data[:200]!r}")
            sfi = data if path == "/v1/compress" and status == 200 else None
        conn.close()


def load(port: int, image: bytes, clients: int, seconds: float, max_requests: int, pid: int | None = None) -> dict:
    deadline, budget, lock = time.monotonic() + seconds, [max_requests], threading.Lock()
    threads = [Client(port, image, deadline, budget, lock) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    rss = []  # the server's memory each second: it should level off, not climb
    while any(t.is_alive() for t in threads):
        time.sleep(min(1.0, max(0.05, deadline - time.monotonic())))
        if pid is not None:
            rss.append(round(tree_rss(pid) / 2**20, 1))
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    lat = np.array([x for t in threads for x in t.latencies]) * 1000
    errors = [e for t in threads for e in t.errors]
    return {"requests": int(lat.size), "seconds": round(wall, 3), "throughput_rps": round(lat.size / wall, 2),
            "latency_ms": {f"p{p}": round(float(np.percentile(lat, p)), 1) for p in (50, 90, 99)} if lat.size else {},
            "errors": len(errors), "error_samples": errors[:5], "rss_mb_each_second": rss}


def warm(port: int, image: bytes, workers: int) -> None:
    """Each worker loads its encoder and decoder before the clock starts."""
    load(port, image, clients=workers, seconds=60, max_requests=4 * workers)


def run_one(workers: int, args, image: bytes) -> dict:
    server = Server(workers)
    try:
        warm(server.port, image, workers)
        rss_before = tree_rss(server.proc.pid)
        result = load(server.port, image, args.clients, args.seconds, args.max_requests, server.proc.pid)
        series = result["rss_mb_each_second"]
        third = max(1, len(series) // 3)
        result.update(workers=workers, clients=args.clients, rss_before_mb=round(rss_before / 2**20, 1),
                      rss_after_mb=round(tree_rss(server.proc.pid) / 2**20, 1),
                      rss_growth_under_load_mb=round(max(series[-third:]) - max(series[:third]), 1) if series else None)
        return result
    finally:
        server.stop()


def environment() -> dict:
    try:
        from slimfast.tools.machine import environment as machine_environment
    except ImportError:  # the tools moved or are absent: the measurement stands without them
        return {"cpus_usable": len(os.sched_getaffinity(0))}
    return machine_environment(threads=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients (default 4)")
    ap.add_argument("--seconds", type=float, default=10.0, help="load time per worker count (default 10)")
    ap.add_argument("--max-requests", type=int, default=5000, help="at most this many requests per worker count")
    ap.add_argument("--size", default="384x256", help="the photo crop, WxH (default 384x256)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "serve_load.json"))
    args = ap.parse_args(argv)
    size = tuple(int(v) for v in args.size.lower().split("x"))
    image = photo(size)
    busy = os.getloadavg()[0]  # other work on the machine shares its cores: recorded, since it caps throughput
    runs = [run_one(w, args, image) for w in args.workers]
    res = {"image": f"kodim23 crop {size[0]}x{size[1]}, {len(image)} bytes PNG", "host": HOST,
           "load_average_1min_before": round(busy, 2),
           "mix": "per client: compress the photo, decompress the result, repeat", "runs": runs,
           "environment": environment()}
    Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    print(f"{'workers':>7} {'clients':>7} {'req/s':>7} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'errors':>6} "
          f"{'RSS before':>10} {'RSS after':>9} {'growth':>7}")
    for r in runs:
        lat = r["latency_ms"]
        print(f"{r['workers']:>7} {r['clients']:>7} {r['throughput_rps']:>7} {lat.get('p50', '-'):>7} "
              f"{lat.get('p90', '-'):>7} {lat.get('p99', '-'):>7} {r['errors']:>6} {r['rss_before_mb']:>8} MB "
              f"{r['rss_after_mb']:>6} MB {r['rss_growth_under_load_mb']:>4} MB")
    if busy > 0.5:
        print(f"note: the machine's load average was {busy:.1f} before the run: other work shared its cores")
    print(f"wrote {args.out}")
    return 1 if any(r["errors"] for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
