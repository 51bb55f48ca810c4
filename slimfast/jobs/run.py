"""One file through the codec: :func:`code_file`, and the checks and codec cache it relies on."""
from __future__ import annotations

import contextlib
import io
import time
from functools import lru_cache
from pathlib import Path

from ..errors import SlimfastError
from ..format import container
from ..settings import Settings
from . import Job, Options, Record
from .files import check_target, os_text, read_image, read_sfi, same_file, shown, write_output
from .images import encode, output_format
from .plan import reencode_message


@lru_cache(maxsize=8)
def codec_for(model: str | None, settings: Settings):
    """The loaded :class:`~slimfast.codec.Codec` of ``model``: once per process and settings."""
    from ..codec import load

    return load(model, settings=settings)


def prepare(options: Options) -> None:
    """Check ``options`` once, before the first file: the model loads, a width fits it, the
    upgrade's weights folder holds weights. Each error is a one-line SlimfastError."""
    from ..codec import check_effort, refinement_lambda
    from ..errors import require_torch
    from ..format.imageio import check_metadata

    check_metadata(options.metadata)
    if options.command == "upgrade":
        from .upgrade import check_weights_folder

        check_weights_folder(options.weights_from)
    if options.command == "decompress" or (options.command == "upgrade" and options.model is None):
        return
    codec = codec_for(options.model, options.settings)
    if options.width is not None and not codec.widths:
        raise SlimfastError(f"--width applies to slimmable models only; {codec.name} is not slimmable "
                            f"(use --quality, or pick a slimmable model from `slimfast models`)")
    if options.command == "compress" and check_effort(options.effort):
        require_torch(f"--effort {options.effort} (encoder refinement)")
        refinement_lambda(codec.info, codec.info.default_width)  # a model effort cannot refine: one error


def code_file(job: Job, options: Options) -> Record:
    """Code one file as ``options.command`` says; every failure is a ``failed`` record whose
    ``error`` is one line (an interrupt or a signal still propagates)."""
    from .upgrade import upgrade_file

    coder = {"compress": compress_file, "decompress": decompress_file, "upgrade": upgrade_file}[options.command]
    try:
        with pillow_pixel_limit(options.settings.max_pixels):
            return coder(job, options)
    except SlimfastError as exc:
        return failed(job, str(exc))
    except OSError as exc:  # whatever a file operation did not name
        return failed(job, os_text(exc))
    except MemoryError:
        return failed(job, "out of memory")


def failed(job: Job, error: str) -> Record:
    return Record(job.source, job.output, "failed", error)


def check_output(job: Job, force: bool) -> None:
    """Before the work: the output is not the input and can be written."""
    if job.output == "-":
        return
    if same_file(job.source, job.output):
        raise SlimfastError(f"refusing to overwrite the input {job.source}")
    check_target(Path(job.output), force)


def compress_file(job: Job, options: Options) -> Record:
    check_output(job, options.force)
    max_pixels = options.settings.max_pixels
    raw = read_image(job.source, max_pixels)
    if container.is_sfi(raw) and not options.allow_reencode:
        raise SlimfastError(reencode_message(shown(job.source)))
    img = open_input(raw, job.source, max_pixels, options.first_frame)
    codec = codec_for(options.model, options.settings)
    t0 = time.perf_counter()
    data = codec.compress(img, quality=options.quality, width=options.width, max_bytes=options.max_bytes,
                          target_bpp=options.target_bpp, metadata=options.metadata, effort=options.effort)
    seconds = time.perf_counter() - t0
    write_output(job.output, data, options.force)
    return sfi_record(job, data, len(raw), len(data), seconds, img.mode)


def sfi_record(job: Job, sfi: bytes, bytes_in: int, bytes_out: int, seconds: float, mode: str,
               **extra) -> Record:
    """The record of a job whose .sfi side is ``sfi`` (its model, version, size and bpp)."""
    hdr = container.unpack(sfi, header_only=True)
    w, h = hdr.image_size
    return Record(job.source, job.output, "ok", None, bytes_in, bytes_out, len(sfi) * 8 / (w * h),
                  hdr.model, hdr.weights_version, seconds, (w, h), mode, **extra)


def decompress_file(job: Job, options: Options) -> Record:
    from ..codec import decompress

    fmt = output_format(job.output, options.format)
    check_output(job, options.force)
    data = read_sfi(job.source)
    t0 = time.perf_counter()
    img = decompress(data, settings=options.settings)
    seconds = time.perf_counter() - t0
    out = encode(img, fmt)
    write_output(job.output, out, options.force)
    return sfi_record(job, data, len(data), len(out), seconds, img.mode)


def open_input(raw: bytes, name: str, max_pixels: int, first_frame: bool = False):
    from ..format.imageio import open_image

    if not raw:
        raise SlimfastError(f"empty input: {shown(name)}")
    size = _image_size(raw)
    if size and size[0] * size[1] > max_pixels:
        raise SlimfastError(f"input image {size[0]}x{size[1]} is above the limit of {max_pixels} pixels, "
                            "which decoding it would need too (--max-pixels N raises it)")
    return open_image(io.BytesIO(raw), max_pixels, name=shown(name), first_frame=first_frame)


def _image_size(raw: bytes) -> tuple[int, int] | None:
    """The size an image's header states, without decoding it (None: not an image Pillow reads)."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # checked by the caller, from this size
    try:
        with Image.open(io.BytesIO(raw)) as im:
            return im.size
    except Exception:  # noqa: BLE001 - open_image says what is wrong, in one line
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = saved


@contextlib.contextmanager
def pillow_pixel_limit(max_pixels: int):
    """Pillow's own limit set to ours while a file is coded: an input within --max-pixels must
    not meet a DecompressionBombWarning (a second line on stderr) or error on the way."""
    from PIL import Image

    saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, max_pixels
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved
