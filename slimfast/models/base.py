"""Torch modules built from an architecture's description (:mod:`slimfast.archs`).

:class:`CompressionModel` places one module per grammar record at the record's state-dict
key (so the shipped weights' keys load as they are) and runs the description's layer lists
at any width: the torch modules and the ONNX graphs (:mod:`slimfast.engines.specs`) are two
readings of the same lists. The modules themselves are the slimmable layers of
:mod:`slimfast.nn.slim`, which at full width are ordinary convolutions and GDNs.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F

from .. import archs
from ..archs import grammar as g
from ..coding.path import Latents
from ..nn.entropy import ConditionalEntropyModel, EntropyBottleneck
from ..nn.layers import GDN, IntegerCopyMixin
from ..nn.slim import SlimConv2d, SlimConvTranspose2d, SlimGDNPlus, SlimIQR, SwitchableGDN


class Part(nn.Module):
    """A container of modules addressed by the next piece of their key (``g_a``, ``g_a.2``, ...)."""

    def __getitem__(self, name) -> nn.Module:
        return self._modules[str(name)]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class IntegerBranch(IntegerCopyMixin, Part):
    """A hyper-synthesis branch: its float convolutions train, and ``update()`` freezes their
    integer-exact copy (``int_*`` buffers), which the latent codec runs for coding."""

    def __init__(self, branch: g.Branch):
        super().__init__()
        self._conv_keys = [layer.key[len(branch.key) + 1:] for layer in branch.layers if not isinstance(layer, g.ReLU)]
        self._register_integer_buffers(len(self._conv_keys))

    def integer_layers(self):
        return [self.get_submodule(k) for k in self._conv_keys]

    def freeze_integer(self) -> None:
        self._freeze_layers(self.integer_layers())


def _module_for(layer) -> nn.Module | None:
    if isinstance(layer, g.Conv):
        return SlimConv2d(layer.cin, layer.cout, layer.kernel, layer.stride, layer.bias,
                          padding=0 if layer.pads else None)
    if isinstance(layer, g.TConv):
        return SlimConvTranspose2d(layer.cin, layer.cout, layer.kernel, layer.stride, layer.bias)
    if isinstance(layer, g.GDN):
        kinds = {"plain": lambda: GDN(layer.channels, inverse=layer.inverse),
                 "switchable": lambda: SwitchableGDN(layer.per_width, inverse=layer.inverse),
                 "slim+": lambda: SlimGDNPlus(layer.per_width, inverse=layer.inverse)}
        return kinds[layer.kind]()
    if isinstance(layer, g.IQR):
        return SlimIQR(layer.channels)
    return None  # ReLU, Abs: no weights


def _place(root: nn.Module, key: str, module: nn.Module) -> None:
    *path, name = key.split(".")
    for piece in path:
        if root._modules.get(piece) is None:
            root.add_module(piece, Part())
        root = root._modules[piece]
    if root._modules.get(name) is None:
        root.add_module(name, module)


class CompressionModel(nn.Module):
    """A learned codec in torch: ``forward`` for training, the transforms for the torch engine.

    Subclasses (made in :mod:`slimfast.models` from each description) set ``architecture``;
    the constructor takes the description's options. Coding is not the model's: it goes
    through the one coding path (:meth:`coding_path`, :mod:`slimfast.coding`).
    """

    architecture: str = ""

    def __init__(self, **config):
        super().__init__()
        self.arch = archs.describe(self.architecture, config)
        self.widths = self.arch.widths
        self.latent_channels = self.arch.latent_channels
        self.pad_multiple = self.arch.pad_multiple
        self.hyper = self.arch.hyper
        self._build()

    def _build(self) -> None:
        a = self.arch
        full = a.widths[0] if a.widths else a.latent_channels
        for part in a.parts:  # registration order: the optimizer state's parameter order
            self.add_module(part, None)
        branches = a.hyper_synthesis(full) if a.hyper else ()
        for b in branches:
            if b is not None:
                _place(self, b.key, IntegerBranch(b))
        layers = [*a.analysis(full), *(a.hyper_analysis(full) if a.hyper else []),
                  *(layer for b in branches if b is not None for layer in b.layers), *a.synthesis(full)]
        for layer in layers:
            module = _module_for(layer)
            if module is not None:
                _place(self, layer.key, module)
        for part in [p for p in a.parts if self._modules.get(p) is None]:
            del self._modules[part]
        for key, channels in a.entropy_models():
            _place(self, key, EntropyBottleneck(channels))
        if a.hyper:
            self.conditional = ConditionalEntropyModel(a.distribution)

    @property
    def config(self) -> dict:
        return self.arch.config

    @property
    def default_width(self) -> int:
        return self.widths[0] if self.widths else self.latent_channels

    def check_width(self, width: int | None) -> int:
        return self.arch.check_width(width)

    @property
    def shape_key(self) -> str:
        return "z" if self.hyper else "y"

    @property
    def num_strings(self) -> int:
        return 2 if self.hyper else 1

    # -- running the description ---------------------------------------------------------------
    def run(self, layers, x: torch.Tensor) -> torch.Tensor:
        """``x`` through grammar records, each with the module at its key."""
        for layer in layers:
            if isinstance(layer, g.ReLU):
                x = F.relu(x)
            elif isinstance(layer, g.Abs):
                x = torch.abs(x)
            elif isinstance(layer, (g.Conv, g.TConv)):
                if getattr(layer, "pads", None):
                    top, left, bottom, right = layer.pads
                    x = F.pad(x, (left, right, top, bottom))
                x = self.get_submodule(layer.key)(x, layer.cout)
            elif isinstance(layer, g.GDN) and layer.kind != "plain":
                x = self.get_submodule(layer.key)(x, layer.index)
            else:
                x = self.get_submodule(layer.key)(x)
        return x

    def analysis(self, x: torch.Tensor, c: int | None = None) -> torch.Tensor:
        """g_a at latent width ``c``: ``x`` -> y."""
        return self.run(self.arch.analysis(self.check_width(c)), x)

    def hyper_analysis(self, y: torch.Tensor, c: int | None = None) -> torch.Tensor:
        """h_a at latent width ``c``: y -> z (hyperprior models)."""
        return self.run(self.arch.hyper_analysis(self.check_width(c)), y)

    def hyper_synthesis(self, z_hat: torch.Tensor, c: int | None = None):
        """The float (scales, means) for y from ``z_hat``; means are ``None`` for a scale-only model."""
        scale, mean = self.arch.hyper_synthesis(self.check_width(c))
        return self.run(scale.layers, z_hat), None if mean is None else self.run(mean.layers, z_hat)

    def synthesis(self, y_hat: torch.Tensor, c: int | None = None) -> torch.Tensor:
        """The decoder at latent width ``c``: y_hat -> x_hat (IQR and g_s for FasiNet)."""
        return self.run(self.arch.synthesis(self.check_width(c)), y_hat)

    def entropy_model(self, c: int | None = None) -> EntropyBottleneck:
        """The factorized entropy model of the deepest latent at width ``c``."""
        return self.get_submodule(self.arch.entropy_key(self.check_width(c)))

    def forward(self, x: torch.Tensor, width: int | None = None) -> dict:
        c = self.check_width(width)
        y = self.analysis(x, c)
        if not self.hyper:
            y_hat, y_lik = self.entropy_model(c)(y)
            return {"x_hat": self.synthesis(y_hat, c), "likelihoods": {"y": y_lik}}
        z_hat, z_lik = self.entropy_model(c)(self.hyper_analysis(y, c))
        h, w = y.shape[2:]
        scales, means = self.hyper_synthesis(z_hat, c)
        y_hat, y_lik = self.conditional(y, scales[..., :h, :w], None if means is None else means[..., :h, :w])
        return {"x_hat": self.synthesis(y_hat, c), "likelihoods": {"y": y_lik, "z": z_lik}}

    # -- training helpers ------------------------------------------------------------------------
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
        """Freeze every integer table and integer hyper-synthesis used for coding."""
        for m in self.modules():
            if isinstance(m, (EntropyBottleneck, ConditionalEntropyModel)):
                m.update()
            elif isinstance(m, IntegerBranch):
                m.freeze_integer()

    def num_parameters(self, width: int | None = None) -> int:
        return sum(p.numel() for p in self.parameters())

    # -- coding: the one coding path (slimfast.coding) on the torch engine ----------------------
    def coding_path(self, threads: int = 0):
        """This model's weights as they are now, coded by :class:`slimfast.coding.path.CodingPath`
        on the torch engine: the same latent codecs, hence the same files, as every engine.
        Call ``update()`` first; build a new one after changing the weights."""
        from ..coding.path import CodingPath
        from ..engines.torch import TorchEngine
        from ..engines.specs import Specs

        state = {k: v.detach().cpu().numpy() for k, v in self.state_dict().items()}
        return CodingPath(TorchEngine(self, threads), Specs(self.architecture, self.config, state), self.architecture)

    @staticmethod
    def _numpy(x) -> np.ndarray:
        return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=np.float32)

    def compress(self, x, width: int | None = None) -> Latents:
        """Code one image ``[1, 3, H, W]`` in [0, 1], H and W multiples of ``pad_multiple``."""
        return self.coding_path().compress(self._numpy(x), width)

    def decompress(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> torch.Tensor:
        return torch.from_numpy(self.coding_path().decompress(strings, shape, width))

    def encode_symbols(self, x, width: int | None = None) -> dict[str, np.ndarray]:
        return self.coding_path().encode_symbols(self._numpy(x), width)

    def encode_strings(self, symbols: dict[str, np.ndarray], width: int | None = None) -> list[bytes]:
        return self.coding_path().encode_strings(symbols, width)

    def decode_symbols(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> dict:
        return self.coding_path().decode_symbols(strings, shape, width)

    def synthesize(self, symbols: dict[str, np.ndarray], width: int | None = None) -> torch.Tensor:
        return torch.from_numpy(self.coding_path().synthesize(symbols, width))

    def estimate_bits(self, symbols: dict[str, np.ndarray], width: int | None = None) -> float:
        return self.coding_path().estimate_bits(symbols, width)

    def entropy_parameters(self, z_symbols: np.ndarray, width: int | None = None):
        return self.coding_path().entropy_parameters(z_symbols, width)
