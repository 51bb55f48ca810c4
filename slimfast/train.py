"""Training: data sampling, rate-distortion loss, exact-resume checkpoints, DDP, export.

Runs wherever torch runs (CPU here, CUDA on a lent GPU), one process or several under
``torchrun`` (DistributedDataParallel: gloo on CPU, NCCL on CUDA). Beyond the models it needs
only torch, numpy and Pillow; tqdm (progress bar), matplotlib (training plot) and the
``safetensors`` package are optional: MS-SSIM is implemented here, and where ``safetensors``
is missing a small reader/writer of the same file format stands in for it (see
:func:`_ensure_safetensors`), so a bare torch machine can train and export.

Checkpoints are pickle-free: ``checkpoint.safetensors`` holds the model and both optimizers'
tensors plus every rank's torch (and CUDA) RNG state, and, in its metadata, the JSON state
(step, wall time, numpy/python RNG state of every rank, optimizer hyper-parameters, running
log averages, arguments); ``checkpoint.json`` is a readable copy. Resuming from a checkpoint
reproduces the uninterrupted run's loss trajectory exactly (same device, threads and world
size; on CUDA add ``--deterministic``).
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .models import build

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train"
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}
MSSSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
MSSSIM_MIN_SIDE = 176  # 5 scales of an 11-tap window: the coarsest scale must still hold 11 pixels
CHECKPOINT_FORMAT = "slimfast-checkpoint-2"
LOG_FIELDS = ["step", "minutes", "kind", "loss", "bpp", "psnr", "lr", "msssim"]


@dataclass
class TrainConfig:
    architecture: str | None = None  # None: fasinet-l, or the architecture of --init
    model_config: dict = field(default_factory=dict)
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)])
    out: str = "runs/fasinet-l"
    lmbda: float = 0.013            # MSE on the 0..255 scale: loss = lmbda * 255^2 * MSE + bpp
    lmbdas: list[float] | None = None  # slimmable models: one per width (widest first)
    width_loss: str = "sum"        # slimmable joint loss: sum_i L_i (SlimCAE) | log: sum_i log L_i
    metric: str = "mse"            # mse | ms-ssim (loss = lmbda * (1 - MS-SSIM) + bpp)
    steps: int = 20000
    minutes: float = 0.0           # > 0: stop after this much wall time instead
    stop_at: int = 0               # > 0: checkpoint and exit at this step (the schedule still uses --steps)
    batch_size: int = 8            # per process (DDP: the effective batch is world_size times this)
    patch_size: int = 128
    lr: float = 1e-3
    aux_lr: float = 1e-3
    lr_drop_at: float = 0.9        # drop the learning rate 10x for the last 10% of the budget
    clip_grad: float = 1.0
    seed: int = 0
    threads: int = 0
    device: str = "auto"           # auto | cpu | cuda
    checkpoint_minutes: float = 3.0
    checkpoint_every: int = 0      # > 0: also checkpoint every this many steps
    snapshot_minutes: float = 0.0  # > 0: keep weights every this many minutes (learning curves)
    log_every: int = 100           # a CSV train row (means over the interval) every this many steps
    val_every: int = 1000
    val_fraction: float = 0.05
    val_images: int = 24
    val_crop: int = 256
    init: str | None = None        # warm start from weights (safetensors)
    bf16: bool = False
    channels_last: bool = False
    sort_channels: bool = False    # slim-fasinet-h warm starts: front each width's best channels
    deterministic: bool = False
    progress: bool = True
    plot: bool = True
    debug_state_hash: str | None = None  # tests: each rank writes a hash of its final state here


# -- data ----------------------------------------------------------------------------------------
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
    held = set(val)
    train = [f for f in files if f not in held]
    return train, val


def load_rgb(path: Path) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


def _sort_channels(model, files: list[Path], side: int, count: int = 16) -> None:
    """``model.sort_channels`` on centre crops of the first ``count`` training images (no RNG)."""
    if not hasattr(model, "sort_channels"):
        raise SystemExit(f"error: --sort-channels: {model.architecture} has no channel order to sort")
    images = [load_rgb(f) for f in files[:count]]
    side = min([max(side, 256)] + [min(im.shape[1:]) for im in images]) // 64 * 64  # one batch: one size
    if not images or side < 64:
        raise SystemExit("error: --sort-channels: needs training images of at least 64x64")
    crops = []
    for im in images:
        top, left = (im.shape[1] - side) // 2, (im.shape[2] - side) // 2
        crops.append(im[:, top:top + side, left:left + side])
    try:
        share = model.sort_channels(torch.stack(crops).float() / 255)
    except ValueError as e:
        raise SystemExit(f"error: --sort-channels: {e}") from None
    print(f"sorted channels on {len(crops)} training crops: the narrowest width holds "
          f"{100 * share['narrow_share_before']:.0f}% -> {100 * share['narrow_share_after']:.0f}% of y's bits",
          file=sys.stderr)


class PatchSampler:
    """Random down-scale (0.6-1.0, suppressing the sources' JPEG artifacts), crop and flips.

    All randomness comes from the numpy generator ``rng`` (so its state alone makes sampling
    resumable). With ``device`` the images live there and patches are cut and resized there
    (on CUDA this keeps sampling off the CPU); the random choices are the same on any device.
    """

    def __init__(self, images: list[torch.Tensor], patch: int, rng: np.random.Generator,
                 scale_range: tuple[float, float] = (0.6, 1.0), device: torch.device | str | None = None):
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.images = [im.to(self.device) for im in images if min(im.shape[1:]) >= patch]
        if not self.images:
            raise ValueError(f"no training image is at least {patch} pixels on its short side")
        self.patch = patch
        self.rng = rng
        self.scale_range = scale_range

    def sample(self, batch: int) -> torch.Tensor:
        out = torch.empty(batch, 3, self.patch, self.patch, device=self.device)
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


# -- loss ----------------------------------------------------------------------------------------
def rate_bpp(likelihoods: dict[str, torch.Tensor], num_pixels: int) -> torch.Tensor:
    return sum(torch.log(l).sum() for l in likelihoods.values()) / (-math.log(2) * num_pixels)


def _gaussian_window(size: int, sigma: float, like: torch.Tensor) -> torch.Tensor:
    t = torch.arange(size, dtype=torch.float32, device=like.device) - (size - 1) / 2
    g = torch.exp(-(t * t) / (2 * sigma * sigma))
    return (g / g.sum()).to(like.dtype)


def _blur(x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter per channel, 'valid' borders (no padding)."""
    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, g: torch.Tensor, data_range: float):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = _blur(x, g), _blur(y, g)
    sxx = _blur(x * x, g) - mu_x * mu_x
    syy = _blur(y * y, g) - mu_y * mu_y
    sxy = _blur(x * y, g) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs
    return ssim.mean(dim=(2, 3)), cs.mean(dim=(2, 3))


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 11,
            sigma: float = 1.5, weights=MSSSIM_WEIGHTS) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003), mean over batch and channels.

    The standard recipe: an 11-tap Gaussian window (sigma 1.5) without padding, K1 = 0.01,
    K2 = 0.03, five scales with 2x2 average pooling between them, contrast-structure terms
    at the four finer scales and full SSIM at the coarsest, negative terms clipped to zero.
    Both sides must be at least ``MSSSIM_MIN_SIDE`` (176) pixels.
    """
    if min(x.shape[-2:]) < (win_size - 1) * 2 ** (len(weights) - 1) + 16:
        raise ValueError(f"MS-SSIM needs images of at least {MSSSIM_MIN_SIDE} pixels per side, got {tuple(x.shape[-2:])}")
    x, y = x.float(), y.float()
    g = _gaussian_window(win_size, sigma, x)
    w = torch.tensor(weights, dtype=x.dtype, device=x.device)
    terms = []
    for level in range(len(weights)):
        ssim, cs = _ssim_terms(x, y, g, data_range)
        if level < len(weights) - 1:
            terms.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(torch.relu(ssim))
    # A tiny floor keeps the gradient of t**w finite where a term is exactly zero.
    stacked = torch.stack(terms, dim=0).clamp(min=1e-12)  # [scales, B, C]
    return torch.prod(stacked ** w.view(-1, 1, 1), dim=0).mean()


def distortion(x_hat: torch.Tensor, x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "mse":
        return F.mse_loss(x_hat, x) * 255 ** 2
    if metric == "ms-ssim":
        return 1 - ms_ssim(x_hat.clamp(0, 1), x, data_range=1.0)
    raise ValueError(f"unknown metric {metric!r}")


def rd_loss(out: dict, x: torch.Tensor, lmbda: float, metric: str) -> tuple[torch.Tensor, dict]:
    n = x.shape[0] * x.shape[2] * x.shape[3]
    bpp = rate_bpp(out["likelihoods"], n)
    dist = distortion(out["x_hat"], x, metric)
    mse = F.mse_loss(out["x_hat"].detach().clamp(0, 1), x)
    psnr = -10 * math.log10(max(float(mse), 1e-10))
    return lmbda * dist + bpp, {"bpp": float(bpp.detach()), "psnr": psnr, "dist": float(dist.detach())}


# -- safetensors without the package -------------------------------------------------------------
_ST_DTYPES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
              torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
              torch.uint16: "U16", torch.uint8: "U8", torch.bool: "BOOL"}


def _st_save_file(tensors: dict, filename, metadata: dict | None = None) -> None:
    """Write the safetensors format: u64 header length, JSON header, raw little-endian data."""
    header, blobs, offset = {}, [], 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        data = _tensor_bytes(t)
        header[name] = {"dtype": _ST_DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(filename, "wb") as f:
        f.write(len(h).to_bytes(8, "little"))
        f.write(h)
        for b in blobs:
            f.write(b)


class _StFile:
    def __init__(self, filename, framework: str = "pt", device: str = "cpu"):
        self._raw = Path(filename).read_bytes()
        n = int.from_bytes(self._raw[:8], "little")
        self._header = json.loads(self._raw[8:8 + n])
        self._base = 8 + n
        self._meta = self._header.pop("__metadata__", None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def metadata(self):
        return self._meta

    def keys(self):
        return list(self._header)

    def get_tensor(self, name: str) -> torch.Tensor:
        info = self._header[name]
        dtype = {v: k for k, v in _ST_DTYPES.items()}[info["dtype"]]
        b, e = info["data_offsets"]
        if e == b:
            return torch.empty(info["shape"], dtype=dtype)
        buf = torch.frombuffer(bytearray(self._raw[self._base + b:self._base + e]), dtype=torch.uint8)
        return buf.view(dtype).reshape(info["shape"])


def _st_load_file(filename, device: str = "cpu") -> dict:
    with _StFile(filename) as f:
        return {k: f.get_tensor(k).to(device) for k in f.keys()}


def _ensure_safetensors() -> None:
    """Where the ``safetensors`` package is missing, register a stand-in with its API subset.

    ``safetensors.torch.save_file/load_file`` and ``safetensors.safe_open`` (metadata, keys,
    get_tensor) are what this package uses; the files are the real format, readable by the
    real package. Nothing happens when the package is installed.
    """
    import importlib.util
    import types

    if "safetensors" in sys.modules or importlib.util.find_spec("safetensors") is not None:
        return
    pkg = types.ModuleType("safetensors")
    sub = types.ModuleType("safetensors.torch")
    pkg.safe_open = _StFile
    pkg.torch = sub
    pkg.__slimfast_standin__ = True
    sub.save_file, sub.load_file = _st_save_file, _st_load_file
    sys.modules["safetensors"], sys.modules["safetensors.torch"] = pkg, sub


_ensure_safetensors()

from .weights import load_for_training, save_model  # noqa: E402  (after the stand-in, if any)


# -- checkpoints without pickle ------------------------------------------------------------------
def capture_rng(rng: np.random.Generator, device: torch.device | None = None) -> dict:
    """This process's RNG states: torch CPU (and CUDA), the sampler's numpy generator, python."""
    d = {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state,
         "python": list(random.getstate()[1])}
    if device is not None and device.type == "cuda":
        d["cuda"] = torch.cuda.get_rng_state(device)
    return d


def restore_rng(d: dict, device: torch.device | None = None) -> np.random.Generator:
    torch.set_rng_state(d["torch"].cpu())
    if d.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(d["cuda"].cpu(), device)
    if d.get("python") is not None:
        random.setstate((3, tuple(int(v) for v in d["python"]), None))
    rng = np.random.default_rng()
    rng.bit_generator.state = d["numpy"]
    return rng


def _model_device(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def save_checkpoint(run: Path, model, opt, aux_opt, state: dict, rng_states: list[dict] | None = None) -> None:
    """Atomically write ``checkpoint.safetensors`` (+ a readable ``checkpoint.json``).

    ``state`` is JSON-able except ``state["rng"]``, the numpy generator of this process.
    ``rng_states`` (one :func:`capture_rng` dict per rank, rank order) defaults to this
    process's RNG states.
    """
    from safetensors.torch import save_file

    run = Path(run)
    if rng_states is None:
        rng_states = [capture_rng(state["rng"], _model_device(model))]
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
    ranks = []
    for r, d in enumerate(rng_states):
        tensors[f"rng.torch.{r}"] = d["torch"].cpu().clone()
        if d.get("cuda") is not None:
            tensors[f"rng.cuda.{r}"] = d["cuda"].cpu().clone()
        ranks.append({"numpy": d["numpy"], "python": d["python"]})
    tensors["rng.torch"] = rng_states[0]["torch"].cpu().clone()  # format 1 readers
    full = {k: v for k, v in state.items() if k != "rng"}
    full.update(format=CHECKPOINT_FORMAT, optimizers=meta_opt, world_size=len(rng_states), rng_ranks=ranks,
                numpy_rng=ranks[0]["numpy"], python_rng=ranks[0]["python"])
    text = json.dumps(full, default=_json_default)
    tmp = run / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"checkpoint": text})
    tmp.replace(run / "checkpoint.safetensors")  # the commit point: one file holds everything
    (run / "checkpoint.json.tmp").write_text(json.dumps(json.loads(text), indent=1))
    (run / "checkpoint.json.tmp").replace(run / "checkpoint.json")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def has_checkpoint(run: Path) -> bool:
    return (Path(run) / "checkpoint.safetensors").exists()


def load_checkpoint(run: Path, model, opt, aux_opt, rank: int = 0, device: torch.device | None = None) -> dict:
    """Restore model, optimizers and this rank's RNG states; returns the JSON state.

    ``meta["rng"]`` is the restored numpy generator, or ``None`` when the checkpoint holds no
    RNG state for ``rank`` (it was written by fewer processes: the caller must reseed).
    Reads format 1 checkpoints (JSON state in ``checkpoint.json`` only) too.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    run = Path(run)
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        embedded = (f.metadata() or {}).get("checkpoint")
    meta = json.loads(embedded) if embedded else json.loads((run / "checkpoint.json").read_text())
    tensors = load_file(str(run / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for tag, o in (("opt", opt), ("aux", aux_opt)):
        m = meta["optimizers"][tag]
        st = {int(pid): {k: tensors[f"{tag}.{pid}.{k}"] for k in keys} for pid, keys in m["state_keys"].items()}
        o.load_state_dict({"state": st, "param_groups": m["param_groups"]})
    device = device if device is not None else _model_device(model)
    if "rng_ranks" in meta:
        if rank < len(meta["rng_ranks"]):
            d = dict(meta["rng_ranks"][rank], torch=tensors[f"rng.torch.{rank}"],
                     cuda=tensors.get(f"rng.cuda.{rank}"))
            meta["rng"] = restore_rng(d, device)
        else:
            meta["rng"] = None
    elif rank == 0:
        meta["rng"] = restore_rng({"torch": tensors["rng.torch"], "numpy": meta["numpy_rng"],
                                   "python": meta["python_rng"]}, device)
    else:
        meta["rng"] = None
    return meta


# -- validation ----------------------------------------------------------------------------------
@torch.no_grad()
def validate(model, images: list[torch.Tensor], metric: str, lmbda: float, crop: int = 256,
             width: int | None = None) -> dict:
    """Estimated bpp (hard-quantized likelihoods) and PSNR on center crops of held-out images.

    With ``metric == "ms-ssim"`` the mean MS-SSIM (crops of at least 176 pixels) is added.
    """
    was = model.training
    model.eval()
    device = _model_device(model)
    bpps, psnrs, msssims = [], [], []
    for im in images:
        h, w = im.shape[1:]
        c = min(crop, h, w) // model.pad_multiple * model.pad_multiple
        if c == 0:
            continue
        y0, x0 = (h - c) // 2, (w - c) // 2
        x = im[:, y0:y0 + c, x0:x0 + c].to(device).float().unsqueeze(0) / 255.0
        out = model(x) if width is None else model(x, width=width)
        bpps.append(float(rate_bpp({k: v.float() for k, v in out["likelihoods"].items()}, c * c)))
        x_hat = (out["x_hat"].float().clamp(0, 1) * 255).round() / 255
        mse = F.mse_loss(x_hat, x)
        psnrs.append(-10 * math.log10(max(float(mse), 1e-10)))
        if metric == "ms-ssim" and c >= MSSSIM_MIN_SIDE:
            msssims.append(float(ms_ssim(x_hat, x)))
    model.train(was)
    res = {"bpp": float(np.mean(bpps)) if bpps else float("nan"),
           "psnr": float(np.mean(psnrs)) if psnrs else float("nan")}
    if msssims:
        res["msssim"] = float(np.mean(msssims))
    return res


# -- processes -----------------------------------------------------------------------------------
class Dist:
    """This process's place in a ``torchrun`` job (or a world of one) and its device."""

    def __init__(self, device: str = "auto"):
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0")) if self.world > 1 else 0
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0")) if self.world > 1 else 0
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda":
            if not torch.cuda.is_available():
                raise SystemExit("error: --device cuda but CUDA is not available")
            idx = self.local_rank % torch.cuda.device_count() if self.world > 1 else torch.cuda.current_device()
            self.device = torch.device("cuda", idx)
            torch.cuda.set_device(self.device)
        else:
            self.device = torch.device(device)
        if self.world > 1:
            import torch.distributed as dist

            backend = "nccl" if self.device.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend)
            self.dist = dist
        else:
            self.dist = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def broadcast_flags(self, flags: list[int]) -> list[int]:
        """Rank 0's decisions (stop, checkpoint, ...) for every rank: time and signals differ."""
        if self.dist is None:
            return flags
        t = torch.tensor(flags, dtype=torch.int64, device=self.device)
        self.dist.broadcast(t, 0)
        return [int(v) for v in t.tolist()]

    def all_gather(self, obj) -> list:
        if self.dist is None:
            return [obj]
        out = [None] * self.world
        self.dist.all_gather_object(out, obj)
        return out

    def all_reduce_mean_(self, tensors: list[torch.Tensor]) -> None:
        if self.dist is None:
            return
        for t in tensors:
            self.dist.all_reduce(t)
            t.div_(self.world)

    def barrier(self) -> None:
        if self.dist is not None:
            self.dist.barrier()

    def close(self) -> None:
        if self.dist is not None:
            self.dist.destroy_process_group()
            self.dist = None


class RDObjective(nn.Module):
    """One training forward: the rate-distortion loss of every trained width.

    A module so that DistributedDataParallel sees one forward per backward even when a
    slimmable model trains all its widths jointly: ``width_loss="sum"`` minimizes
    ``sum_i L_i`` with ``L_i = lambda_i * D_i + R_i`` (SlimCAE's joint loss), ``"log"`` minimizes
    ``sum_i log L_i``. Under the sum, the widest width's loss (several times the narrowest's) steers
    the shared weights; the log weighs each width's gradient by ``1 / L_i``, so every width's
    relative improvement counts the same. The loss itself is computed in float32 outside autocast.
    """

    def __init__(self, model, lmbda: float, lmbdas: list[float] | None, metric: str, bf16: bool,
                 width_loss: str = "sum"):
        super().__init__()
        if width_loss not in ("sum", "log"):
            raise SystemExit(f"error: --width-loss must be sum or log, not {width_loss!r}")
        self.model = model
        self.metric = metric
        self.bf16 = bf16
        self.width_loss = width_loss
        if model.widths and lmbdas:
            if len(lmbdas) != len(model.widths):
                raise SystemExit(f"error: {len(lmbdas)} lambdas for the {len(model.widths)} widths {model.widths}")
            self.terms = list(zip(model.widths, lmbdas))
        else:
            self.terms = [(None, lmbda)]

    def forward(self, x: torch.Tensor):
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            outs = [self.model(x) if w is None else self.model(x, width=w) for w, _ in self.terms]
        loss, stats = 0.0, {}
        for i, ((w, lm), out) in enumerate(zip(self.terms, outs)):
            out = {"x_hat": out["x_hat"].float(), "likelihoods": {k: v.float() for k, v in out["likelihoods"].items()}}
            l, s = rd_loss(out, x, lm, self.metric)
            loss = loss + (torch.log(l) if self.width_loss == "log" and len(self.terms) > 1 else l)
            if i == 0:  # the widest width's figures also go unsuffixed
                stats.update(s)
            if w is not None:
                stats.update({f"{k}@{w}": v for k, v in s.items()})
        return loss, stats


def _entropy_models_in_fp32(model) -> None:
    """Run the entropy models outside autocast: likelihoods in bf16 would ruin the rate."""
    from .entropy import ConditionalEntropyModel, EntropyBottleneck

    def pre(module, args):
        ctx = torch.autocast(args[0].device.type, enabled=False)
        ctx.__enter__()
        module.__dict__.setdefault("_sf_autocast", []).append(ctx)
        return tuple(a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args)

    def post(module, args, output):
        module.__dict__["_sf_autocast"].pop().__exit__(None, None, None)

    for m in model.modules():
        if isinstance(m, (EntropyBottleneck, ConditionalEntropyModel)):
            m.register_forward_pre_hook(pre)
            m.register_forward_hook(post)


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def state_hash(model, *optimizers) -> str:
    """SHA-256 over the model's state dict and the optimizers' state tensors (sorted names)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(_tensor_bytes(v))
    for o in optimizers:
        for pid, st in sorted(o.state_dict()["state"].items()):
            for k, v in sorted(st.items()):
                t = v if torch.is_tensor(v) else torch.tensor(v)
                h.update(f"{pid}.{k}".encode())
                h.update(_tensor_bytes(t))
    return h.hexdigest()


def _read_log(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return [r for r in csv.DictReader(f)]


def _plot_log(run: Path) -> Path | None:
    """``training.png`` (loss, bpp, PSNR against step; validation as markers) if matplotlib is there."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from .plots import training_plot

    rows = []
    for r in _read_log(run / "log.csv"):
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


class _Stop:
    """SIGINT/SIGTERM ask for a checkpoint and a clean exit after the current step."""

    def __init__(self):
        self.requested = False
        self._old = {}

    def _handler(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\nsignal {signum}: checkpointing after this step (Ctrl-C again to abort)", file=sys.stderr)

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handler)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
        return False


# -- the loop ------------------------------------------------------------------------------------
def train(cfg: TrainConfig) -> Path:
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    dd = Dist(cfg.device)
    try:
        return _train(cfg, dd)
    finally:
        dd.close()


def _train(cfg: TrainConfig, dd: Dist) -> Path:
    run = Path(cfg.out)
    device = dd.device
    if dd.main:
        run.mkdir(parents=True, exist_ok=True)
    dd.barrier()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.metric == "ms-ssim" and cfg.patch_size < MSSSIM_MIN_SIDE:
        raise SystemExit(f"error: --metric ms-ssim needs --patch-size >= {MSSSIM_MIN_SIDE} (5 scales of an 11-tap window)")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = not cfg.deterministic
    if cfg.deterministic:
        torch.backends.cudnn.deterministic = True
        torch.use_deterministic_algorithms(True, warn_only=True)

    files = list_images(cfg.data)
    if not files:
        raise SystemExit(f"error: no training images found in {', '.join(cfg.data)}")
    train_files, val_files = split_validation(files, cfg.val_fraction)
    if not train_files:
        raise SystemExit("error: no training image left after the validation split; lower --val-fraction")

    torch.manual_seed(cfg.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    if cfg.init:
        try:
            model = load_for_training(cfg.init, cfg.architecture, cfg.model_config)
        except ValueError as e:
            raise SystemExit(f"error: --init {cfg.init}: {e}") from None
    else:
        model = build(cfg.architecture or "fasinet-l", cfg.model_config)
    if cfg.sort_channels and not has_checkpoint(run):
        _sort_channels(model, train_files, cfg.patch_size)
    if cfg.lmbdas and not model.widths:
        raise SystemExit(f"error: --lambdas needs a slimmable model; {model.architecture} has one width (use --lambda)")
    if cfg.lmbdas and len(cfg.lmbdas) != len(model.widths):
        raise SystemExit(f"error: {len(cfg.lmbdas)} lambdas for the {len(model.widths)} widths {model.widths}")
    model.to(device).train()
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.bf16:
        _entropy_models_in_fp32(model)
    opt = torch.optim.Adam(model.main_parameters(), lr=cfg.lr)
    aux_opt = torch.optim.Adam(model.aux_parameters(), lr=cfg.aux_lr)

    # Each rank draws its own patches and noise: seed + rank.
    torch.manual_seed(cfg.seed + dd.rank)
    random.seed(cfg.seed + dd.rank)
    rng = np.random.default_rng(cfg.seed + dd.rank)

    step, elapsed = 0, 0.0
    log_acc = {"n": 0, "sum": {}}
    run_avg: dict[str, float] = {}
    if has_checkpoint(run):
        meta = load_checkpoint(run, model, opt, aux_opt, rank=dd.rank, device=device)
        step, elapsed = int(meta["step"]), float(meta["elapsed"])
        log_acc = meta.get("log_acc", log_acc)
        run_avg = meta.get("run_avg", run_avg)
        if meta["rng"] is None:
            print(f"warning: rank {dd.rank}: the checkpoint has no RNG state for this rank "
                  f"(written by {meta.get('world_size', 1)} processes): reseeding, resume is not exact",
                  file=sys.stderr)
            ss = np.random.SeedSequence([cfg.seed, dd.rank, step])
            rng = np.random.default_rng(ss)
            torch.manual_seed(int(ss.generate_state(1)[0]))
        else:
            rng = meta["rng"]
        if dd.main:
            print(f"resuming {run} at step {step} ({elapsed / 60:.1f} min)", file=sys.stderr)
            old = meta.get("args", {})
            changed = sorted(k for k, v in asdict(cfg).items() if k in old and old[k] != v
                             and k not in ("stop_at", "progress", "plot", "debug_state_hash", "steps", "minutes"))
            if changed:
                print(f"warning: resuming with changed settings: {', '.join(changed)}", file=sys.stderr)

    images = [load_rgb(f) for f in train_files]
    sampler = PatchSampler(images, cfg.patch_size, rng, device=device)
    del images
    val_images = [load_rgb(f).to(device) for f in val_files[:cfg.val_images]] if dd.main else []

    objective = RDObjective(model, cfg.lmbda, cfg.lmbdas, cfg.metric, cfg.bf16, cfg.width_loss)
    step_fn = objective
    if dd.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        # The quantiles only get gradients from the aux loss: kept out of DDP, averaged by hand.
        aux_ids = {id(p) for p in model.aux_parameters()}
        ignore = [f"model.{n}" for n, p in model.named_parameters() if id(p) in aux_ids]
        DDP._set_params_and_buffers_to_ignore_for_model(objective, ignore)
        import inspect

        # Buffers (integer tables, scale tables) never change while training: no per-step sync.
        no_sync = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
                   else {"broadcast_buffers": False})
        step_fn = DDP(objective, device_ids=[device.index] if device.type == "cuda" else None, **no_sync,
                      # a slimmable model trained at one width leaves the other widths unused
                      find_unused_parameters=bool(model.widths) and len(objective.terms) == 1)

    log_path = run / "log.csv"
    log = writer = None
    if dd.main:
        (run / "config.json").write_text(json.dumps(dict(asdict(cfg), world_size=dd.world), indent=2))
        # Rows past the checkpoint (written before an interruption) belong to no trajectory.
        old_rows = [r for r in _read_log(log_path) if r.get("step") and float(r["step"]) <= step]
        log = open(log_path, "w", newline="")
        writer = csv.DictWriter(log, fieldnames=LOG_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(old_rows)
        log.flush()

    bar = None
    if cfg.progress and dd.main:
        try:
            from tqdm import tqdm

            bar = tqdm(total=None if cfg.minutes > 0 else cfg.steps, initial=step, unit="step",
                       dynamic_ncols=True, mininterval=2)
        except ImportError:
            bar = None
    t0 = time.monotonic() - elapsed
    last_ckpt = time.monotonic()
    next_snapshot = (math.floor(elapsed / 60 / cfg.snapshot_minutes) + 1) * cfg.snapshot_minutes \
        if cfg.snapshot_minutes > 0 else math.inf
    debug_data = hashlib.sha256() if cfg.debug_state_hash else None
    aux_params = list(model.aux_parameters())
    timing = {"steps": 0, "train_s": 0.0, "data_s": 0.0, "warmup": 10}

    def done() -> bool:
        if cfg.minutes > 0:
            return (time.monotonic() - t0) >= cfg.minutes * 60
        return step >= cfg.steps

    def progress_fraction() -> float:
        if cfg.minutes > 0:
            return (time.monotonic() - t0) / (cfg.minutes * 60)
        return step / max(cfg.steps, 1)

    def checkpoint() -> None:
        states = dd.all_gather(capture_rng(rng, device))  # a collective: every rank calls it
        if dd.main:
            save_checkpoint(run, model, opt, aux_opt,
                            {"step": step, "elapsed": time.monotonic() - t0, "rng": rng, "args": asdict(cfg),
                             "log_acc": log_acc, "run_avg": run_avg}, rng_states=states)

    def minutes() -> float:
        return (time.monotonic() - t0) / 60

    def snapshot() -> None:
        """Weights as they are now, tables frozen on a copy, for a learning curve of this run."""
        import copy

        snap = run / "snapshots"
        snap.mkdir(exist_ok=True)
        export = copy.deepcopy(model.module if hasattr(model, "module") else model).cpu().eval()
        export.update()
        save_model(export, snap / f"step-{step:07d}.safetensors", name=f"{run.name}@{step}")
        with open(snap / "index.csv", "a") as f:
            f.write(f"{step},{minutes():.3f},step-{step:07d}.safetensors\n")

    def validate_and_log(lr: float) -> None:
        for wdt in (model.widths or [None]):
            v = validate(model, val_images, cfg.metric, cfg.lmbda, crop=cfg.val_crop, width=wdt)
            row = {"step": step, "minutes": f"{minutes():.3f}", "kind": "val" if wdt is None else f"val@{wdt}",
                   "bpp": f"{v['bpp']:.7g}", "psnr": f"{v['psnr']:.7g}", "lr": f"{lr:.6g}"}
            if "msssim" in v:
                row["msssim"] = f"{v['msssim']:.7g}"
            writer.writerow(row)
            msg = f"step {step} {row['kind']}: {v['bpp']:.4f} bpp {v['psnr']:.2f} dB"
            if "msssim" in v:
                msg += f" MS-SSIM {v['msssim']:.4f}"
            bar.write(msg) if bar is not None else print(msg, file=sys.stderr)
        log.flush()

    with _Stop() as stop_signal:
        # Rank 0 decides everything that depends on time or signals (stop, checkpoint, lr drop).
        finished = done()
        stop, drop = dd.broadcast_flags([int(finished or (0 < cfg.stop_at <= step)),
                                         int(progress_fraction() >= cfg.lr_drop_at)])
        lr, start_step = cfg.lr, step
        while not stop:
            lr = cfg.lr * (0.1 if drop else 1.0)
            for g in opt.param_groups:
                g["lr"] = lr
            t_start = time.perf_counter()
            x = sampler.sample(cfg.batch_size)
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if debug_data is not None:
                debug_data.update(x.detach().cpu().numpy().tobytes())
            t_data = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss, stats = step_fn(x)
            loss.backward()
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.main_parameters(), cfg.clip_grad)
            opt.step()
            aux_opt.zero_grad(set_to_none=True)
            model.aux_loss().backward()
            dd.all_reduce_mean_([p.grad for p in aux_params if p.grad is not None])
            aux_opt.step()
            loss_v = float(loss.detach())
            step += 1
            t_end = time.perf_counter()
            timing["steps"] += 1
            if timing["steps"] > timing["warmup"]:
                timing["train_s"] += t_end - t_start
                timing["data_s"] += t_data - t_start

            vals = {"loss": loss_v, **stats}
            for k, v in vals.items():
                run_avg[k] = 0.98 * run_avg.get(k, v) + 0.02 * v
                log_acc["sum"][k] = log_acc["sum"].get(k, 0.0) + v
            log_acc["n"] += 1
            if bar is not None:
                bar.update(1)
                if step % 10 == 0:
                    bar.set_postfix(loss=f"{run_avg['loss']:.4f}", bpp=f"{run_avg['bpp']:.3f}",
                                    psnr=f"{run_avg['psnr']:.2f}", refresh=False)
            if dd.main and cfg.log_every and step % cfg.log_every == 0:
                n = max(log_acc["n"], 1)
                m = {k: v / n for k, v in log_acc["sum"].items()}
                writer.writerow({"step": step, "minutes": f"{minutes():.3f}", "kind": "train",
                                 "loss": f"{m['loss']:.7g}", "bpp": f"{m['bpp']:.7g}",
                                 "psnr": f"{m['psnr']:.7g}", "lr": f"{lr:.6g}"})
                log.flush()
            if cfg.log_every and step % cfg.log_every == 0:
                log_acc = {"n": 0, "sum": {}}
            if dd.main and cfg.val_every and step % cfg.val_every == 0 and val_images:
                validate_and_log(lr)
            elif dd.main and bar is None and step % 500 == 0:
                print(f"step {step} ({minutes():.1f} min): loss {run_avg['loss']:.4f} bpp {run_avg['bpp']:.4f} "
                      f"PSNR {run_avg['psnr']:.2f}", file=sys.stderr)

            finished = done()
            want_stop = finished or stop_signal.requested or (0 < cfg.stop_at <= step)
            want_ckpt = (time.monotonic() - last_ckpt > cfg.checkpoint_minutes * 60
                         or (cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0))
            stop, ckpt, finished, drop = dd.broadcast_flags([int(want_stop), int(want_ckpt), int(finished),
                                                             int(progress_fraction() >= cfg.lr_drop_at)])
            if ckpt and not stop:
                checkpoint()
                last_ckpt = time.monotonic()
            if dd.main and cfg.snapshot_minutes > 0 and minutes() >= next_snapshot:
                snapshot()
                next_snapshot = (math.floor(minutes() / cfg.snapshot_minutes) + 1) * cfg.snapshot_minutes
    if bar is not None:
        bar.close()
    if finished and dd.main and step > start_step:
        # Close the log at the last step: the partial interval's means and a last validation.
        if log_acc["n"]:
            n = log_acc["n"]
            m = {k: v / n for k, v in log_acc["sum"].items()}
            writer.writerow({"step": step, "minutes": f"{minutes():.3f}", "kind": "train", "loss": f"{m['loss']:.7g}",
                             "bpp": f"{m['bpp']:.7g}", "psnr": f"{m['psnr']:.7g}", "lr": f"{lr:.6g}"})
            log_acc = {"n": 0, "sum": {}}
        if val_images and cfg.val_every and step % cfg.val_every:
            validate_and_log(lr)
        log.flush()
    checkpoint()

    if cfg.debug_state_hash:
        d = Path(cfg.debug_state_hash)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rank{dd.rank}.json").write_text(json.dumps(
            {"rank": dd.rank, "world_size": dd.world, "step": step, "state": state_hash(model, opt, aux_opt),
             "data": debug_data.hexdigest()}))

    if dd.main:
        log.close()
        measured = max(timing["steps"] - timing["warmup"], 0)
        speed = {"train_steps_per_s": measured / timing["train_s"] if timing["train_s"] > 0 else None,
                 "data_fraction": timing["data_s"] / timing["train_s"] if timing["train_s"] > 0 else None,
                 "measured_steps": measured}
        if finished:
            export = model
            export.cpu().eval()
            export.update()
            save_model(export, run / "final.safetensors", name=run.name)
            (run / "summary.json").write_text(json.dumps({
                "steps": step, "minutes": minutes(), "device": str(device), "world_size": dd.world,
                "architecture": model.architecture, "lmbda": cfg.lmbda, "lmbdas": cfg.lmbdas, "metric": cfg.metric,
                "batch_size": cfg.batch_size, "patch_size": cfg.patch_size, "init": cfg.init,
                "threads": torch.get_num_threads(), "bf16": cfg.bf16, "channels_last": cfg.channels_last,
                **speed}, indent=2))
            print(f"done: {run / 'final.safetensors'} after {step} steps ({minutes():.1f} min)", file=sys.stderr)
        else:
            print(f"stopped at step {step}: checkpoint in {run}; run the same command to resume", file=sys.stderr)
        if speed["train_steps_per_s"]:
            print(f"speed: {speed['train_steps_per_s']:.3f} steps/s over {measured} steps after warm-up, "
                  f"data sampling {100 * speed['data_fraction']:.1f}% of step time", file=sys.stderr)
        if cfg.plot:
            _plot_log(run)
    dd.barrier()
    return run


