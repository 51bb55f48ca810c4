"""Base class of every slimfast compression model."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import tiling
from ..shapes import check_width
from ..entropy import ConditionalEntropyModel, EntropyBottleneck


@dataclass
class Latents:
    """What a model's coder produces: entropy-coded strings plus the shape needed to decode them.

    ``shape`` is the spatial size (h, w) of the deepest latent; ``width`` the latent channel
    count used (the operating point of a slimmable model, else the full width).
    """

    strings: list[bytes]
    shape: tuple[int, int]
    width: int


class CompressionModel(nn.Module):
    """A learned codec: ``forward`` for training, ``compress``/``decompress`` for coding.

    Subclasses set ``architecture`` (registry name), ``pad_multiple`` (the input side must be
    a multiple of it) and ``widths`` (``None`` unless slimmable), and implement
    ``forward``, ``encode_symbols``, ``decode_symbols``, ``synthesize`` and ``config``.
    """

    architecture: str = ""
    pad_multiple: int = 16
    widths: tuple[int, ...] | None = None

    @property
    def config(self) -> dict:
        raise NotImplementedError

    @property
    def default_width(self) -> int:
        return self.widths[0] if self.widths else self.latent_channels

    latent_channels: int = 0

    def entropy_bottlenecks(self):
        return [m for m in self.modules() if isinstance(m, EntropyBottleneck)]

    def aux_loss(self) -> torch.Tensor:
        """Sum of the entropy bottlenecks' quantile losses (optimize with a separate optimizer)."""
        return sum(m.aux_loss() for m in self.entropy_bottlenecks())

    def aux_parameters(self):
        return [p for n, p in self.named_parameters() if n.endswith("quantiles")]

    def main_parameters(self):
        return [p for n, p in self.named_parameters() if not n.endswith("quantiles")]

    @torch.no_grad()
    def update(self) -> None:
        """Freeze every integer table (and integer sub-networks) used for coding."""
        for m in self.modules():
            if isinstance(m, (EntropyBottleneck, ConditionalEntropyModel)):
                m.update()

    def check_width(self, width: int | None) -> int:
        return check_width(self.architecture, self.widths, self.latent_channels, width)

    # Huge images are coded tile by tile (slimfast.tiling): the same latent and the same
    # pixels up to float summation order, in bounded memory.
    @staticmethod
    def tiled_analysis(fn, x: torch.Tensor) -> torch.Tensor:
        """``fn(x)`` for an encoder ``fn`` (stride ``tiling.STRIDE``), tile by tile on huge inputs."""
        return tiling.tiled(fn, x, down=tiling.STRIDE, tile=tiling.ANALYSIS_TILE, halo=tiling.ANALYSIS_HALO)

    @staticmethod
    def tiled_synthesis(fn, y_hat: torch.Tensor) -> torch.Tensor:
        """``fn(y_hat)`` for a decoder ``fn`` (latent -> pixels), tile by tile on huge latents."""
        return tiling.tiled(fn, y_hat, up=tiling.STRIDE, tile=tiling.SYNTHESIS_TILE, halo=tiling.SYNTHESIS_HALO)

    # -- coding -----------------------------------------------------------------------------
    def encode_symbols(self, x: torch.Tensor, width: int | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def encode_strings(self, symbols: dict[str, np.ndarray], width: int | None = None) -> list[bytes]:
        raise NotImplementedError

    def decode_symbols(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def synthesize(self, symbols: dict[str, np.ndarray], width: int | None = None) -> torch.Tensor:
        raise NotImplementedError

    def estimate_bits(self, symbols: dict[str, np.ndarray], width: int | None = None) -> float:
        raise NotImplementedError

    @torch.no_grad()
    def compress(self, x: torch.Tensor, width: int | None = None) -> Latents:
        """Code one image ``[1, 3, H, W]`` in [0, 1], H and W multiples of ``pad_multiple``."""
        width = self.check_width(width)
        if x.shape[0] != 1 or x.shape[2] % self.pad_multiple or x.shape[3] % self.pad_multiple:
            raise ValueError("compress expects one image padded to a multiple of pad_multiple")
        self._ep_cache = None  # see decompress
        symbols = self.encode_symbols(x, width)
        deepest = symbols[self.shape_key]
        return Latents(self.encode_strings(symbols, width), tuple(deepest.shape[2:]), width)

    @torch.no_grad()
    def decompress(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> torch.Tensor:
        width = self.check_width(width)
        # A hyperprior model remembers its last entropy parameters within one call (decoding needs
        # them twice); across calls a repeated file would skip the hyper-synthesis, and timings of
        # repeated decodes would leave out its cost.
        self._ep_cache = None
        return self.synthesize(self.decode_symbols(strings, shape, width), width).clamp_(0, 1)

    shape_key: str = "y"
    num_strings: int = 1

    def num_parameters(self, width: int | None = None) -> int:
        return sum(p.numel() for p in self.parameters())
