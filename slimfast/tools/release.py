"""Turn a trained checkpoint into a shipped model: weights + model card with measured Kodak RD.

    python -m slimfast.tools.release runs/fasinet-h-mse-0.013/final.safetensors \\
        --name fasinet-h-mse-q4 --family fasinet-h-mse --version 5 [--default] [--kodak ../shared/data/kodak]

The weights are re-saved under their public name, fp16 where exactness allows or, with
``--storage int8``, convolution weights packed to int8 (:mod:`slimfast.format.storage`; half the
bytes). The card records the SHA-256 that pins them; with int8 and Kodak at hand it also
records the fp16 points and what the packing costs. Kodak is used for measurement only, never
for training.
A (name, version) that already exists is never overwritten: bump ``--version``. The new card
records what it supersedes. The version it replaces is retired (the zoo's retirement rule: the
bundle holds current versions only): its weights and card leave the folder, ``retired.json`` (an
index) names the slimfast release and git commit that last bundled them (the full card stays in
git history there), and its files fail with a one-line error naming that release; bump the
package version before the next release. ``--keep-previous`` keeps it installed as
``NAME.vN.*`` instead (for private model folders).
``python -m slimfast.tools.release --retire NAME@N`` retires a version kept that way; with
``--discontinue``, a model's current version (the model leaves the bundle; its family stays, unless
``--whole-family`` lets its last model go too). Where the package version was already bumped to an
unreleased one (CHANGELOG.md says so), ``--last-release X.Y.Z`` names the release that last bundled it.
``python -m slimfast.tools.release --calibrate-int8 NAME`` stores int8-synthesis activation ranges
(from training images) and their measured Kodak cost in a card (:mod:`slimfast.engines.quantize`).
``python -m slimfast.tools.release --measure-bf16 NAME [NAME ...]`` (or ``--all``) measures what bf16 costs
on the held-out training images and stores it in each card (``bf16``): where it stays within bounds,
precision ``auto`` runs that side in bf16.
``python -m slimfast.tools.release --set-default NAME [WIDTH]`` marks the one default model (and, for
a slimmable one, the width used when none is asked for; the widest otherwise).
"""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from pathlib import Path

import numpy as np

from .. import zoo
from ..errors import SlimfastError

DATA_TERMS = ("Trained on BSDS500 (Berkeley Segmentation Dataset) and a sample of ImageNet photos, "
              "both for research use only; the weights inherit those terms. Kodak images "
              "(released for unrestricted use) were used for evaluation only.")


def _write_card(path: Path, card: dict) -> None:
    """Replace a card atomically: readers never see half a card."""
    _write_text(path, json.dumps(card, indent=2) + "\n")


def _write_index(path: Path, entries: list[dict]) -> None:
    """The retired index, one entry a line: small, and a retirement is a one-line diff."""
    _write_text(path, "[\n" + ",\n".join(json.dumps(e) for e in entries) + "\n]\n")


def _write_text(path: Path, text: str) -> None:
    import os
    import threading

    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def compact_retired(entries: list[dict]) -> list[dict]:
    """The retired index from the full retired cards that ``retired.json`` held up to slimfast
    0.8.0 (compact entries pass unchanged), ordered by name and version: what rewrote the shipped
    one, once; the cards themselves stay in git history at each entry's ``last_commit``."""
    return sorted(map(zoo.index_entry, entries), key=lambda e: (e["name"], zoo.version_key(e["version"])))


def _card_extra(arg: str) -> dict:
    """``--card-extra``: inline JSON, else the path of a JSON file; a JSON object either way."""
    text = arg
    if not arg.lstrip().startswith("{"):
        try:
            text = Path(arg).read_text()
        except OSError as exc:
            raise SlimfastError(f"--card-extra: {arg}: {exc.strerror or exc}") from None
    try:
        extra = json.loads(text)
    except ValueError as exc:
        raise SlimfastError(f"--card-extra: not JSON ({exc})") from None
    if not isinstance(extra, dict):
        raise SlimfastError("--card-extra: expected a JSON object")
    return extra


def _hardware(summary: dict) -> str:
    if str(summary.get("device", "cpu")).startswith("cuda"):
        return summary.get("gpu", "CUDA GPU")
    cpu = platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {summary.get('threads', '?')} training thread(s), shared with other jobs"


def measure_kodak(info: zoo.ModelInfo, kodak: Path, widths: list[int | None], limit: int = 0,
                  progress: bool = True) -> list[dict]:
    """Mean bpp (real file sizes) and PSNR/MS-SSIM on the 8-bit output, per width (fp32 transforms
    where precision is ``auto``, as every RD figure: :func:`slimfast.tools.evaluate.rd_settings`)."""
    from ..codec import Codec
    from ..format.imageio import open_image
    from ..metrics import ms_ssim, psnr
    from .evaluate import rd_settings

    files = sorted(kodak.glob("kodim*.png"))[: limit or None]
    if not files:
        raise SlimfastError(f"no Kodak images in {kodak}")
    codec = Codec(info, rd_settings())
    points = []
    for w in widths:
        bpps, psnrs, msssims = [], [], []
        for f in files:
            img = open_image(f)
            data = codec.compress(img, width=w)
            rec = np.asarray(codec.decompress(data).convert("RGB"))
            bpps.append(len(data) * 8 / (img.size[0] * img.size[1]))
            psnrs.append(psnr(img.rgb, rec))
            msssims.append(ms_ssim(img.rgb, rec))
        ms = float(np.mean(msssims))
        points.append({"width": w, "bpp": round(float(np.mean(bpps)), 5), "psnr": round(float(np.mean(psnrs)), 4),
                       "ms_ssim": round(ms, 6), "ms_ssim_db": round(-10 * np.log10(1 - ms), 4), "images": len(files)})
        if progress:
            print(f"  {info.name} width={w}: {points[-1]['bpp']:.4f} bpp, {points[-1]['psnr']:.2f} dB", file=sys.stderr)
    return points


def _last_commit(path: Path) -> str | None:
    """The git commit that holds ``path`` as it is now (HEAD, if the file is committed unchanged)."""
    import subprocess

    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(path.parent), *args], capture_output=True, text=True,
                                  timeout=10)
        head = git("rev-parse", "HEAD")
        top = git("rev-parse", "--show-toplevel")
        if head.returncode or top.returncode:
            return None
        rel = path.resolve().relative_to(Path(top.stdout.strip()).resolve()).as_posix()
        blob = git("rev-parse", f"HEAD:{rel}")
        here = git("hash-object", str(path))
        ok = not blob.returncode and blob.stdout.strip() == here.stdout.strip()
        return head.stdout.strip() if ok else None
    except (OSError, ValueError, subprocess.SubprocessError):
        return None


def retire(name: str, version: str, out_dir: Path = zoo.BUNDLED_DIR, retired_by: str | None = None,
           discontinued: bool = False, last_release: str | None = None) -> dict:
    """Take ``name`` version ``version`` out of ``out_dir`` (the zoo's retirement rule).

    Its index entry (:func:`slimfast.zoo.index_entry`) goes to ``out_dir/retired.json`` with the
    slimfast release (and the git commit, when the files are committed there: it keeps the full
    card) that still bundles it; then its weights and card are deleted. Files made with it then
    fail with a one-line error naming that release (:func:`slimfast.zoo.find_by_id`). That release
    is ``last_release``, by default the package version, which must then be bumped before the next
    release, so that the name of the old one stays true; where it was bumped already (a release in
    development), ``last_release`` names the one before.
    """
    from .. import __version__

    version = str(version)
    last_release = check_release(last_release) if last_release is not None else __version__
    stems = [zoo.card_stem(name, version, current=False), zoo.card_stem(name, version)]
    for stem in stems:
        card_path = out_dir / f"{stem}.json"
        if card_path.exists() and str(json.loads(card_path.read_text()).get("version")) == version:
            break
    else:
        raise SlimfastError(f"{name} version {version} is not installed in {out_dir}")
    card = json.loads(card_path.read_text())
    weights = card_path.with_suffix(".safetensors")
    commit = _last_commit(weights) if weights.exists() else None
    entry = zoo.index_entry({**card, "files": [weights.name, card_path.name], "last_release": last_release,
                             "last_commit": commit, "retired_by_version": str(retired_by) if retired_by else None,
                             "discontinued": discontinued or None})
    registry = out_dir / zoo.RETIRED_FILE
    # Entries already there stay as they are: in a private folder an older full card may be the only copy.
    entries = json.loads(registry.read_text()) if registry.exists() else []
    entries = [e for e in entries if (e.get("name"), str(e.get("version"))) != (name, version)] + [entry]
    entries.sort(key=lambda e: (e["name"], zoo.version_key(str(e["version"]))))
    _write_index(registry, entries)
    weights.unlink(missing_ok=True)
    card_path.unlink()
    return entry


def _release_key(version: str) -> tuple[int, ...]:
    """Orders X.Y.Z and X.Y.Z.devN (a development version comes before its release)."""
    base, _, dev = version.partition(".dev")
    return (*(int(x) for x in base.split(".")), -1 if dev else 0, int(dev or 0))


def check_release(version: str) -> str:
    """``--last-release``: a slimfast release number (X.Y.Z, or X.Y.Z.devN for a version that only a
    development state ever bundled), not above the package version."""
    from .. import __version__

    version = str(version).strip().lstrip("vV")
    if not re.fullmatch(r"\d+(\.\d+){1,2}(\.dev\d+)?", version):
        raise SlimfastError(f"--last-release: a slimfast release number such as 0.8.0 (or 0.9.0.dev0: a version "
                            f"only ever bundled in development), not {version!r}")
    if _release_key(version) > _release_key(__version__):
        raise SlimfastError(f"--last-release {version} is above this package's version ({__version__})")
    return version


CHANGELOG = Path(__file__).resolve().parents[2] / "CHANGELOG.md"


def unreleased_version(changelog: Path = CHANGELOG) -> str | None:
    """The package version where the changelog beside the package marks it unreleased
    (``## X.Y.Z (unreleased)``): retiring from the bundle must then name the release before it."""
    from .. import __version__

    try:
        text = changelog.read_text()
    except OSError:
        return None
    mark = re.compile(rf"^## {re.escape(__version__)} \(unreleased\)\s*$", re.M)
    return __version__ if mark.search(text) else None


def publish(weights: Path, name: str, family: str, version: str = "1", default: bool = False,
            out_dir: Path = zoo.BUNDLED_DIR, kodak: Path | None = None, limit: int = 0,
            extra: dict | None = None, storage: str = "fp16", keep_previous: bool = False,
            last_release: str | None = None) -> dict:
    """Ship ``weights`` as ``name`` version ``version`` in ``out_dir``, with a measured card.

    A version it replaces is retired (:func:`retire`, naming ``last_release`` as the release that
    last bundled it; the zoo's retirement rule), or with ``keep_previous`` kept installed as
    ``NAME.vN.*`` so that its files still decode.
    """
    from ..models.weights import file_digest, load_model, save_model

    out_dir.mkdir(parents=True, exist_ok=True)
    dst = out_dir / f"{name}.safetensors"
    card_path = out_dir / f"{name}.json"
    version = str(version)
    if not version.isdigit() or int(version) < 1:
        raise SlimfastError(f"--version must be a positive integer, not {version!r}")
    previous = json.loads(card_path.read_text()) if card_path.exists() else None
    if previous is not None:
        old_version = str(previous.get("version"))
        if old_version == version or (out_dir / f"{zoo.card_stem(name, version, current=False)}.json").exists():
            raise SlimfastError(f"{name} version {version} is already shipped; a shipped version never changes")
        if zoo.version_key(version) < zoo.version_key(old_version):
            raise SlimfastError(f"{name} is at version {old_version}; a new release needs a higher version")
        if not dst.exists():
            raise SlimfastError(f"{card_path} has no weights beside it ({dst.name}); restore it before releasing")
    model = load_model(weights)
    if not model.entropy_bottlenecks()[0].updated:
        model.update()
    # Write the new weights aside first: nothing is moved until they exist.
    staged = out_dir / f".{name}.v{version}.staged.safetensors"
    save_model(model, staged, name=name, version=version, storage=storage)
    if previous is not None:
        # A default model stays the default (at its default width) in its new version. The
        # previous version is retired, or kept installed byte for byte so that its files decode.
        default = default or bool(previous.get("default"))
        inherited = {k: previous[k] for k in ("default_width",) if k in previous}
        if keep_previous:
            kept = zoo.card_stem(name, old_version, current=False)
            dst.rename(out_dir / f"{kept}.safetensors")
            _write_card(out_dir / f"{kept}.json", {**previous, "default": False})
            card_path.unlink()
        else:
            retire(name, old_version, out_dir, retired_by=version, last_release=last_release)
    staged.rename(dst)
    run = weights.parent
    summary = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    digest = file_digest(dst)
    card = {
        "name": name, "family": family, "architecture": model.architecture, "version": str(version),
        "default": bool(default), "sha256": digest, "config": model.config,
        "widths": list(model.widths) if model.widths else None,
        "params": int(sum(p.numel() for p in model.parameters())),
        "train_steps": int(summary.get("steps", 0)),
        # a slimmable model trains with one lambda per width; the single lambda is then unused
        "lambda": None if summary.get("lmbdas") else summary.get("lmbda"), "lambdas": summary.get("lmbdas"),
        "metric": summary.get("metric", "mse"),
        "training": {k: summary.get(k) for k in ("minutes", "device", "batch_size", "patch_size", "init", "threads")},
        "hardware": summary.get("hardware") or _hardware(summary),
        "storage": storage, "bytes": dst.stat().st_size,
        "data": DATA_TERMS, "license": "code: MIT; weights: research use only (see data)",
        "points": [],
    }
    if previous is not None:
        card["supersedes"] = {k: previous.get(k) for k in ("version", "sha256", "train_steps", "points")}
        card.update(inherited)
    card.update(extra or {})
    card["sha256"] = digest  # never from extra: the pin is what loading checks the weights against
    _write_card(card_path, card)
    if kodak is not None and kodak.is_dir():
        info = zoo._info_from_card(card_path)
        widths = sorted(model.widths, reverse=True) if model.widths else [None]
        card["points"] = measure_kodak(info, kodak, widths, limit)
        card["points_note"] = ("mean over Kodak images of per-image values; bpp = file bytes * 8 / pixels; "
                               "PSNR-RGB on the 8-bit output")
        if storage != "fp16":
            card["storage_cost"] = _storage_cost(model, info, kodak, widths, limit, card["points"])
        _write_card(card_path, card)
    return card


def _storage_cost(model, info: zoo.ModelInfo, kodak: Path, widths: list, limit: int, points: list[dict]) -> dict:
    """The same model stored as fp16, measured the same way: what the compact storage costs."""
    import dataclasses
    import tempfile

    from .bdrate import bd_rate
    from ..models.weights import file_digest, save_model

    with tempfile.TemporaryDirectory() as tmp:
        ref = Path(tmp) / "fp16.safetensors"
        save_model(model, ref, name=info.name, version=info.version, storage="fp16")
        ref_info = dataclasses.replace(info, path=ref, sha256=file_digest(ref))
        ref_points = measure_kodak(ref_info, kodak, widths, limit)
        res = {"fp16_points": ref_points, "fp16_bytes": ref.stat().st_size}
    bd = bd_rate([p["bpp"] for p in ref_points], [p["psnr"] for p in ref_points],
                 [p["bpp"] for p in points], [p["psnr"] for p in points]) if len(points) >= 2 else None
    res["bd_rate_vs_fp16_percent"] = None if bd is None else round(bd, 3)
    res["mean_psnr_change_db"] = round(float(np.mean([p["psnr"] - r["psnr"] for p, r in zip(points, ref_points)])), 4)
    res["mean_ms_ssim_db_change"] = round(float(np.mean([p["ms_ssim_db"] - r["ms_ssim_db"]
                                                         for p, r in zip(points, ref_points)])), 4)
    res["mean_bpp_change_percent"] = round(float(np.mean([100 * (p["bpp"] / r["bpp"] - 1)
                                                          for p, r in zip(points, ref_points)])), 3)
    return res


def run_stage(run: Path) -> tuple[dict, dict | None]:
    """A run folder's budget: steps, minutes, lambdas, init... from its ``summary.json`` (train)
    or ``lambdas.json`` (schedule), and the whole ``lambdas.json`` when it is a schedule."""
    st, schedule = {"run": run.name}, None
    for name in ("summary.json", "lambdas.json"):
        f = run / name
        if f.exists():
            j = json.loads(f.read_text())
            st.update({k: j[k] for k in ("steps", "minutes", "init", "batch_size", "patch_size", "trials",
                                         "on_stop", "lmbdas", "lambdas") if k in j})
            st.setdefault("lambdas", j.get("lmbdas") or [j.get("lmbda")])
            if name == "lambdas.json":
                schedule = j
    return st, schedule


def chain_info(runs: list[Path], final_run: Path) -> dict:
    """Card entries for weights trained in stages (warm-up, lambda schedule, continuation).

    ``runs`` are the earlier stages in order; ``final_run`` made the released weights. Each
    stage's steps, minutes, lambdas and init come from its ``summary.json`` (train) or
    ``lambdas.json`` (schedule); the schedule's trials and validation points are kept whole.
    """
    stages, schedule = [], None
    for run in [*runs, final_run]:
        st, sched = run_stage(run)
        stages.append(st)
        schedule = sched or schedule
    out = {"training_chain": stages, "train_steps": int(sum(st.get("steps", 0) for st in stages)),
           "train_minutes": round(sum(st.get("minutes", 0.0) for st in stages), 1)}
    if schedule:
        out["lambda_schedule"] = {k: schedule[k] for k in ("lambdas", "paper_lambdas", "convention", "validation",
                                                          "trials", "steps", "on_stop") if k in schedule}
    return out


def set_default(name: str, out_dir: Path = zoo.BUNDLED_DIR, width: int | None = None) -> None:
    """Make ``name`` the one default model, and ``width`` its default width if it is slimmable
    (cards only; weights are untouched)."""
    # Current versions only: a kept older version (NAME.vN.json) is never the default.
    cards = {c: json.loads(c.read_text()) for c in sorted(out_dir.glob("*.json")) if c.name != zoo.RETIRED_FILE}
    cards = {c: card for c, card in cards.items() if c.stem == card["name"]}
    mine = [card for card in cards.values() if card["name"] == name]
    if not mine:
        raise SlimfastError(f"no model {name!r} in {out_dir}")
    if width is not None and width not in (mine[0].get("widths") or []):
        raise SlimfastError(f"{name} has no width {width}")
    for c, card in cards.items():
        card["default"] = card["name"] == name
        if card["name"] == name and width is not None:
            card["default_width"] = width
        _write_card(c, card)


