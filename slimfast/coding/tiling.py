"""Tiled analysis and synthesis: bounded memory on huge images, with no seams and no extra bits.

The transforms are convolutional, so one output position depends only on a small window of
the input (the receptive field). A tile is therefore computed from its region plus a *halo*
of neighbouring input at least as wide as the receptive field's radius; the halo's own
outputs, which saw the crop's artificial border, are discarded. What remains equals the
untiled result up to float summation order:

* the latent is one tensor coded as usual, so tiling changes neither the bitstream format nor
  the rate (a rounding tie may flip a rare symbol, which is still a valid encoding);
* the reconstruction has no seams, because every kept pixel saw all the context it would
  have seen untiled.

Tile and halo sizes are constants of the format's *implementation*, not the file: the decoder
picks tiles from the image size alone, so the same backend and thread count still give
identical pixels. Images up to one tile take the untiled path unchanged.

Works on numpy arrays and torch tensors alike (``[1, C, H, W]``); nothing here imports torch.
"""
from __future__ import annotations

from typing import Callable

# Encoder tiles in input pixels and decoder tiles in latent positions (x16 pixels). 2048-pixel
# tiles keep every intermediate tensor of the widest model under ~0.3 GB while the halos
# recompute only 13% (encoder) to 20% (decoder) extra.
ANALYSIS_TILE = 2048
SYNTHESIS_TILE = 128

# Geometry shared by every architecture so far: g_a's total stride is 16; g_a's receptive
# field reaches at most 28 input pixels from a latent's 16x16 block (SlimCAE's 9x9/4 + 5x5/2 +
# 5x5/2), IQR + g_s at most 6 latent positions (FasiNet's 7-tap IQR and 7x7/4 transposed
# convolutions). The halos add margin; tests/test_tiling.py checks tiled == untiled for each.
STRIDE = 16
ANALYSIS_HALO = 64
SYNTHESIS_HALO = 8


def _spans(n: int, tile: int, halo: int):
    """(core start, core end, crop start, crop end) along one axis."""
    for a in range(0, n, tile):
        b = min(a + tile, n)
        yield a, b, max(0, a - halo), min(n, b + halo)


def _alloc_like(sample, shape):
    if hasattr(sample, "new_empty"):  # torch
        return sample.new_empty(shape)
    import numpy as np

    return np.empty(shape, dtype=sample.dtype)


def tiled(fn: Callable, x, *, up: int = 1, down: int = 1, tile: int, halo: int):
    """``fn(x)`` computed tile by tile over the last two axes of ``x`` (``[1, C, H, W]``).

    ``fn`` maps a crop of side ``s`` to an output of side ``s * up / down`` (e.g. an encoder
    with total stride 16: ``down=16``; a decoder: ``up=16``). ``tile`` and ``halo`` are in
    input units and, for ``down > 1``, multiples of ``down`` (so every crop stays on the
    strided grid). A single tile calls ``fn(x)`` directly.
    """
    H, W = x.shape[-2:]
    if H <= tile and W <= tile:
        return fn(x)
    if down > 1 and (tile % down or halo % down or H % down or W % down):
        raise ValueError(f"tiles, halos and sides must be multiples of the stride {down}")
    out = None
    for r0, r1, cr0, cr1 in _spans(H, tile, halo):
        for c0, c1, cc0, cc1 in _spans(W, tile, halo):
            y = fn(x[..., cr0:cr1, cc0:cc1])
            if out is None:
                out = _alloc_like(y, (*y.shape[:-2], H * up // down, W * up // down))
            oy, ox = r0 * up // down, c0 * up // down  # where the core goes in the output
            sy, sx = (r0 - cr0) * up // down, (c0 - cc0) * up // down  # where it starts in y
            hy, wx = (r1 - r0) * up // down, (c1 - c0) * up // down
            out[..., oy: oy + hy, ox: ox + wx] = y[..., sy: sy + hy, sx: sx + wx]
            del y
    return out
