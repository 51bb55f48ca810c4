"""What a run must do, given the previous manifest: keep the inputs already done, settle at once
the ones that cannot run, and list the rest as tasks.

An input is **done** when its previous row is ``ok`` for the same output and options hash, its
source still has the size and mtime recorded, and the output is still there at the size
recorded. Everything else is redone: failed and pending rows, changed sources, other options.

An existing output is replaced only with ``--force`` or when the manifest says it is the
batch's own (``output_ours``: a file written by an earlier run, or by this one before it was
stopped); any other file in the way fails that input before the work, as ``compress`` does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..jobs import Job
from ..jobs.files import os_text
from .manifest import COLUMNS


@dataclass
class Plan:
    rows: dict[str, dict] = field(default_factory=dict)   # this run's inputs by source, in order
    tasks: list[dict] = field(default_factory=list)       # to code: source, output, force
    kept: int = 0                                          # done by an earlier run

    @property
    def failed(self) -> int:
        return sum(r["status"] == "failed" for r in self.rows.values())


def now() -> datetime:
    return datetime.now(timezone.utc)


def blank_row(job: Job, command: str, options_hash: str) -> dict:
    row = dict.fromkeys(COLUMNS)
    row.update(source=job.source, output=job.output, command=command, options_hash=options_hash,
               status="pending", output_ours=True, time=now())
    return row


def make_plan(jobs: list[Job], command: str, options_hash: str, previous: dict[str, dict], force: bool) -> Plan:
    plan = Plan()
    for job in jobs:
        prev = previous.get(job.source)
        row = blank_row(job, command, options_hash)
        plan.rows[job.source] = row
        try:
            st = os.stat(job.source)
        except OSError as exc:
            row.update(status="failed", error=os_text(exc))
            continue
        row.update(source_size=st.st_size, source_mtime_ns=st.st_mtime_ns)
        if is_done(prev, row):
            plan.rows[job.source] = prev
            plan.kept += 1
            continue
        ours = bool(prev and prev["output"] == job.output and prev["output_ours"])
        if not (force or ours) and os.path.lexists(job.output):
            row.update(status="failed", error=f"{job.output} exists (use --force to overwrite)", output_ours=False)
            continue
        plan.tasks.append({"source": job.source, "output": job.output, "force": force or ours})
    return plan


def is_done(prev: dict | None, row: dict) -> bool:
    if not prev or prev["status"] != "ok":
        return False
    same = all(prev[k] == row[k] for k in ("output", "options_hash", "source_size", "source_mtime_ns"))
    return same and _size(prev["output"]) == prev["bytes_out"]


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def output_folders(tasks: list[dict]) -> set[str]:
    return {os.path.dirname(t["output"]) for t in tasks}
