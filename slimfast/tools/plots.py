"""PNG plots of evaluation, benchmark and training results (matplotlib, Agg backend).

Every function takes plain dicts and lists (as stored in ``results.json`` / ``bench.json``),
writes one PNG and returns its path. matplotlib is imported only when a plot is drawn.

Curve dicts: ``{"name", "kind": "learned"|"baseline"|"anchor", "points": [{"bpp", METRIC}]}``.
Learned curves are drawn thick with round markers, baselines thin, published anchors dashed.
"""
from __future__ import annotations

from pathlib import Path

METRIC_LABELS = {"psnr": "PSNR-RGB (dB)", "msssim_db": "MS-SSIM (dB)", "msssim": "MS-SSIM"}
ANCHOR_SOURCE = "CompressAI model zoo, bmshj2018"


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _xy(points, metric):
    pts = sorted((p["bpp"], p[metric]) for p in points
                 if p.get("bpp") is not None and p.get(metric) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def rd_plot(curves: list[dict], metric: str, path: str | Path, title: str = "",
            note: str = "") -> Path:
    """Rate-distortion curves: bpp on x, ``metric`` on y."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    for c in curves:
        xs, ys = _xy(c["points"], metric)
        if not xs:
            continue
        kind = c.get("kind", "baseline")
        if kind == "learned":
            ax.plot(xs, ys, "-o", lw=2.2, ms=5, label=c["name"], zorder=3)
        elif kind == "anchor":
            ax.plot(xs, ys, "--x", lw=1.2, ms=4, color="0.45" if "factorized" in c["name"] else "0.2",
                    label=f"{c['name']} (published: {ANCHOR_SOURCE})", zorder=2)
        else:
            ax.plot(xs, ys, "-", marker=".", lw=1.0, ms=5, alpha=0.85, label=c.get("label", c["name"]), zorder=1)
    ax.set_xlabel("bits per pixel (from real file sizes)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(title or f"Rate-distortion: {METRIC_LABELS.get(metric, metric)}")
    ax.grid(True, alpha=0.3)
    # Keep the interesting range: up to the learned/published curves' top rate (at least 2 bpp).
    focus = [p["bpp"] for c in curves if c.get("kind") in ("learned", "anchor") for p in c["points"]
             if p.get("bpp") is not None and p.get(metric) is not None]
    every = [p["bpp"] for c in curves for p in c["points"] if p.get("bpp") is not None and p.get(metric) is not None]
    if every:
        ax.set_xlim(0, min(max(every) * 1.03, max(2.0, 1.25 * max(focus, default=0.0))))
    ax.legend(fontsize=8, loc="upper left")
    if note:
        fig.text(0.01, 0.005, note, fontsize=7, color="0.35")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path


def speed_plot(entries: list[dict], path: str | Path, reference: str = "jpeg", title: str = "") -> Path:
    """Decode time (log scale) against BD-rate vs ``reference``; ``entries``: name, kind, bd_rate, dec_ms."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    for e in entries:
        if e.get("bd_rate") is None or not e.get("dec_ms"):
            continue
        learned = e.get("kind") == "learned"
        ax.scatter([e["bd_rate"]], [e["dec_ms"]], s=70 if learned else 40,
                   marker="o" if learned else "s", color="tab:red" if learned else "tab:blue", zorder=3)
        ax.annotate(e["name"], (e["bd_rate"], e["dec_ms"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_yscale("log")
    ax.set_xlabel(f"BD-rate vs {reference} (PSNR, %; lower is better)")
    ax.set_ylabel("mean decode time per image (ms, log scale)")
    ax.set_title(title or "Decode time vs compression efficiency")
    ax.grid(True, which="both", alpha=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def size_plot(rows: list[dict], path: str | Path) -> Path:
    """Bench size sweep: encode/decode time and peak memory against megapixels, one line per model."""
    plt = _plt()
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.5), dpi=110)
    by_model: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("error") is None:
            by_model.setdefault(r["model"], []).append(r)
    for name, rs in by_model.items():
        rs = sorted(rs, key=lambda r: r["mp"])
        mp = [r["mp"] for r in rs]
        a1.plot(mp, [r["enc_ms"] for r in rs], "-o", label=f"{name} encode")
        a1.plot(mp, [r["dec_ms"] for r in rs], "--o", label=f"{name} decode")
        a2.plot(mp, [r["peak_rss_mb"] for r in rs], "-o", label=f"{name} peak RSS")
    a1.set(xlabel="megapixels", ylabel="median time (ms)", title="Time vs image size", xscale="log", yscale="log")
    a2.set(xlabel="megapixels", ylabel="peak RSS of the process (MB)", title="Memory vs image size", xscale="log")
    for a in (a1, a2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def training_plot(runs: dict[str, list[dict]], path: str | Path) -> Path:
    """Training logs (``runs/*/log.csv`` rows): loss, bpp and PSNR against step; val as markers."""
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2), dpi=100)
    for i, (name, rows) in enumerate(sorted(runs.items())):
        color = f"C{i % 10}"
        for kind, style in (("train", "-"), ("val", "o")):
            rs = [r for r in rows if r.get("kind", "train") == kind]
            if not rs:
                continue
            for ax, key in zip(axes, ("loss", "bpp", "psnr")):
                pts = [(r["step"], r[key]) for r in rs if r.get(key) is not None]
                if pts:
                    ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=color, ms=3,
                            lw=1, alpha=0.8 if kind == "train" else 1, label=f"{name} ({kind})")
    for ax, key in zip(axes, ("loss", "bpp", "psnr")):
        ax.set(xlabel="step", title=key)
        ax.grid(True, alpha=0.3)
    axes[0].set_yscale("log")
    axes[2].legend(fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
