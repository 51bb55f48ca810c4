"""slimfast: a learned image codec that runs in real time on ordinary CPUs.

    >>> import slimfast
    >>> codec = slimfast.load()                  # the default bundled model
    >>> data = codec.compress(image, quality=3)  # PIL image or uint8 array -> .sfi bytes
    >>> image = slimfast.decompress(data)        # any .sfi file -> PIL image

Importing slimfast registers the ``.sfi`` format with Pillow, so ``Image.open("x.sfi")`` and
``image.save("x.sfi")`` work. torch is imported only when a model is first used.
"""
from __future__ import annotations

from . import zoo  # light: json and pathlib only
from .errors import SlimfastError

__version__ = "0.8.0"

__all__ = ["SlimfastError", "__version__", "decompress", "load", "list_models", "zoo"]


def load(name: str | None = None):
    """A codec for the named bundled model (``None``: the default). See :class:`slimfast.codec.Codec`."""
    from .codec import load as _load

    return _load(name)


def decompress(data: bytes):
    """Decode ``.sfi`` bytes to a PIL image; the file names the model it needs."""
    from .codec import decompress as _decompress

    return _decompress(data)


def list_models():
    from .zoo import list_models as _list

    return _list()


try:
    from . import pillow_plugin as _pillow_plugin  # noqa: F401  (registers the format)
except ImportError:  # pragma: no cover - Pillow missing: the API still works on arrays
    pass
