"""``slimfast upgrade``: a file made with a retired model version, decoded with that version's
weights from a folder (a past release's ``weights/``) and encoded again with the current model
of its family, at the operating point nearest in rate.

A shipped ``(name, version)`` never changes, so the old weights decode the file bit for bit; the
new file is a second lossy coding of those pixels (generation loss): keep the original where
you can.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import zoo
from ..errors import SlimfastError
from ..format import container
from . import Job, Options, Record
from .files import read_sfi, write_output


def check_weights_folder(folder: str | None) -> None:
    if folder is None:
        return
    if not Path(folder).is_dir():
        raise SlimfastError(f"--weights-from: no such folder: {folder}")
    if not zoo.models_in(folder):
        raise SlimfastError(f"--weights-from: {folder} holds no model weights with their cards "
                            "(NAME.safetensors beside NAME.json, as in a release's slimfast/weights)")


def source_model(hdr: container.Header, candidates: list[zoo.ModelInfo], model_path) -> zoo.ModelInfo:
    """The model (version) a file was made with: from ``candidates``, else installed; a file
    neither has fails with the zoo's one line (which release decodes it)."""
    hexid = hdr.weights_id.hex()
    for c in candidates:
        if c.name == hdr.model and c.version == hdr.weights_version and c.sha256.startswith(hexid):
            return c
    return zoo.find_by_id(hdr.model, hdr.weights_version, hdr.weights_id, model_path=model_path)


def _is_current(info: zoo.ModelInfo, model_path) -> bool:
    return any((m.name, m.version, m.sha256) == (info.name, info.version, info.sha256)
               for m in zoo.list_models(model_path=model_path))


def _kodak_bpp(info: zoo.ModelInfo, width: int | None) -> float | None:
    return next((p["bpp"] for p in info.points
                 if p.get("bpp") is not None and p.get("width") in (None, width)), None)


def _current_points(family: list[zoo.ModelInfo]) -> list[tuple[str, int | None, float | None]]:
    """(model, width, Kodak bpp) of every operating point of a family's current models."""
    points = []
    for m in family:
        for w in sorted(m.widths) if m.widths else [None]:
            points.append((m.name, w, _kodak_bpp(m, w)))
    return points


def matching_point(old: zoo.ModelInfo, width: int | None, model_path=()) -> tuple[str, int | None]:
    """The current model (and width) that replaces ``old`` at ``width``: the same model where it
    is still bundled (at the same width), else the point of its family nearest in Kodak bpp."""
    current = zoo.list_models(model_path=model_path)
    same = next((m for m in current if m.name == old.name), None)
    if same is not None and (not same.widths or width in same.widths):
        return same.name, width if same.widths else None
    if not any(m.family == old.family for m in current):
        raise SlimfastError(f"no current model of family {old.family!r} to re-encode {old.name} files with; "
                            "choose one with -m (slimfast models lists them)")
    return nearest_point(old, width, old.family, model_path)


def nearest_point(old: zoo.ModelInfo, width: int | None, family: str, model_path=()) -> tuple[str, int | None]:
    """The current point of ``family`` nearest in Kodak bpp to ``old`` at ``width`` (the family's
    default point where either has no Kodak figure)."""
    members = [m for m in zoo.list_models(model_path=model_path) if m.family == family]
    target = _kodak_bpp(old, width)
    points = [p for p in _current_points(members) if p[2] is not None]
    if target is None or not points:
        from ..codec import model_info

        info = model_info(family, model_path)
        return info.name, info.default_width
    name, w, _ = min(points, key=lambda p: abs(p[2] - target))
    return name, w


def _is_family(name: str | None, model_path) -> bool:
    """Whether ``-m`` names a family (and not a model of that name)."""
    if not name or "@" in name:
        return False
    models = zoo.list_models(model_path=model_path)
    return any(m.family == name for m in models) and not any(m.name == name for m in models)


def _target(options: Options, old: zoo.ModelInfo, width: int | None) -> tuple[str, dict]:
    """The model to encode with and its point: the options' where given, else the matching point.
    ``-m FAMILY`` alone (no quality, no width) takes that family's point nearest in rate, as for
    the file's own family: the way forward for a family no longer bundled."""
    path = options.settings.model_path
    given = (options.model, options.quality, options.width) != (None, None, None)
    if not given:
        name, w = matching_point(old, width, path)
        return name, {"width": w}
    if options.quality is None and options.width is None and _is_family(options.model, path):
        name, w = nearest_point(old, width, options.model, path)
        return name, {"width": w}
    name = options.model or matching_point(old, width, path)[0]
    return name, {"quality": options.quality, "width": options.width}


def upgrade_file(job: Job, options: Options) -> Record:
    from ..codec import decompress
    from .run import check_output, codec_for, sfi_record

    if job.output != job.source:
        check_output(job, options.force)
    data = read_sfi(job.source)
    hdr = container.unpack(data, header_only=True)
    candidates = zoo.models_in(options.weights_from) if options.weights_from else []
    old = source_model(hdr, candidates, options.settings.model_path)
    if _is_current(old, options.settings.model_path):
        return Record(job.source, job.output, "skipped", f"already made with the current {old.name} v{old.version}",
                      len(data), 0, None, old.name, old.version)
    t0 = time.perf_counter()
    img = decompress(data, candidates=candidates, settings=options.settings)
    name, point = _target(options, old, hdr.width)
    new = codec_for(name, options.settings).compress(img, metadata=options.metadata, **point)
    seconds = time.perf_counter() - t0
    write_output(job.output, new, options.force)
    return sfi_record(job, new, len(data), len(new), seconds, img.mode,
                      source_model=old.name, source_version=old.version)