def calibrate_int8(name: str, out_dir: Path = zoo.BUNDLED_DIR, train: Path | None = None, kodak: Path | None = None,
                   images: int = 16, crop: int = 256, limit: int = 0, progress: bool = True,
                   float_last: bool = False) -> dict:
    """Store int8-synthesis activation ranges in ``name``'s card, with their measured Kodak cost.

    Ranges come from ``images`` random training images (seed 0), their top-left ``crop`` x ``crop``
    pixels (edge-padded where smaller), never from Kodak; Kodak measures what int8 costs against
    float32 synthesis, on the same decoded symbols. Weights are untouched; the card gains
    ``int8_synthesis``. ``float_last`` keeps the last convolution (the one that makes the pixels)
    in float as well.
    """
    from ..codec import runtime_options
    from ..runtime.model import RuntimeModel
    from ..settings import Settings
    from ..engines.quantize import CALIBRATION, FLOAT_NODES_KEY, PERCENTILE, calibrate, last_conv

    card_path = out_dir / f"{name}.json"
    if not card_path.exists():
        raise SlimfastError(f"no model {name!r} in {out_dir}")
    if images < 1:
        raise SlimfastError("--images must be at least 1")
    card = json.loads(card_path.read_text())
    pick = _calibration_images(train or Path(__file__).resolve().parents[3] / "shared" / "data" / "train", images)
    options = runtime_options(Settings.from_env())  # a tool: the environment's threads and graph cache
    m = RuntimeModel(card_path.with_suffix(".safetensors"), **options)
    widths = sorted(m.widths, reverse=True) if m.widths else [m.check_width(None)]
    ranges = {}
    for c in widths:
        ys = [m.dequantize(m.encode_symbols(_prepared(m, p, crop)[1], c), c) for p in pick]
        fp32 = m.onnx_model("decoder", c, tconv="subpixel")
        ranges[str(c)] = calibrate(fp32, ys)
        if float_last:
            ranges[str(c)][FLOAT_NODES_KEY] = [last_conv(fp32.graph)]
    q = RuntimeModel(m.path, int8_ranges=ranges, **options)
    files = sorted(Path(kodak).glob("kodim*.png"))[: limit or None] if kodak and Path(kodak).is_dir() else []
    points = [p for c in widths if (p := _int8_point(m, q, c, files, name, progress))]
    card["int8_synthesis"] = {
        "format": ("ONNX QDQ: per-channel int8 weights, uint8 activations; transposed convolutions in sub-pixel "
                   "form; GDN/IGDN normalization convolutions stay float"
                   + ("; so does the last convolution" if float_last else "")),
        "calibration": {"method": CALIBRATION, "percentile": PERCENTILE, "images": len(pick), "crop": crop, "seed": 0,
                        "source": "training images (never Kodak)"},
        "kodak": points,
        "mean_psnr_change_db": round(float(np.mean([p["psnr_change_db"] for p in points])), 4) if points else None,
        "ranges": ranges,
    }
    _write_card(card_path, card)
    return card["int8_synthesis"]


