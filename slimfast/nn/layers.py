"""Neural network layers shared by the slimfast models.

* :class:`GDN` / IGDN -- generalized divisive normalization (Balle et al. 2016),
  ``y = x / sqrt(beta + gamma @ x^2)``; the inverse multiplies instead.
* :class:`IntegerCopyMixin` -- an integer-exact copy of some convolutions (the hyper-synthesis).

Convolutions, FasiNet's IQR and the slimmable variants are in :mod:`slimfast.nn.slim`; how they
are put together (ISD, ISU, ...) is written once per architecture in :mod:`slimfast.archs`.

Only torch is imported here: this module is the bottom of the package.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class NonNegativeParameterizer(nn.Module):
    """Stores ``p = sqrt(max(v, bound)^2 - pedestal)`` so that ``v -> v^2 + pedestal`` stays >= minimum.

    Optimizing the square root instead of the value itself keeps gradients well scaled near
    zero, which is what makes GDN stable to train (Balle's reparametrization).
    """

    def __init__(self, minimum: float = 0.0, reparam_offset: float = 2 ** -18):
        super().__init__()
        self.minimum = float(minimum)
        self.pedestal = reparam_offset ** 2
        self.bound = (self.minimum + self.pedestal) ** 0.5

    def init(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(torch.clamp(x + self.pedestal, min=self.pedestal))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Lower bound with a straight-through gradient so parameters can leave the bound.
        bounded = x + (torch.clamp(x, min=self.bound) - x).detach()
        return bounded * bounded - self.pedestal


class GDN(nn.Module):
    """Generalized divisive normalization over channels; ``inverse=True`` gives IGDN."""

    def __init__(self, channels: int, inverse: bool = False, beta_min: float = 1e-6, gamma_init: float = 0.1):
        super().__init__()
        self.channels = int(channels)
        self.inverse = bool(inverse)
        self.beta_reparam = NonNegativeParameterizer(minimum=beta_min)
        self.gamma_reparam = NonNegativeParameterizer()
        self.beta = nn.Parameter(self.beta_reparam.init(torch.ones(channels)))
        self.gamma = nn.Parameter(self.gamma_reparam.init(gamma_init * torch.eye(channels)))

    def effective_params(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.beta_reparam(self.beta), self.gamma_reparam(self.gamma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        beta, gamma = self.effective_params()
        norm = F.conv2d(x * x, gamma[:, :, None, None], beta)
        norm = torch.sqrt(norm)
        return x * norm if self.inverse else x / norm


class IntegerCopyMixin:
    """An integer-exact copy of some convolution layers, frozen into ``int_*`` buffers.

    ``int_w{i}`` (int16 weights), ``int_s{i}`` (float64 per-channel scales) and ``int_b{i}``
    (biases in fixed point) travel in the state dict; see :mod:`slimfast.coding.intmath`. Mixed into
    the hyper-synthesis modules, whose output selects entropy tables and so must be exact.
    """

    def _register_integer_buffers(self, count: int) -> None:
        for i in range(count):
            for kind, dtype in (("w", torch.int16), ("s", torch.float64), ("b", torch.float64)):
                self.register_buffer(f"int_{kind}{i}", torch.zeros(0, dtype=dtype))

    @property
    def frozen(self) -> bool:
        return self.int_w0.numel() > 0

    @torch.no_grad()
    def _freeze_layers(self, layers) -> None:
        import numpy as np

        from ..coding import intmath

        for i, layer in enumerate(layers):
            w_int, scale = self._quantize(layer)
            bias_q = layer.bias.detach().cpu().double().numpy() * (1 << intmath.ACT_FRAC)
            setattr(self, f"int_w{i}", torch.from_numpy(w_int))
            setattr(self, f"int_s{i}", torch.from_numpy(scale))
            setattr(self, f"int_b{i}", torch.from_numpy(np.rint(bias_q)))

    @staticmethod
    def _out_axis(layer: nn.Module) -> int:
        return 1 if isinstance(layer, nn.ConvTranspose2d) else 0

    @classmethod
    def _quantize(cls, layer: nn.Module):
        from ..coding import intmath

        return intmath.quantize_weight(layer.weight.detach().cpu().double().numpy(), cls._out_axis(layer))

    def integer_layers(self) -> list[nn.Module]:
        """The convolutions the integer copy mirrors, in ``int_*{i}`` order."""
        raise NotImplementedError

    def derivable_weights(self) -> list[str]:
        """Names (relative to this module) of the float weights that :meth:`_load_from_state_dict`
        can rebuild from the integer copy, so an int8 weights file need not store them twice."""
        names = {id(m): n for n, m in self.named_modules()}
        return [f"{names[id(layer)]}.weight" for layer in self.integer_layers()]

    def weights_stored_once(self) -> list[str]:
        """Those of :meth:`derivable_weights` that an int8 file may leave out: the ones whose
        integer copy is of these very weights. A copy frozen before further training (without
        ``update()``) would silently replace them on loading, so theirs stay stored."""
        import numpy as np

        if not self.frozen:
            return []
        out = []
        for i, (layer, key) in enumerate(zip(self.integer_layers(), self.derivable_weights())):
            w_int, scale = self._quantize(layer)
            held, held_scale, _ = self.integer_params(i)
            if np.array_equal(w_int, held) and np.array_equal(scale, held_scale):
                out.append(key)
        return out

    def integer_params(self, i: int):
        """(int weights, scales, fixed-point biases) of layer ``i`` as numpy arrays."""
        return (getattr(self, f"int_w{i}").numpy(), getattr(self, f"int_s{i}").numpy(),
                getattr(self, f"int_b{i}").numpy())

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The buffers are empty until frozen: take the stored shapes before copying.
        for name, _ in list(self.named_buffers(recurse=False)):
            if prefix + name in state_dict:
                setattr(self, name, torch.empty_like(state_dict[prefix + name]))
        # An int8 file stores these weights once, as the integer copy (12 bits, finer than the
        # int8 it would otherwise take): the float path gets weight = int_w * scale. Children load
        # after their parent, from this same dict, so adding the key here is enough.
        for i, (layer, key) in enumerate(zip(self.integer_layers(), self.derivable_weights())):
            w_key = f"{prefix}int_w{i}"
            if prefix + key not in state_dict and w_key in state_dict and state_dict[w_key].numel():
                scale = state_dict[f"{prefix}int_s{i}"].double()
                shape = [1] * state_dict[w_key].dim()
                shape[self._out_axis(layer)] = -1
                state_dict[prefix + key] = (state_dict[w_key].double() * scale.reshape(shape)).float()
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
