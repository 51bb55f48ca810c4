"""Image quality and rate metrics used by evaluation and benchmarks.

Conventions (the CompressAI ones, so our numbers compare with published curves):

* Images are 8-bit RGB: numpy ``uint8`` arrays of shape ``(H, W, 3)``.
* :func:`psnr` is PSNR-RGB: one MSE over all three channels of the 8-bit images, peak 255.
* :func:`ms_ssim` is MS-SSIM with ``data_range=255``, in numpy (evaluation, benchmarks and the
  server need no torch); :func:`ms_ssim_tensor` is the same recipe on torch tensors, which
  training differentiates as its loss. Both are the ``pytorch_msssim`` recipe (5 scales, 11-tap
  Gaussian window; the tests check them against that package and each other) and share one SSIM
  formula (:func:`_ssim_maps`). Both sides of the image must be at least :data:`MS_SSIM_MIN_SIDE`
  pixels.
* :func:`ms_ssim_db` is ``-10 log10(1 - ms_ssim)``.
* :func:`bpp` is bits per pixel from a real byte count: ``bytes * 8 / (H * W)``.

Identical images give ``inf`` for PSNR and MS-SSIM dB; writers of JSON turn those into null.
``torch`` is imported only by :func:`ms_ssim_tensor`.
"""
from __future__ import annotations

import math

import numpy as np

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
# 5 scales of an 11-tap window without padding: the coarsest scale (side (s + 1) // 2 four times
# over) must still hold 11 pixels, i.e. s > (win_size - 1) * 2**4 = 160 (pytorch_msssim's rule).
MS_SSIM_MIN_SIDE = 161


def as_rgb_uint8(image) -> np.ndarray:
    """Return ``image`` (PIL image or array) as a contiguous ``uint8`` ``(H, W, 3)`` array."""
    if not isinstance(image, np.ndarray):
        image = np.asarray(image.convert("RGB"))
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 HxWx3 image, got {image.dtype} {image.shape}")
    return np.ascontiguousarray(image)


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = as_rgb_uint8(a), as_rgb_uint8(b)
    if a.shape != b.shape:
        raise ValueError(f"image shapes differ: {a.shape} vs {b.shape}")
    return a, b


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean squared error over all pixels and channels of two 8-bit RGB images."""
    a, b = _check_pair(a, b)
    d = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(d * d))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR-RGB in dB of two 8-bit RGB images (``inf`` when identical)."""
    m = mse(a, b)
    return math.inf if m == 0 else 10.0 * math.log10(255.0 ** 2 / m)


def ms_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """MS-SSIM of two 8-bit RGB (or grey) images, in numpy (the recipe of :func:`ms_ssim_tensor`)."""
    a, b = _check_pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs both image sides >= {MS_SSIM_MIN_SIDE} px, got {a.shape[1]}x{a.shape[0]}")
    x = np.atleast_3d(a).transpose(2, 0, 1).astype(np.float32)
    y = np.atleast_3d(b).transpose(2, 0, 1).astype(np.float32)
    g = _gaussian(np)
    terms = []
    for level in range(len(MS_SSIM_WEIGHTS)):
        ssim, cs = (m.mean(axis=(1, 2)) for m in _ssim_maps(x, y, lambda t: _blur_numpy(t, g), 255.0))
        if level < len(MS_SSIM_WEIGHTS) - 1:
            terms.append(np.maximum(cs, 0))
            x, y = _pool_numpy(x), _pool_numpy(y)
    terms.append(np.maximum(ssim, 0))
    stacked = np.stack(terms).astype(np.float64)  # [scales, C]
    return float(np.prod(stacked ** np.asarray(MS_SSIM_WEIGHTS)[:, None], axis=0).mean())


def _gaussian(xp, size: int = 11, sigma: float = 1.5):
    """The normalized Gaussian window, in numpy or torch (``xp``)."""
    t = xp.arange(size) - (size - 1) / 2
    g = xp.exp(-(t * t) / (2 * sigma * sigma))
    return g / g.sum()


