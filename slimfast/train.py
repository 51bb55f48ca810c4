"""Training: data sampling, rate-distortion loss, exact-resume checkpoints, export.

Runs wherever torch runs (CPU here, CUDA on a lent GPU): it imports nothing of ours beyond
the models and nothing outside torch, numpy and Pillow, plus optional tqdm/pytorch_msssim.

Checkpoints are two files in the run folder, no pickle anywhere:
``checkpoint.safetensors`` (model and optimizer tensors, torch RNG state) and
``checkpoint.json`` (step, wall time, numpy/python RNG state, arguments).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import random
import sys
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .models import build
from .weights import load_model, save_model

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}


@dataclass
class TrainConfig:
    architecture: str = "fasinet-l"
    model_config: dict = field(default_factory=dict)
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)])
    out: str = "runs/fasinet-l"
    lmbda: float = 0.013            # MSE on the 0..255 scale: loss = lmbda * 255^2 * MSE + bpp
    lmbdas: list[float] | None = None  # slimmable models: one per width (widest first)
    metric: str = "mse"            # mse | ms-ssim (loss = lmbda * (1 - MS-SSIM) + bpp)
    steps: int = 20000
    minutes: float = 0.0           # > 0: stop after this much wall time instead
    batch_size: int = 8
    patch_size: int = 128
    lr: float = 1e-3
    aux_lr: float = 1e-3
    lr_drop_at: float = 0.9        # drop the learning rate 10x for the last 10% of the budget
    clip_grad: float = 1.0
    seed: int = 0
    threads: int = 0
    checkpoint_minutes: float = 3.0
    val_every: int = 1000
    val_fraction: float = 0.05
    init: str | None = None        # warm start from weights (safetensors)
    bf16: bool = False
    channels_last: bool = False
    progress: bool = True


def list_images(folders: list[str]) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        p = Path(folder)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS))
    return files


def split_validation(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """A fixed held-out split: the same files whatever the machine (CRC32 of the file name)."""
    val = [f for f in files if (zlib.crc32(f.name.encode()) % 1000) < fraction * 1000]
    train = [f for f in files if f not in set(val)]
    return train, val


def load_rgb(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


class PatchSampler:
    """Random down-scale (0.6-1.0, suppressing the sources' JPEG artifacts), crop and flips."""

    def __init__(self, images: list[torch.Tensor], patch: int, rng: np.random.Generator,
                 scale_range: tuple[float, float] = (0.6, 1.0)):
        self.images = [im for im in images if min(im.shape[1:]) >= patch]
        if not self.images:
            raise ValueError(f"no training image is at least {patch} pixels on its short side")
        self.patch = patch
        self.rng = rng
        self.scale_range = scale_range

    def sample(self, batch: int) -> torch.Tensor:
        out = torch.empty(batch, 3, self.patch, self.patch)
        for i in range(batch):
            im = self.images[int(self.rng.integers(len(self.images)))]
            h, w = im.shape[1:]
            s = float(self.rng.uniform(*self.scale_range))
            s = max(s, self.patch / min(h, w))
            side = min(int(math.ceil(self.patch / s)), h, w)
            y0 = int(self.rng.integers(h - side + 1))
            x0 = int(self.rng.integers(w - side + 1))
            crop = im[:, y0:y0 + side, x0:x0 + side].float().unsqueeze(0) / 255.0
            if side != self.patch:
                crop = F.interpolate(crop, size=(self.patch, self.patch), mode="bilinear",
                                     antialias=True, align_corners=False)
            if self.rng.random() < 0.5:
                crop = crop.flip(3)
            if self.rng.random() < 0.5:
                crop = crop.flip(2)
            out[i] = crop[0].clamp(0, 1)
        return out


def rate_bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    return sum(torch.log(l).sum() for l in likelihoods.values()) / (-math.log(2) * num_pixels)


def distortion(x_hat: torch.Tensor, x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "mse":
        return F.mse_loss(x_hat, x) * 255 ** 2
    from pytorch_msssim import ms_ssim

    return 1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0, size_average=True)


def rd_loss(out: dict, x: torch.Tensor, lmbda: float, metric: str) -> tuple[torch.Tensor, dict]:
    n = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = rate_bpp(out["likelihoods"], n)
    dist = distortion(out["x_hat"], x, metric)
    mse = F.mse_loss(out["x_hat"].detach().clamp(0, 1), x)
    psnr = -10 * math.log10(max(float(mse), 1e-10))
    return lmbda * dist + bpp, {"bpp": float(bpp.detach()), "psnr": psnr, "dist": float(dist.detach())}


# -- checkpoints without pickle ------------------------------------------------------------------
def save_checkpoint(run: Path, model, opt, aux_opt, state: dict) -> None:
    from safetensors.torch import save_file

    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    meta_opt = {}
    for tag, o in (("opt", opt), ("aux", aux_opt)):
        sd = o.state_dict()
        meta_opt[tag] = {"param_groups": sd["param_groups"], "state_keys": {}}
        for pid, st in sd["state"].items():
            keys = []
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(v)
                tensors[f"{tag}.{pid}.{k}"] = t.detach().cpu().contiguous()
                keys.append(k)
            meta_opt[tag]["state_keys"][str(pid)] = keys
    tensors["rng.torch"] = torch.get_rng_state()
    full = dict(state, optimizers=meta_opt, numpy_rng=state["rng"].bit_generator.state,
                python_rng=list(random.getstate()[1]))
    full.pop("rng")
    tmp = run / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp))
    (run / "checkpoint.json.tmp").write_text(json.dumps(full, default=_json_default))
    tmp.replace(run / "checkpoint.safetensors")
    (run / "checkpoint.json.tmp").replace(run / "checkpoint.json")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    raise TypeError(type(o))


