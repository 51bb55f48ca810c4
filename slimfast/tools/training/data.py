"""Training data: image lists, the fixed validation split, image loading and the patch sampler."""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .heldout import heldout_names

DEFAULT_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "train"
IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".ppm", ".tif", ".tiff"}


def list_images(folders: list[str]) -> list[Path]:
    """Every image in ``folders`` (recursively) or named directly, less the held-out ones."""
    files: list[Path] = []
    for folder in folders:
        p = Path(folder)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_EXTS))
    held = heldout_names()
    return [f for f in files if f"{f.parent.name}/{f.name}" not in held]


def split_validation(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """A fixed held-out split: the same files whatever the machine (CRC32 of the file name)."""
    val = [f for f in files if (zlib.crc32(f.name.encode()) % 1000) < fraction * 1000]
    held = set(val)
    train = [f for f in files if f not in held]
    return train, val


def training_split(folders: list[str], fraction: float, need_val: bool = False) -> tuple[list[Path], list[Path]]:
    """:func:`split_validation` of the images in ``folders``, or a one-line error where a side is empty."""
    files = list_images(folders)
    if not files:
        raise SystemExit(f"error: no training images found in {', '.join(folders)}")
    train, val = split_validation(files, fraction)
    if need_val and not val:
        raise SystemExit(f"error: --val-fraction {fraction} leaves no validation image among {len(files)}; raise it")
    if not train:
        raise SystemExit("error: no training image left after the validation split; lower --val-fraction")
    return train, val


def load_rgb(path: Path) -> torch.Tensor:
    """The one image loader of training: ``uint8 [3, H, W]``, any mode converted to RGB."""
    from PIL import Image

    with Image.open(path) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1)


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
            out[i] = self._patch()
        return out

    def _patch(self) -> torch.Tensor:
        # The draws' order is part of the resumable state: changing it changes every trajectory.
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
        return crop[0].clamp(0, 1)


def centre_crops(images: list[torch.Tensor], side: int) -> list[torch.Tensor]:
    out = []
    for im in images:
        top, left = (im.shape[1] - side) // 2, (im.shape[2] - side) // 2
        out.append(im[:, top:top + side, left:left + side])
    return out
