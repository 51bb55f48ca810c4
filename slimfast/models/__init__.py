"""Compression models, grouped by paper. ``ARCHITECTURES`` maps an architecture name to its class."""
from .base import CompressionModel
from .fasinet import FasiNetH, FasiNetL
from .slimcae import SlimCAE, SlimCAEHyper
from .slimfasinet import SlimFasiNetH, SlimFasiNetL

ARCHITECTURES: dict[str, type[CompressionModel]] = {
    "fasinet-l": FasiNetL,
    "fasinet-h": FasiNetH,
    "slimcae": SlimCAE,
    "slimcae-hyper": SlimCAEHyper,
    "slim-fasinet-l": SlimFasiNetL,
    "slim-fasinet-h": SlimFasiNetH,
}


def register(cls: type[CompressionModel]) -> type[CompressionModel]:
    ARCHITECTURES[cls.architecture] = cls
    return cls


def build(architecture: str, config: dict | None = None) -> CompressionModel:
    try:
        cls = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    return cls(**(config or {}))


__all__ = ["ARCHITECTURES", "CompressionModel", "FasiNetH", "FasiNetL", "SlimCAE", "SlimCAEHyper",
           "SlimFasiNetH", "SlimFasiNetL", "build", "register"]