def load_checkpoint(run: Path, model, opt, aux_opt) -> dict:
    from safetensors.torch import load_file

    tensors = load_file(str(run / "checkpoint.safetensors"))
    meta = json.loads((run / "checkpoint.json").read_text())
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for tag, o in (("opt", opt), ("aux", aux_opt)):
        m = meta["optimizers"][tag]
        st = {int(pid): {k: tensors[f"{tag}.{pid}.{k}"] for k in keys} for pid, keys in m["state_keys"].items()}
        o.load_state_dict({"state": st, "param_groups": m["param_groups"]})
    torch.set_rng_state(tensors["rng.torch"])
    rng = np.random.default_rng()
    rng.bit_generator.state = meta["numpy_rng"]
    random.setstate((3, tuple(meta["python_rng"]), None))
    meta["rng"] = rng
    return meta


# -- validation ----------------------------------------------------------------------------------
@torch.no_grad()
def validate(model, images: list[torch.Tensor], metric: str, lmbda: float, crop: int = 256,
             width: int | None = None) -> dict:
    """Estimated bpp (hard-quantized likelihoods) and PSNR on center crops of held-out images."""
    was = model.training
    model.eval()
    bpps, psnrs = [], []
    for im in images:
        h, w = im.shape[1:]
        c = min(crop, h, w) // model.pad_multiple * model.pad_multiple
        if c == 0:
            continue
        y0, x0 = (h - c) // 2, (w - c) // 2
        device = next(model.parameters()).device
        x = im[:, y0:y0 + c, x0:x0 + c].float().unsqueeze(0).to(device) / 255.0
        out = model(x) if width is None else model(x, width=width)
        n = c * c
        bpps.append(float(rate_bpp(out["likelihoods"], n)))
        mse = F.mse_loss((out["x_hat"].clamp(0, 1) * 255).round() / 255, x)
        psnrs.append(-10 * math.log10(max(float(mse), 1e-10)))
    model.train(was)
    return {"bpp": float(np.mean(bpps)), "psnr": float(np.mean(psnrs))}