def _calibration_images(train: Path, images: int) -> list[Path]:
    """``images`` training images drawn with seed 0 (never Kodak)."""
    pool = sorted(p for p in Path(train).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not pool:
        raise SlimfastError(f"no training images in {train} to calibrate on")
    return [pool[i] for i in np.random.default_rng(0).choice(len(pool), min(images, len(pool)), replace=False)]


def _prepared(m, path: Path, size: int = 0):
    """(8-bit RGB, padded model input) of ``path``; with ``size``, its top-left square, edge-padded."""
    from PIL import Image

    from ..codec import pad_image

    rgb = np.asarray(Image.open(path).convert("RGB"))
    if size:
        rgb = rgb[:size, :size]
        rgb = np.pad(rgb, ((0, size - rgb.shape[0]), (0, size - rgb.shape[1]), (0, 0)), mode="edge")
    return rgb, pad_image(rgb, m.pad_multiple).transpose(2, 0, 1)[None].astype(np.float32) / 255


def _int8_point(m, q, c: int, files: list[Path], name: str, progress: bool) -> dict | None:
    """Mean Kodak PSNR of float32 (``m``) and int8 (``q``) synthesis on the same symbols, at width ``c``."""
    from ..metrics import psnr

    pairs = []
    for f in files:
        rgb, x = _prepared(m, f)
        sym = m.encode_symbols(x, c)
        pair = []
        for model in (m, q):
            out = np.clip(model.synthesize(sym, c), 0, 1)[0, :, : rgb.shape[0], : rgb.shape[1]]
            pair.append(psnr(rgb, np.rint(out * 255).astype(np.uint8).transpose(1, 2, 0)))
        pairs.append(pair)
    if not pairs:
        return None
    fp, i8 = np.mean(pairs, axis=0)
    if progress:
        print(f"  {name} width {c}: int8 synthesis {i8 - fp:+.3f} dB ({fp:.2f} -> {i8:.2f})", file=sys.stderr)
    return {"width": c if m.widths else None, "psnr_fp32": round(float(fp), 4), "psnr_int8": round(float(i8), 4),
            "psnr_change_db": round(float(i8 - fp), 4), "images": len(pairs)}


SHARED_DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
BF16_BOUND_DB = 0.05  # the largest PSNR loss bf16 may cost on either side
BF16_BOUND_BPP = 0.005  # the largest relative growth of the files a bf16 analysis writes


def bf16_defaults(points: list[dict], bound_db: float = BF16_BOUND_DB,
                  bound_bpp: float = BF16_BOUND_BPP) -> tuple[bool, bool]:
    """(synthesis, analysis): whether precision ``auto`` may run that side in bf16, from the
    measured ``points`` (:func:`bf16_point`). The synthesis, where no point loses more than
    ``bound_db`` (of PSNR, and of MS-SSIM dB where measured); the analysis, where the synthesis may
    and no point of bf16 both ways loses more than ``bound_db`` or writes files more than
    ``bound_bpp`` (relative) larger. No points: neither."""
    if not points:
        return False, False

    def within(p: dict, keys: tuple[str, ...]) -> bool:
        return all(p[k] >= -bound_db for k in keys if p.get(k) is not None)

    synthesis = all(within(p, ("synthesis_psnr_change_db", "synthesis_msssim_change_db")) for p in points)
    analysis = synthesis and all(within(p, ("psnr_change_db", "msssim_change_db")) and p["bpp_change"] <= bound_bpp
                                 for p in points)
    return synthesis, analysis


def _significant(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}")


def bf16_point(row: dict) -> dict:
    """A card's ``bf16`` point from a row of :func:`slimfast.tools.evaluate.bf16_cost` (4 significant
    digits; the MS-SSIM dB changes for models trained for MS-SSIM)."""
    point = {"width": row["width"],
             "synthesis_psnr_change_db": _significant(row["psnr_bf16_synthesis"] - row["psnr_fp32"]),
             "psnr_change_db": _significant(row["psnr_bf16"] - row["psnr_fp32"]),
             "bpp_change": _significant(row["bpp_bf16"] / row["bpp_fp32"] - 1)}
    if "msssim_db_fp32" in row:
        point.update(synthesis_msssim_change_db=_significant(row["msssim_db_bf16_synthesis"] - row["msssim_db_fp32"]),
                     msssim_change_db=_significant(row["msssim_db_bf16"] - row["msssim_db_fp32"]))
    return point


def heldout_images(train: Path) -> list[tuple[str, np.ndarray]]:
    """The held-out training images (``slimfast/data/heldout.txt``) as ``slimfast evaluate --heldout``
    codes them: found under ``train``, downscaled 0.5x."""
    import tempfile

    from .evaluate import list_images, load_image, prepare_heldout
    from .training.heldout import HELDOUT_LIST, heldout_names

    if not Path(train).is_dir():
        raise SlimfastError(f"no training data folder {train} (the held-out images are under it; --train DIR)")
    if not heldout_names():
        raise SlimfastError(f"no held-out images listed in {HELDOUT_LIST}")
    with tempfile.TemporaryDirectory(prefix="slimfast-heldout-") as tmp:
        return [(f.name, load_image(f)) for f in list_images(prepare_heldout(train, Path(tmp)))]


def _bf16_model(name: str, out_dir: Path) -> zoo.ModelInfo:
    """``name``'s current version in ``out_dir``, checked to be what ``slimfast.load(name)`` loads here
    and to run on ONNX Runtime's graphs (the only ones bf16 runs on)."""
    from ..codec import backend
    from ..settings import Settings

    card_path = out_dir / f"{name}.json"
    if not card_path.exists():
        raise SlimfastError(f"no model {name!r} in {out_dir}")
    settings = Settings.from_env()
    info = zoo.get(name, model_path=settings.model_path)
    if info.path is None or info.path.resolve() != card_path.with_suffix(".safetensors").resolve():
        raise SlimfastError(f"slimfast loads {name} from {info.path.parent if info.path else '?'}, not {out_dir} "
                            "(put that folder on SLIMFAST_MODEL_PATH, or measure the bundled one)")
    if backend(settings, info.architecture) != "ort":
        raise SlimfastError(f"{name} runs with torch here; bf16 runs on the ONNX Runtime backend's graphs only")
    return info


def measure_bf16(names: list[str], out_dir: Path = zoo.BUNDLED_DIR, train: Path | None = None,
                 progress: bool = True) -> dict[str, dict]:
    """Store in each model's card (``bf16``) what bf16 costs at its operating points on the held-out
    training images (:func:`heldout_images`), and whether precision ``auto`` may use it on either
    side (:func:`bf16_defaults`). Weights are untouched. Measured with
    :func:`slimfast.tools.evaluate.bf16_cost`; needs OpenVINO and a CPU with native bf16."""
    from ..engines import openvino as ov_backend
    from . import evaluate

    reason = ov_backend.unavailable_reason()
    if reason:
        raise SlimfastError(f"--measure-bf16: bf16 {reason}")
    if not names:
        raise SlimfastError(f"no models to measure in {out_dir}")
    infos = [_bf16_model(n, out_dir) for n in names]
    images = heldout_images(train or SHARED_DATA / "train")
    results = {}
    for info in infos:
        bar = evaluate._bar(len(images) * len(evaluate.operating_points(info)), progress)
        try:
            rows = evaluate.bf16_cost([info], images, bar)
        finally:
            bar.close()
        points = [bf16_point(r) for r in rows]
        synthesis, analysis = bf16_defaults(points)
        card_path = out_dir / f"{info.name}.json"
        card = json.loads(card_path.read_text())
        card["bf16"] = {
            "data": f"{len(images)} held-out training images (slimfast/data/heldout.txt), downscaled 0.5x",
            "heldout_images": len(images), "bound_db": BF16_BOUND_DB, "bound_bpp": BF16_BOUND_BPP,
            "points": points, "synthesis": synthesis, "analysis": analysis,
        }
        _write_card(card_path, card)
        results[info.name] = card["bf16"]
    return results


def bf16_table(results: dict[str, dict]) -> str:
    """The points and decisions of :func:`measure_bf16`, as a Markdown table."""
    lines = ["| model | width | bf16 synthesis dB | bf16 both ways dB | bf16 analysis bpp | synthesis | analysis |",
             "|---|---|---|---|---|---|---|"]
    for name, res in results.items():
        for p in res["points"]:
            lines.append(f"| {name} | {p['width'] if p['width'] is not None else '-'} | "
                         f"{p['synthesis_psnr_change_db']:+.4f} | {p['psnr_change_db']:+.4f} | {p['bpp_change']:+.3%} | "
                         f"{'bf16' if res['synthesis'] else 'fp32'} | {'bf16' if res['analysis'] else 'fp32'} |")
    return "\n".join(lines)


def _measure_bf16_main(argv) -> int:
    """``--measure-bf16 NAME [NAME ...] | --all [--train DIR] [--out-dir DIR]``."""
    p = argparse.ArgumentParser(prog="python -m slimfast.tools.release --measure-bf16", description=measure_bf16.__doc__)
    p.add_argument("--measure-bf16", dest="names", nargs="*", default=[], metavar="NAME")
    p.add_argument("--all", action="store_true", help="every current model in --out-dir (the bundled ones)")
    p.add_argument("--out-dir", type=Path, default=zoo.BUNDLED_DIR)
    p.add_argument("--train", type=Path, default=SHARED_DATA / "train",
                   help="the training data the held-out images are under (default ../shared/data/train)")
    p.add_argument("--no-progress", dest="progress", action="store_false")
    a = p.parse_args(argv)
    if bool(a.names) == a.all:
        raise SlimfastError("--measure-bf16 takes model names or --all (not both)")
    names = ([i.name for i in zoo.models_in(a.out_dir) if i.path and i.path.stem == i.name] if a.all else a.names)
    results = measure_bf16(names, a.out_dir, a.train, a.progress)
    print(bf16_table(results))
    print(f"bounds: {BF16_BOUND_DB} dB, files {BF16_BOUND_BPP:.1%} larger (bf16 analysis); "
          f"{next(iter(results.values()))['data']}")
    return 0


def main(argv=None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    try:
        return _main(argv)
    except SlimfastError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _retire_main(argv) -> int:
    """``--retire NAME@N [--discontinue [--whole-family]] [--last-release X.Y.Z]``."""
    p = argparse.ArgumentParser(prog="python -m slimfast.tools.release --retire",
                                description="Take a superseded model version out of the bundle (the zoo's retirement rule).")
    p.add_argument("--retire", dest="spec", required=True, metavar="NAME@VERSION")
    p.add_argument("--whole-family", action="store_true",
                   help="with --discontinue: allow the family's last model to go (the family leaves the bundle)")
    p.add_argument("--discontinue", action="store_true",
                   help="retire a model's current version, so that the model leaves the bundle (not the "
                        "default model, nor the last of its family without --whole-family)")
    _last_release_flag(p)
    p.add_argument("--out-dir", type=Path, default=zoo.BUNDLED_DIR)
    a = p.parse_args(argv)
    name, _, version = a.spec.partition("@")
    version = version.lstrip("vV")
    if not name or not version:
        raise SlimfastError(f"--retire needs NAME@VERSION, not {a.spec!r}")
    current = a.out_dir / f"{name}.json"
    card = json.loads(current.read_text()) if current.exists() else {}
    if str(card.get("version")) == version:
        if not a.discontinue:
            raise SlimfastError(f"{name} version {version} is the current version; release a newer one first "
                                "(or --discontinue the model)")
        if card.get("default"):
            raise SlimfastError(f"{name} is the default model; make another the default first")
        family = [c for c in (json.loads(f.read_text()) for f in a.out_dir.glob("*.json")
                              if f.name != zoo.RETIRED_FILE) if c.get("family") == card.get("family")]
        if len({c.get("name") for c in family}) < 2 and not a.whole_family:
            raise SlimfastError(f"{name} is the last model of family {card.get('family')!r} "
                                "(add --whole-family to take the family out of the bundle)")
    last_release = _last_release(a, f"{name} version {version}")
    entry = retire(name, version, a.out_dir, discontinued=a.discontinue, last_release=last_release)
    print(f"retired {name} version {entry['version']} (last bundled in slimfast {entry['last_release']}"
          + (f", git {entry['last_commit'][:12]})" if entry.get("last_commit") else ")"))
    return 0


def _last_release_flag(p) -> None:
    p.add_argument("--last-release", default=None, metavar="X.Y.Z",
                   help="the slimfast release that last bundled the version retired (default: the package version; "
                        "required for the bundled folder while CHANGELOG.md marks that version unreleased; "
                        "X.Y.Z.devN: only a development state bundled it)")


def _last_release(a, what: str) -> str | None:
    """``--last-release`` checked, or None (the package version); required when ``a.out_dir`` is the
    bundle and the package version is unreleased."""
    if a.last_release is not None:
        return check_release(a.last_release)
    unreleased = unreleased_version()
    if unreleased and a.out_dir.resolve() == zoo.BUNDLED_DIR.resolve():
        raise SlimfastError(f"slimfast {unreleased} is unreleased (CHANGELOG.md): name the release that last "
                            f"bundled {what} with --last-release")
    return None


def _main(argv) -> int:
    if argv[:1] == ["--calibrate-int8"]:
        p = argparse.ArgumentParser(prog="python -m slimfast.tools.release --calibrate-int8",
                                    description=calibrate_int8.__doc__)
        p.add_argument("--calibrate-int8", dest="name", required=True, metavar="NAME")
        p.add_argument("--out-dir", type=Path, default=zoo.BUNDLED_DIR)
        p.add_argument("--train", type=Path, default=None, help="calibration images (default ../shared/data/train)")
        p.add_argument("--kodak", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak")
        p.add_argument("--images", type=int, default=16)
        p.add_argument("--float-last", action="store_true",
                       help="keep the last convolution (the one that makes the pixels) in float too: for models "
                            "whose int8 cost is mostly there")
        p.add_argument("--limit", type=int, default=0, help="measure on the first N Kodak images only")
        a = p.parse_args(argv)
        res = calibrate_int8(a.name, a.out_dir, a.train, a.kodak, a.images, limit=a.limit, float_last=a.float_last)
        print(json.dumps({k: v for k, v in res.items() if k != "ranges"}, indent=2))
        return 0
    if argv[:1] == ["--retire"]:
        return _retire_main(argv)
    if "--measure-bf16" in argv:
        return _measure_bf16_main(argv)
    if argv[:1] == ["--set-default"] and len(argv) in (2, 3):
        set_default(argv[1], width=int(argv[2]) if len(argv) == 3 else None)
        return 0
    p = argparse.ArgumentParser(prog="python -m slimfast.tools.release", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("weights", type=Path)
    p.add_argument("--name", required=True)
    p.add_argument("--family", required=True)
    p.add_argument("--version", default="1")
    p.add_argument("--default", action="store_true")
    p.add_argument("--storage", choices=("fp16", "int8"), default="fp16",
                   help="int8: pack convolution weights (half the bytes; the card records the measured RD cost)")
    p.add_argument("--out-dir", type=Path, default=zoo.BUNDLED_DIR)
    p.add_argument("--kodak", type=Path, default=Path(__file__).resolve().parents[3] / "shared" / "data" / "kodak")
    p.add_argument("--limit", type=int, default=0, help="measure on the first N Kodak images only")
    p.add_argument("--chain", type=Path, nargs="+", default=[], metavar="RUN",
                   help="earlier run folders these weights continue, in order (warm-up, schedule, ...): "
                        "the card records every stage and the total steps")
    p.add_argument("--card-extra", default=None,
                   help="a JSON object merged into the card: inline ('{\"note\": \"...\"}') or a file holding one")
    p.add_argument("--keep-previous", action="store_true",
                   help="keep the version this one replaces installed (NAME.vN.*) instead of retiring it: for "
                        "private model folders; the bundled one keeps only current versions")
    _last_release_flag(p)
    a = p.parse_args(argv)
    last_release = (_last_release(a, f"{a.name}'s current version")
                    if (a.out_dir / f"{a.name}.json").exists() and not a.keep_previous else None)
    extra = chain_info(a.chain, a.weights.parent) if a.chain else {}
    extra.update(_card_extra(a.card_extra) if a.card_extra else {})
    card = publish(a.weights, a.name, a.family, a.version, a.default, a.out_dir, a.kodak, a.limit, extra=extra,
                   storage=a.storage, keep_previous=a.keep_previous, last_release=last_release)
    print(json.dumps({k: card[k] for k in ("name", "sha256", "points")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
