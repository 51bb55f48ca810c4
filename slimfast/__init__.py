"""slimfast: a learned image codec that runs in real time on ordinary CPUs.

    >>> import slimfast
    >>> data = slimfast.compress(image, quality=75)  # PIL image or uint8 array -> .sfi bytes
    >>> image = slimfast.decompress(data)            # .sfi bytes, path or file -> PIL image
    >>> codec = slimfast.load()                      # the default bundled model, kept loaded

``quality`` runs from 0 to 100, higher is better (fractions allowed), as in Pillow, cwebp and
avifenc; in the families with a hyperprior it is continuous, elsewhere it picks one of the
model family's operating points (:meth:`slimfast.codec.Codec.compress`, :mod:`slimfast.quality`).

How it runs comes from the ``SLIMFAST_*`` environment variables (:mod:`slimfast.settings` lists
them), overridden by keywords: ``slimfast.load(threads=2, precision="int8")``, or a whole
``slimfast.Settings`` (``settings=Settings.from_env().replace(engine="torch")``).

Importing slimfast registers the ``.sfi`` format with Pillow, so ``Image.open("x.sfi")`` and
``image.save("x.sfi")`` work. torch is imported only when a model is first used.
"""
from __future__ import annotations

import os
from typing import IO, TYPE_CHECKING, Union

from . import zoo  # light: json and pathlib only
from .errors import CorruptFileError, SlimfastError, UnreadableFileError
from .settings import Settings  # light: dataclasses and pathlib only

__version__ = "0.9.0"

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from .codec import Codec

    ImageLike = Union[Image.Image, np.ndarray]

__all__ = ["CorruptFileError", "Settings", "SlimfastError", "UnreadableFileError", "__version__", "compress",
           "decompress", "load", "list_models", "zoo"]


def load(name: str | None = None, *, threads: int | None = None, engine: str | None = None,
         precision: str | None = None, analysis: str | None = None, synthesis: str | None = None,
         settings: Settings | None = None, max_pixels: int | None = None) -> Codec:
    """A loaded :class:`~slimfast.codec.Codec`, ready to compress many images.

    ``name``: a model from :func:`list_models` (``None``: the one it marks ``default``),
    ``"NAME@N"`` for installed version N, or a family name (its default model). The keyword
    arguments override ``settings`` (``None``: the ``SLIMFAST_*`` environment variables):
    ``threads`` (0: the engine's default), ``engine`` (``"auto"``, ``"ort"``, ``"torch"``),
    ``precision`` (``"auto"``, the default: bf16 where the model card, the CPU and OpenVINO allow
    it, else fp32; ``"fp32"``, ``"int8"``, ``"bf16"``), ``analysis`` / ``synthesis`` (one side's
    precision) and ``max_pixels`` (the largest image it encodes and decodes). Raises
    :class:`SlimfastError` for an unknown model or an invalid setting.
    """
    from .codec import load as _load

    return _load(name, threads=threads, engine=engine, precision=precision, analysis=analysis, synthesis=synthesis,
                 settings=settings, max_pixels=max_pixels)


def compress(image: ImageLike, *, model: str | None = None, quality: float | None = None, width: int | None = None,
             max_bytes: int | None = None, target_bpp: float | None = None, threads: int | None = None,
             engine: str | None = None, precision: str | None = None, analysis: str | None = None,
             settings: Settings | None = None, max_pixels: int | None = None, metadata: str = "all",
             first_frame: bool = False, effort: int = 0) -> bytes:
    """Encode a PIL image or uint8 array (HxW, HxWx3, HxWx4) to ``.sfi`` bytes.

    ``model`` as for :func:`load`. ``quality``: 0 to 100, higher is better (``None``: the
    model's own point); ``width``: a slimmable model's width; ``max_bytes`` / ``target_bpp``:
    the largest file that fits (:meth:`slimfast.codec.Codec.compress`). ``metadata``: ``"all"``
    (ICC, EXIF, XMP; the default), ``"icc"`` (drops EXIF, which may hold the GPS location, and
    XMP) or ``"none"``. ``first_frame``: code an animated image's first frame (without it, an
    animated image is refused). ``effort``: encoder effort, 0 (the default: no refinement) to
    ``slimfast.codec.MAX_EFFORT``; above 0 refines the latents for this image, seconds per image,
    and needs torch (:meth:`slimfast.codec.Codec.compress`). The other keywords are
    :func:`load`'s. Invalid values raise :class:`SlimfastError` saying what is valid.
    """
    from .codec import check_effort
    from .format.imageio import check_metadata

    check_metadata(metadata)  # before a model loads
    check_effort(effort)
    codec = load(model, threads=threads, engine=engine, precision=precision, analysis=analysis, settings=settings,
                 max_pixels=max_pixels)
    return codec.compress(image, quality=quality, width=width, max_bytes=max_bytes, target_bpp=target_bpp,
                          metadata=metadata, first_frame=first_frame, effort=effort)


def decompress(data: Union[bytes, str, os.PathLike, IO[bytes]], *, settings: Settings | None = None,
               threads: int | None = None, engine: str | None = None, precision: str | None = None,
               synthesis: str | None = None, max_pixels: int | None = None) -> Image.Image:
    """Decode a ``.sfi`` file (its bytes, a path or a binary file object) to a PIL image; the
    file names the model it needs. A path or file is read no further than the file's header
    declares. The keyword arguments override ``settings`` (default: the environment's), as for
    :func:`load`; ``max_pixels`` refuses larger images (default ``Settings.max_pixels``, 64 Mi pixels)."""
    from .codec import decompress as _decompress

    return _decompress(data, settings=settings, threads=threads, engine=engine, precision=precision,
                       synthesis=synthesis, max_pixels=max_pixels)


def list_models(settings: Settings | None = None) -> list[zoo.ModelInfo]:
    """The installed models: the bundled ones, then those in ``settings.model_path`` (``None``:
    ``SLIMFAST_MODEL_PATH``), current versions only.

    Each :class:`~slimfast.zoo.ModelInfo` has ``name`` (what :func:`load` takes), ``version``,
    ``family`` (the models ``quality`` chooses among), ``default`` (the default model),
    ``widths`` (a slimmable model's widths, else ``None``), ``points`` (measured Kodak
    ``bpp``/``psnr`` per operating point) and ``card`` (the full model card).
    """
    from .zoo import list_models as _list

    return _list(model_path=(Settings.from_env() if settings is None else settings).model_path)


try:
    from . import pillow_plugin as _pillow_plugin  # noqa: F401  (registers the format)
except ImportError:  # pragma: no cover - Pillow missing: the API still works on arrays
    pass