# -- the loop ------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Path:
    run = Path(cfg.out)
    run.mkdir(parents=True, exist_ok=True)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)

    files = list_images(cfg.data)
    if not files:
        raise SystemExit(f"error: no training images found in {', '.join(cfg.data)}")
    train_files, val_files = split_validation(files, cfg.val_fraction)
    images = [load_rgb(f) for f in train_files]
    val_images = [load_rgb(f) for f in val_files[:24]]
    sampler = PatchSampler(images, cfg.patch_size, rng)

    if cfg.init:
        model = load_model(cfg.init).train()
    else:
        model = build(cfg.architecture, cfg.model_config)
    model.to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.main_parameters(), lr=cfg.lr)
    aux_opt = torch.optim.Adam(model.aux_parameters(), lr=cfg.aux_lr)

    step, elapsed = 0, 0.0
    if (run / "checkpoint.json").exists():
        meta = load_checkpoint(run, model, opt, aux_opt)
        step, elapsed = int(meta["step"]), float(meta["elapsed"])
        sampler.rng = rng = meta["rng"]
        print(f"resuming {run} at step {step} ({elapsed / 60:.1f} min)", file=sys.stderr)
    (run / "config.json").write_text(json.dumps(asdict(cfg), indent=2))

    log_path = run / "log.csv"
    new_log = not log_path.exists()
    log = open(log_path, "a", newline="")
    writer = csv.writer(log)
    if new_log:
        writer.writerow(["step", "minutes", "kind", "loss", "bpp", "psnr", "lr"])

    budget_steps = cfg.steps
    bar = None
    if cfg.progress:
        try:
            from tqdm import tqdm
            bar = tqdm(total=budget_steps, initial=step, unit="step", dynamic_ncols=True, mininterval=2)
        except ImportError:
            bar = None
    last_ckpt = time.monotonic()
    t0 = time.monotonic() - elapsed
    lmbdas = cfg.lmbdas

    def done() -> bool:
        if cfg.minutes > 0:
            return (time.monotonic() - t0) >= cfg.minutes * 60
        return step >= budget_steps

    def progress_fraction() -> float:
        if cfg.minutes > 0:
            return (time.monotonic() - t0) / (cfg.minutes * 60)
        return step / max(budget_steps, 1)

    run_avg = {}
    while not done():
        lr = cfg.lr * (0.1 if progress_fraction() >= cfg.lr_drop_at else 1.0)
        for g in opt.param_groups:
            g["lr"] = lr
        x = sampler.sample(cfg.batch_size).to(device)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
            if model.widths and lmbdas:
                # Joint step over every width: sum_i lambda_i * D_i + R_i (SlimCAE).
                loss = 0.0
                stats = {}
                for wdt, lm in zip(model.widths, lmbdas):
                    out = model(x, width=wdt)
                    out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
                    l, s = rd_loss(out, x, lm, cfg.metric)
                    loss = loss + l
                    stats.update({f"{k}@{wdt}" if stats else k: v for k, v in s.items()})
                    if len(stats) == len(s):  # the widest width's figures also go unsuffixed
                        stats.update({f"{k}@{wdt}": v for k, v in s.items()})
            else:
                out = model(x)
                out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
                loss, stats = rd_loss(out, x, cfg.lmbda, cfg.metric)
        loss.backward()
        if cfg.clip_grad > 0:
            torch.nn.utils.clip_grad_norm_(model.main_parameters(), cfg.clip_grad)
        opt.step()
        aux_opt.zero_grad(set_to_none=True)
        aux = model.aux_loss()
        aux.backward()
        aux_opt.step()
        step += 1
        for k, v in (("loss", float(loss.detach())), *stats.items()):
            run_avg[k] = 0.98 * run_avg.get(k, v) + 0.02 * v
        if bar is not None:
            bar.update(1)
            if step % 20 == 0:
                bar.set_postfix(loss=f"{run_avg['loss']:.3f}", bpp=f"{run_avg['bpp']:.3f}", psnr=f"{run_avg['psnr']:.2f}")
        minutes = (time.monotonic() - t0) / 60
        if step % 100 == 0:
            writer.writerow([step, f"{minutes:.3f}", "train", f"{run_avg['loss']:.5f}",
                             f"{run_avg['bpp']:.5f}", f"{run_avg['psnr']:.4f}", lr])
            log.flush()
        if cfg.val_every and step % cfg.val_every == 0 and val_images:
            for wdt in (model.widths or [None]):
                v = validate(model, val_images, cfg.metric, cfg.lmbda, width=wdt)
                kind = "val" if wdt is None else f"val@{wdt}"
                writer.writerow([step, f"{minutes:.3f}", kind, "", f"{v['bpp']:.5f}", f"{v['psnr']:.4f}", lr])
            log.flush()
        if time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60:
            save_checkpoint(run, model, opt, aux_opt, {"step": step, "elapsed": time.monotonic() - t0,
                                                       "rng": rng, "args": asdict(cfg)})
            last_ckpt = time.monotonic()
    if bar is not None:
        bar.close()
    save_checkpoint(run, model, opt, aux_opt, {"step": step, "elapsed": time.monotonic() - t0,
                                               "rng": rng, "args": asdict(cfg)})
    model.cpu().eval()
    model.update()
    save_model(model, run / "final.safetensors", name=run.name)
    (run / "summary.json").write_text(json.dumps({"steps": step, "minutes": (time.monotonic() - t0) / 60,
                                                   "device": str(device), "lmbda": cfg.lmbda,
                                                   "lmbdas": cfg.lmbdas, "metric": cfg.metric,
                                                   "batch_size": cfg.batch_size, "patch_size": cfg.patch_size,
                                                   "init": cfg.init, "threads": torch.get_num_threads()}, indent=2))
    log.close()
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="slimfast train", description="Train a slimfast model.")
    p.add_argument("--arch", dest="architecture", default="fasinet-l")
    p.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    p.add_argument("--out", required=True)
    p.add_argument("--lambda", dest="lmbda", type=float, default=0.013)
    p.add_argument("--lambdas", dest="lmbdas", type=float, nargs="+", default=None)
    p.add_argument("--metric", choices=["mse", "ms-ssim"], default="mse")
    p.add_argument("--steps", type=int, default=20000)
    p.add_argument("--minutes", type=float, default=0.0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--init", default=None)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--val-every", type=int, default=1000)
    p.add_argument("--no-progress", dest="progress", action="store_false")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**vars(args))
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
