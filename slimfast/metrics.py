"""Image quality and rate metrics used by evaluation and benchmarks.

Conventions (the CompressAI ones, so our numbers compare with published curves):

* Images are 8-bit RGB: numpy ``uint8`` arrays of shape ``(H, W, 3)``.
* :func:`psnr` is PSNR-RGB: one MSE over all three channels of the 8-bit images, peak 255.
* :func:`ms_ssim` is MS-SSIM from the maintained ``pytorch_msssim`` package on float tensors
  in ``[0, 255]`` with ``data_range=255`` (default 5 scales, 11x11 Gaussian window). It needs
  both sides of the image to be at least :data:`MS_SSIM_MIN_SIDE` pixels.
* :func:`ms_ssim_db` is ``-10 log10(1 - ms_ssim)``.
* :func:`bpp` is bits per pixel from a real byte count: ``bytes * 8 / (H * W)``.

Identical images give ``inf`` for PSNR and MS-SSIM dB; writers of JSON turn those into null.
``torch`` and ``pytorch_msssim`` are imported only when MS-SSIM is computed.
"""
from __future__ import annotations

import math

import numpy as np

# pytorch_msssim (5 scales, win 11) asserts min side > (win_size - 1) * 2**4 = 160.
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
    """MS-SSIM of two 8-bit RGB images (``pytorch_msssim``, ``data_range=255``)."""
    a, b = _check_pair(a, b)
    if min(a.shape[:2]) < MS_SSIM_MIN_SIDE:
        raise ValueError(f"MS-SSIM needs both image sides >= {MS_SSIM_MIN_SIDE} px, got {a.shape[1]}x{a.shape[0]}")
    try:
        import torch
        from pytorch_msssim import ms_ssim as _ms_ssim
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("MS-SSIM needs the 'pytorch_msssim' and 'torch' packages "
                          "(pip install 'slimfast[eval]')") from e
    ta = torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1)[None].float()
    tb = torch.from_numpy(np.array(b, copy=True)).permute(2, 0, 1)[None].float()
    with torch.no_grad():
        return float(_ms_ssim(ta, tb, data_range=255.0, size_average=True))


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
