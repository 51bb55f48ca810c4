"""Torch models, one per architecture description (:mod:`slimfast.archs`), made from it.

``ARCHITECTURES`` maps an architecture name to its torch class; ``build(name, config)``
instantiates one. Each class is :class:`~.base.CompressionModel` over its description, with
the description's name and docstring, plus the warm starts that apply to it
(:mod:`.warmstart`); slimmable ones add the width bookkeeping of :class:`slimfast.nn.slim.SlimMixin`.
"""
from __future__ import annotations

from .. import archs
from ..archs import grammar
from ..nn.slim import SlimMixin
from . import warmstart
from .base import CompressionModel

# Warm starts each architecture accepts (``load_unslimmed``) and what its full width gives.
_WARM = {
    "fasinet-h": {"load_unslimmed": warmstart.load_fasinet_l},
    "slim-fasinet-l": {"load_unslimmed": warmstart.load_leading_blocks},
    "slim-fasinet-h": {"load_unslimmed": warmstart.load_leading_blocks, "unslimmed_architecture": "fasinet-h",
                       "full_width_state": warmstart.full_width_state, "sort_channels": warmstart.sort_channels},
}


def _parts(desc: archs.Architecture) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The top-level parts each side runs (the encoder of a hyperprior model also runs h_s)."""
    full = desc.widths[0] if desc.widths else desc.latent_channels
    hs = ("h_s_scale", "h_s_mean") if desc.hyper else ()
    iqr = ("iqr",) if any(isinstance(layer, grammar.IQR) for layer in desc.synthesis(full)) else ()
    return ("g_a", *(("h_a",) if desc.hyper else ()), *hs), (*hs, *iqr, "g_s")


def _torch_class(name: str) -> type[CompressionModel]:
    desc_cls = archs.ARCHITECTURES[name]
    slimmable = issubclass(desc_cls, archs.slimcae.Slimmable)
    encode, decode = _parts(desc_cls())
    ns = {"architecture": name, "__doc__": desc_cls.__doc__, "__module__": __name__, "pad_multiple": desc_cls.pad_multiple,
          "encode_parts": encode, "decode_parts": decode, **_WARM.get(name, {})}
    return type(desc_cls.__name__, (SlimMixin, CompressionModel) if slimmable else (CompressionModel,), ns)


ARCHITECTURES: dict[str, type[CompressionModel]] = {name: _torch_class(name) for name in archs.ARCHITECTURES}
FasiNetL, FasiNetH = ARCHITECTURES["fasinet-l"], ARCHITECTURES["fasinet-h"]
SlimCAE, SlimCAEHyper = ARCHITECTURES["slimcae"], ARCHITECTURES["slimcae-hyper"]
SlimFasiNetL, SlimFasiNetH = ARCHITECTURES["slim-fasinet-l"], ARCHITECTURES["slim-fasinet-h"]


def build(architecture: str, config: dict | None = None) -> CompressionModel:
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return cls(**(config or {}))


__all__ = ["ARCHITECTURES", "CompressionModel", "FasiNetH", "FasiNetL", "SlimCAE", "SlimCAEHyper",
           "SlimFasiNetH", "SlimFasiNetL", "build"]
