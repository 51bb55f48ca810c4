"""What a run reports: ``log.csv``, its running averages, the progress bar and ``training.png``."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

LOG_FIELDS = ["step", "minutes", "kind", "loss", "bpp", "psnr", "lr", "msssim"]


class Averages:
    """Running averages (progress) and the sums of the current log interval (``train`` rows).

    Both are part of the checkpoint: a resumed run writes the same rows as an uninterrupted one.
    """

    def __init__(self, log_acc: dict | None = None, run_avg: dict | None = None):
        self.log_acc = log_acc if log_acc is not None else {"n": 0, "sum": {}}
        self.run_avg: dict[str, float] = run_avg if run_avg is not None else {}

    def add(self, vals: dict) -> None:
        for k, v in vals.items():
            self.run_avg[k] = 0.98 * self.run_avg.get(k, v) + 0.02 * v
            self.log_acc["sum"][k] = self.log_acc["sum"].get(k, 0.0) + v
        self.log_acc["n"] += 1

    @property
    def pending(self) -> int:
        return self.log_acc["n"]

    def interval_means(self) -> dict:
        n = max(self.log_acc["n"], 1)
        return {k: v / n for k, v in self.log_acc["sum"].items()}

    def reset_interval(self) -> None:
        self.log_acc = {"n": 0, "sum": {}}

    def state(self) -> dict:
        return {"log_acc": self.log_acc, "run_avg": self.run_avg}


def read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f)]


class LogFile:
    """``log.csv``, rewritten on opening to the rows up to the checkpoint's step.

    Rows past the checkpoint (written before an interruption) belong to no trajectory.
    """

    def __init__(self, path: Path, resume_step: int):
        old_rows = [r for r in read_log(path) if r.get("step") and float(r["step"]) <= resume_step]
        self._file = open(path, "w", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=LOG_FIELDS, extrasaction="ignore")
        self._writer.writeheader()
        self._writer.writerows(old_rows)
        self._file.flush()

    def train_row(self, step: int, minutes: float, means: dict, lr: float) -> None:
        self._writer.writerow({"step": step, "minutes": f"{minutes:.3f}", "kind": "train",
                               "loss": f"{means['loss']:.7g}", "bpp": f"{means['bpp']:.7g}",
                               "psnr": f"{means['psnr']:.7g}", "lr": f"{lr:.6g}"})
        self._file.flush()

    def val_row(self, step: int, minutes: float, v: dict, lr: float) -> str:
        """One ``val`` (``val@W``) row; returns its one-line summary."""
        kind = "val" if v.get("width") is None else f"val@{v['width']}"
        row = {"step": step, "minutes": f"{minutes:.3f}", "kind": kind,
               "bpp": f"{v['bpp']:.7g}", "psnr": f"{v['psnr']:.7g}", "lr": f"{lr:.6g}"}
        msg = f"step {step} {kind}: {v['bpp']:.4f} bpp {v['psnr']:.2f} dB"
        if "msssim" in v:
            row["msssim"] = f"{v['msssim']:.7g}"
            msg += f" MS-SSIM {v['msssim']:.4f}"
        self._writer.writerow(row)
        return msg

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class Progress:
    """A tqdm bar where tqdm is installed and wanted, else a line every 500 steps."""

    def __init__(self, enabled: bool, total: int | None, initial: int):
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, mininterval=2)
            except ImportError:
                pass

    def update(self, step: int, avg: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        if step % 10 == 0:
            self.bar.set_postfix(loss=f"{avg['loss']:.4f}", bpp=f"{avg['bpp']:.3f}", psnr=f"{avg['psnr']:.2f}",
                                 refresh=False)

    def every_500(self, step: int, minutes: float, avg: dict) -> None:
        if self.bar is None and step % 500 == 0:
            balance = f" D weight x{avg['balance_d']:.3f}" if "balance_d" in avg else ""
            print(f"step {step} ({minutes:.1f} min): loss {avg['loss']:.4f} bpp {avg['bpp']:.4f} "
                  f"PSNR {avg['psnr']:.2f}{balance}", file=sys.stderr)

    def write(self, msg: str) -> None:
        self.bar.write(msg) if self.bar is not None else print(msg, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def plot_log(run: Path) -> Path | None:
    """``training.png`` (loss, bpp, PSNR against step; validation as markers) if matplotlib is there."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from ..plots import training_plot

    rows = []
    for r in read_log(run / "log.csv"):
        row = {"kind": r.get("kind", "train")}
        for k in ("step", "loss", "bpp", "psnr"):
            try:
                row[k] = float(r[k])
            except (KeyError, TypeError, ValueError):
                row[k] = None
        rows.append(row)
    if not rows:
        return None
    try:
        return training_plot({run.name: rows}, run / "training.png")
    except Exception as e:  # a plot never fails a training run
        print(f"warning: no training plot: {e}", file=sys.stderr)
        return None
