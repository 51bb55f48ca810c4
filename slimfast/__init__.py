"""slimfast: a learned image codec that runs in real time on ordinary CPUs.

    >>> import slimfast
    >>> codec = slimfast.load()                  # the default bundled model
    >>> data = codec.compress(image, quality=3)  # PIL image or uint8 array -> .sfi bytes
    >>> image = slimfast.decompress(data)        # any .sfi file -> PIL image

How it runs comes from the ``SLIMFAST_*`` environment variables (:mod:`slimfast.settings` lists
them), overridden by keywords: ``slimfast.load(threads=2, precision="int8")``, or a whole
``slimfast.Settings`` (``settings=Settings.from_env().replace(engine="torch")``).

Importing slimfast registers the ``.sfi`` format with Pillow, so ``Image.open("x.sfi")`` and
``image.save("x.sfi")`` work. torch is imported only when a model is first used.
"""
from __future__ import annotations

from . import zoo  # light: json and pathlib only
from .errors import CorruptFileError, SlimfastError, UnreadableFileError
from .settings import Settings  # light: dataclasses and pathlib only

__version__ = "0.8.0"

__all__ = ["CorruptFileError", "Settings", "SlimfastError", "UnreadableFileError", "__version__", "decompress", "load",
           "list_models", "zoo"]


def load(name: str | None = None, *, threads: int | None = None, engine: str | None = None,
         precision: str | None = None, analysis: str | None = None, synthesis: str | None = None,
         settings: Settings | None = None, max_pixels: int | None = None):
    """A codec for the named bundled model (``None``: the default). See :func:`slimfast.codec.load`:
    the keyword arguments override ``settings``, which defaults to the environment's;
    ``max_pixels`` caps the images it encodes and decodes."""
    from .codec import load as _load

    return _load(name, threads=threads, engine=engine, precision=precision, analysis=analysis, synthesis=synthesis,
                 settings=settings, max_pixels=max_pixels)


def decompress(data: bytes, *, settings: Settings | None = None, threads: int | None = None,
               engine: str | None = None, precision: str | None = None, synthesis: str | None = None,
               max_pixels: int | None = None):
    """Decode ``.sfi`` bytes to a PIL image; the file names the model it needs. The keyword
    arguments override ``settings`` (default: the environment's), as for :func:`load`;
    ``max_pixels`` refuses larger images (default ``Settings.max_pixels``, 64 Mi pixels)."""
    from .codec import decompress as _decompress

    return _decompress(data, settings=settings, threads=threads, engine=engine, precision=precision,
                       synthesis=synthesis, max_pixels=max_pixels)


def list_models(settings: Settings | None = None):
    """The installed models (the bundled ones, then those on ``settings.model_path``)."""
    from .zoo import list_models as _list

    return _list(model_path=(Settings.from_env() if settings is None else settings).model_path)


try:
    from . import pillow_plugin as _pillow_plugin  # noqa: F401  (registers the format)
except ImportError:  # pragma: no cover - Pillow missing: the API still works on arrays
    pass
