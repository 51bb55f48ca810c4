"""Every architecture, described once (torch-free): the registry.

``describe(name, config)`` gives an :class:`~.grammar.Architecture`, from which
:mod:`slimfast.models` builds the torch modules and :mod:`slimfast.runtime.graphs` the ONNX
graphs and the latent codecs. The grammar is in :mod:`.grammar`.
"""
from __future__ import annotations

from .fasinet import FasiNetH, FasiNetL
from .grammar import Architecture
from .slimcae import SlimCAE, SlimCAEHyper
from .slimfasinet import SlimFasiNetH, SlimFasiNetL

ARCHITECTURES: dict[str, type[Architecture]] = {
    cls.name: cls for cls in (FasiNetL, FasiNetH, SlimCAE, SlimCAEHyper, SlimFasiNetL, SlimFasiNetH)}


def describe(name: str, config: dict | None = None) -> Architecture:
    """The description of architecture ``name`` with these options (a weights file's config)."""
    try:
        cls = ARCHITECTURES[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return cls(**(config or {}))


__all__ = ["ARCHITECTURES", "Architecture", "FasiNetH", "FasiNetL", "SlimCAE", "SlimCAEHyper", "SlimFasiNetH",
           "SlimFasiNetL", "describe"]