def build_parser() -> argparse.ArgumentParser:
    d = TrainConfig()
    p = argparse.ArgumentParser(
        prog="slimfast train", description="Train a slimfast model (see docs/training.md).",
        epilog="Re-running the same command resumes from the run folder's checkpoint. Several processes: "
               "torchrun --nproc_per_node N -m slimfast.train ...")
    g = p.add_argument_group("model")
    g.add_argument("--arch", dest="architecture", default=None,
                   help="fasinet-l (default), fasinet-h, slimcae, slimcae-hyper, slim-fasinet-l, slim-fasinet-h; "
                        "with --init, the architecture of those weights unless given (slim-fasinet-l can "
                        "warm-start from fasinet-l weights)")
    g.add_argument("--model-config", type=json.loads, default={}, help="JSON constructor arguments")
    g.add_argument("--init", default=None, help="warm start from these weights (safetensors)")
    g = p.add_argument_group("objective")
    g.add_argument("--lambda", dest="lmbda", type=float, default=d.lmbda,
                   help="mse: loss = lambda * 255^2 * MSE + bpp; ms-ssim: lambda * (1 - MS-SSIM) + bpp")
    g.add_argument("--lambdas", dest="lmbdas", type=float, nargs="+", default=None,
                   help="slimmable models: one lambda per width, widest first (joint training)")
    g.add_argument("--width-loss", choices=["sum", "log"], default=d.width_loss,
                   help="slimmable joint loss over the widths' L_i = lambda_i*D_i + R_i: sum (SlimCAE's, "
                        "the widest width dominates) or log (sum of log L_i: each width's relative "
                        "improvement counts the same)")
    g.add_argument("--metric", choices=["mse", "ms-ssim"], default=d.metric)
    g = p.add_argument_group("budget")
    g.add_argument("--steps", type=int, default=d.steps, help="total steps (sets the lr schedule)")
    g.add_argument("--minutes", type=float, default=d.minutes, help="> 0: a wall-time budget instead of --steps")
    g.add_argument("--stop-at", type=int, default=d.stop_at,
                   help="checkpoint and exit at this step; re-run without it to continue")
    g = p.add_argument_group("data and optimization")
    g.add_argument("--data", nargs="+", default=[str(DEFAULT_DATA)])
    g.add_argument("--out", required=True, help="run folder (resumes from its checkpoint)")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help="per process")
    g.add_argument("--patch-size", type=int, default=d.patch_size)
    g.add_argument("--lr", type=float, default=d.lr)
    g.add_argument("--aux-lr", type=float, default=d.aux_lr)
    g.add_argument("--lr-drop-at", type=float, default=d.lr_drop_at,
                   help="fraction of the budget after which the lr drops 10x (default %(default)s)")
    g.add_argument("--clip-grad", type=float, default=d.clip_grad)
    g.add_argument("--seed", type=int, default=d.seed)
    g.add_argument("--val-fraction", type=float, default=d.val_fraction)
    g.add_argument("--val-images", type=int, default=d.val_images)
    g.add_argument("--val-crop", type=int, default=d.val_crop)
    g = p.add_argument_group("speed and device")
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default=d.device)
    g.add_argument("--threads", type=int, default=d.threads, help="torch threads (0: torch's default)")
    g.add_argument("--bf16", action="store_true", help="bfloat16 autocast (entropy models stay float32)")
    g.add_argument("--channels-last", action="store_true")
    g.add_argument("--sort-channels", action="store_true",
                   help="slim-fasinet-h from fasinet-h weights: reorder the latent and hyperprior channels "
                        "so each width's leading block holds the most bits (measured on training crops)")
    g.add_argument("--deterministic", action="store_true", help="deterministic CUDA kernels (bit-exact resume)")
    g = p.add_argument_group("logging and checkpoints")
    g.add_argument("--log-every", type=int, default=d.log_every, help="CSV train row every N steps (means)")
    g.add_argument("--val-every", type=int, default=d.val_every, help="validate every N steps (0: never)")
    g.add_argument("--checkpoint-minutes", type=float, default=d.checkpoint_minutes)
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every, help="also every N steps")
    g.add_argument("--snapshot-minutes", type=float, default=d.snapshot_minutes,
                   help="> 0: keep the weights every N minutes in OUT/snapshots/ (for benchmarks/learning_curve.py)")
    g.add_argument("--no-progress", dest="progress", action="store_false")
    g.add_argument("--no-plot", dest="plot", action="store_false")
    g.add_argument("--debug-state-hash", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    cfg = TrainConfig(**vars(args))
    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