def _blur_numpy(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """'valid' separable filtering of the last two axes: a sum of shifted slices (a loop over the
    11 taps, not over pixels)."""
    n = len(g)
    h, w = x.shape[-2] - n + 1, x.shape[-1] - n + 1
    rows = sum(g[k] * x[..., :, k:k + w] for k in range(n))
    return sum(g[k] * rows[..., k:k + h, :] for k in range(n))


def _pool_numpy(x: np.ndarray) -> np.ndarray:
    """2x2 average pooling, stride 2; an odd side gets one zero before and after, counted in the
    mean, as torch's ``avg_pool2d(padding=1)`` does."""
    ph, pw = x.shape[1] % 2, x.shape[2] % 2
    if ph or pw:
        x = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    h, w = x.shape[1] // 2 * 2, x.shape[2] // 2 * 2
    x = x[:, :h, :w]
    return (x[:, 0::2, 0::2] + x[:, 1::2, 0::2] + x[:, 0::2, 1::2] + x[:, 1::2, 1::2]) / 4


def _blur(x, g):
    """Separable Gaussian filter per channel of a torch tensor, 'valid' borders (no padding)."""
    import torch.nn.functional as F

    c = x.shape[1]
    x = F.conv2d(x, g.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, g.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _ssim_maps(x, y, blur, data_range: float):
    """The SSIM and contrast-structure maps of ``x`` and ``y`` (numpy arrays or torch tensors)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    sxx = blur(x * x) - mu_x * mu_x
    syy = blur(y * y) - mu_y * mu_y
    sxy = blur(x * y) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    return (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1) * cs, cs


def ms_ssim_tensor(x, y, data_range: float = 1.0, win_size: int = 11, sigma: float = 1.5,
                   weights=MS_SSIM_WEIGHTS):
    """Multi-scale SSIM (Wang, Simoncelli, Bovik 2003) of two ``[B, C, H, W]`` torch tensors,
    mean over batch and channels; differentiable (training's MS-SSIM loss).

    The standard recipe: an 11-tap Gaussian window (sigma 1.5) without padding, K1 = 0.01,
    K2 = 0.03, five scales with 2x2 average pooling between them, contrast-structure terms
    at the four finer scales and full SSIM at the coarsest, negative terms clipped to zero.
    """
    import torch
    import torch.nn.functional as F

    min_side = (win_size - 1) * 2 ** (len(weights) - 1) + 1
    if min(x.shape[-2:]) < min_side:
        raise ValueError(f"MS-SSIM needs images of at least {min_side} pixels per side, got {tuple(x.shape[-2:])}")
    x, y = x.float(), y.float()
    g = _gaussian(torch, win_size, sigma).to(device=x.device, dtype=x.dtype)
    w = torch.tensor(weights, dtype=x.dtype, device=x.device)
    terms = []
    for level in range(len(weights)):
        ssim, cs = (m.mean(dim=(2, 3)) for m in _ssim_maps(x, y, lambda t: _blur(t, g), data_range))
        if level < len(weights) - 1:
            terms.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=pad)
            y = F.avg_pool2d(y, kernel_size=2, padding=pad)
    terms.append(torch.relu(ssim))
    # A tiny floor keeps the gradient of t**w finite where a term is exactly zero.
    stacked = torch.stack(terms, dim=0).clamp(min=1e-12)  # [scales, B, C]
    return torch.prod(stacked ** w.view(-1, 1, 1), dim=0).mean()


def ms_ssim_db(value: float) -> float:
    """MS-SSIM in dB: ``-10 log10(1 - value)`` (``inf`` when ``value >= 1``)."""
    return math.inf if value >= 1.0 else -10.0 * math.log10(1.0 - value)


def bpp(num_bytes: int, height: int, width: int) -> float:
    """Bits per pixel of a ``num_bytes`` file for an ``height`` x ``width`` image."""
    return num_bytes * 8.0 / (height * width)


def quality(original: np.ndarray, decoded: np.ndarray, with_ms_ssim: bool = True) -> dict:
    """All distortion metrics of a decoded image: ``psnr``, ``msssim``, ``msssim_db``.

    MS-SSIM fields are ``None`` when ``with_ms_ssim`` is false or the image is too small.
    """
    out = {"psnr": psnr(original, decoded), "msssim": None, "msssim_db": None}
    if with_ms_ssim and min(original.shape[:2]) >= MS_SSIM_MIN_SIDE:
        v = ms_ssim(original, decoded)
        out["msssim"], out["msssim_db"] = v, ms_ssim_db(v)
    return out
