"""Images to ``.sfi`` bytes and back: padding, modes, alpha, ICC, operating points.

This layer joins a model (``slimfast.models``) to the container (``slimfast.format.container``).
How models run (engine, threads, precisions, runtime knobs, model path, pixel limit) is one
:class:`~slimfast.settings.Settings`, passed down explicitly; :func:`load`, :func:`decompress` and
:class:`Codec` start from the environment's (:meth:`Settings.from_env`) when given none.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math
import numbers
import os
import threading
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from .format import container
from . import zoo
from .coding.coder import CorruptStream
from .coding.intmath import STEP_ONE
from .coding.latent_codecs import DEFAULT_CODER
from .quality import Knob, ladder_index
from .errors import CorruptFileError, SlimfastError, printable
from .format.imageio import CanonicalImage, canonicalize, check_metadata, check_size, to_pil
from .settings import Settings

_lock = threading.Lock()

# precision= of load() and decompress(): what it sets of (analysis, synthesis)
PRECISIONS = {"auto": ("auto", "auto"), "fp32": ("fp32", "fp32"), "int8": ("fp32", "int8"), "bf16": ("bf16", "bf16")}


def resolve_settings(settings: Settings | None = None, *, threads: int | None = None, engine: str | None = None,
                     precision: str | None = None, analysis: str | None = None,
                     synthesis: str | None = None, max_pixels: int | None = None) -> Settings:
    """``settings`` (``None``: :meth:`Settings.from_env`) with the keyword arguments given applied.

    ``precision``: ``"auto"`` (the default: :func:`resolved_precision`); ``"fp32"``; ``"int8"``,
    int8 synthesis (the card's calibrated ranges, at the PSNR cost it records; analysis fp32);
    ``"bf16"``, analysis and synthesis in bfloat16 on OpenVINO. ``analysis`` / ``synthesis`` set
    one side and win over ``precision``. Decoded symbols never depend on the synthesis
    precision, only pixels do; a bf16 analysis writes a slightly different file, which any decoder
    reads. ``max_pixels``: the largest image (in pixels) the encoder accepts and the decoder
    produces (:attr:`Settings.max_pixels`).
    """
    base = Settings.from_env() if settings is None else settings
    changes = {}
    if precision is not None:
        if precision not in PRECISIONS:
            raise SlimfastError(f"precision must be 'auto', 'fp32', 'int8' or 'bf16', not {precision!r}")
        changes["analysis"], changes["synthesis"] = PRECISIONS[precision]
    given = {"threads": threads, "engine": engine, "analysis": analysis, "synthesis": synthesis,
             "max_pixels": max_pixels}
    changes.update({k: v for k, v in given.items() if v is not None})
    return base.replace(**changes) if changes else base


def backend(settings: Settings, architecture: str | None = None) -> str:
    """``"ort"`` or ``"torch"``: ``settings.engine``, where ``"auto"`` takes ort when
    ONNX Runtime imports (a core dependency). Architectures the ORT runtime does not cover always use torch."""
    from . import runtime

    name = settings.engine
    if name == "torch" or (architecture is not None and not runtime.supports(architecture)):
        return "torch"
    if not runtime.available():
        if name == "ort":
            raise SlimfastError("SLIMFAST_BACKEND=ort needs onnx and onnxruntime, core dependencies "
                                "that do not import here: pip install onnx onnxruntime")
        return "torch"
    return "ort"


def resolved_precision(info: zoo.ModelInfo, settings: Settings, part: str, backend_name: str | None = None) -> str:
    """The precision ``part`` (``"analysis"`` or ``"synthesis"``) of ``info`` runs at: the setting,
    where ``"auto"`` is bf16 if the card's held-out measurement allows it on that side
    (``card["bf16"][part]``), the model runs on ONNX Runtime's graphs and OpenVINO computes bf16
    natively here; else fp32 (:mod:`slimfast.settings`)."""
    value = getattr(settings, part)
    if value != "auto":
        return value
    if not (info.card.get("bf16") or {}).get(part) or (backend_name or backend(settings, info.architecture)) != "ort":
        return "fp32"
    from .engines import openvino as ov_backend

    return "fp32" if ov_backend.unavailable_reason() else "bf16"


def _check_bf16(info: zoo.ModelInfo, settings: Settings, backend_name: str, part: str) -> bool:
    """Whether ``part`` (``"synthesis"`` or ``"analysis"``) runs in bf16, after checking that it can here."""
    if resolved_precision(info, settings, part, backend_name) != "bf16":
        return False
    if backend_name != "ort":
        raise SlimfastError(f"bf16 {part} runs on the ONNX Runtime backend's graphs only, and {info.name} "
                            "runs with torch here (SLIMFAST_BACKEND=torch, an architecture the runtime does "
                            "not cover, or onnxruntime missing)")
    from .engines import openvino as ov_backend

    reason = ov_backend.unavailable_reason()
    if reason:
        raise SlimfastError(f"bf16 {part} {reason}")
    return True


def _int8_ranges(info: zoo.ModelInfo, settings: Settings, backend_name: str) -> str | None:
    """The card's stored int8 ranges (as JSON, hashable for the cache) when int8 synthesis is on."""
    if settings.synthesis != "int8":
        return None
    if backend_name != "ort":
        raise SlimfastError(f"int8 synthesis runs on the ONNX Runtime backend only, and {info.name} decodes with "
                            "torch here (SLIMFAST_BACKEND=torch, an architecture the runtime does not cover, "
                            "or onnxruntime missing)")
    cal = info.card.get("int8_synthesis")
    if not cal:
        raise SlimfastError(f"model {info.name} v{info.version} has no int8 synthesis calibration in its card")
    import json

    return json.dumps(cal["ranges"], sort_keys=True)


def runtime_options(settings: Settings) -> dict:
    """The :class:`~slimfast.runtime.model.RuntimeModel` keywords ``settings`` gives."""
    return {"threads": settings.threads, "tconv": settings.ort_tconv, "optimization": settings.ort_optimization,
            "spinning": settings.ort_spinning, "arena": settings.ort_arena, "cache_dir": settings.cache_dir,
            "ov_precision": settings.ov_precision, "affinity": settings.ort_affinity}


@lru_cache(maxsize=16)
def _load_weights(path: str, sha256: str, backend: str = "torch", int8_ranges: str | None = None,
                  bf16: bool = False, bf16_analysis: bool = False, options: tuple = ()):
    mismatch = f"weights file {path} does not match its model card (sha256); reinstall slimfast"
    if backend == "ort":  # the runtime hashes the bytes it parses: one read of the file
        import json

        from .runtime import load_model as load_runtime

        model = load_runtime(path, int8_ranges=json.loads(int8_ranges) if int8_ranges else None, bf16_synthesis=bf16,
                             bf16_analysis=bf16_analysis, **dict(options))
        if model.sha256 != sha256:  # a card without one never loads (zoo)
            raise SlimfastError(mismatch)
        return model
    if hashlib.sha256(open(path, "rb").read()).hexdigest() != sha256:
        raise SlimfastError(mismatch)
    from .errors import require_torch

    require_torch(f"the torch engine (weights {os.path.basename(path)})")
    from .models.weights import load_model

    return load_model(path).coding_path(dict(options).get("threads", 0))


def _model_for(info: zoo.ModelInfo, settings: Settings, for_decoding: bool = False):
    """The loaded model of ``info``: for encoding, its analysis at ``settings.analysis``; with
    ``for_decoding``, its synthesis at ``settings.synthesis``."""
    b = backend(settings, info.architecture)
    ranges = _int8_ranges(info, settings, b) if for_decoding else None
    bf16 = _check_bf16(info, settings, b, "synthesis") if for_decoding else False
    bf16_analysis = False if for_decoding else _check_bf16(info, settings, b, "analysis")
    # Part of the weight cache's key: a model built with other threads or knobs is never shared.
    options = tuple(runtime_options(settings).items()) if b == "ort" else (("threads", settings.threads),)
    with _lock:
        return _load_weights(str(info.path), info.sha256, b, ranges, bf16, bf16_analysis, options)


def pad_image(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate to a multiple of ``multiple`` per side (cropped again on decode)."""
    h, w = rgb.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return rgb


def to_input(rgb: np.ndarray) -> np.ndarray:
    """``[1, 3, H, W]`` float32 in [0, 1], built in place: one float copy of a huge image, not three."""
    x = np.empty((1, 3, *rgb.shape[:2]), dtype=np.float32)
    x[0] = rgb.transpose(2, 0, 1)
    np.divide(x, np.float32(255), out=x)
    return x


def _declared_size(image) -> tuple[int, int]:
    """(width, height) of an input without touching its pixels: a PIL image's header size."""
    if isinstance(image, np.ndarray) and image.ndim >= 2:
        return image.shape[1], image.shape[0]
    size = getattr(image, "size", None)
    return size if isinstance(size, tuple) and len(size) == 2 else (1, 1)  # canonicalize names what it is


@dataclass
class OperatingPoint:
    model: str
    width: int | None
    step: int = STEP_ONE  # the quantization step in 1/STEP_ONE (slimfast.quality): hyperprior models only


QUALITY_RANGE = "a number from 0 to 100 (higher is better, fractions allowed)"


def check_quality(quality) -> float:
    """``quality`` as a float in 0..100, or a one-line error saying what is valid."""
    ok = isinstance(quality, numbers.Real) and not isinstance(quality, bool) and 0 <= quality <= 100  # nan fails
    if not ok:
        raise SlimfastError(f"quality must be {QUALITY_RANGE}, not {printable(repr(quality))}")
    return float(quality)


def quality_index(quality: float, n: int) -> int:
    """The point (0 = smallest file) that ``quality`` picks among ``n`` in a family without a
    continuous knob: 0..100 split evenly (:func:`slimfast.quality.ladder_index`)."""
    return ladder_index(check_quality(quality), n)


def quality_range(index: int, n: int, knob: Knob | None = None) -> tuple[float, float]:
    """The qualities ``[low, high)`` that pick point ``index`` of ``n`` (the last one includes 100)."""
    return knob.quality_range(index) if knob else (index * 100 / n, (index + 1) * 100 / n)


def check_size_limit(max_bytes, target_bpp, names: tuple[str, str] = ("max_bytes", "target_bpp")) -> None:
    """One-line errors for a size limit that no file can meet or that is not a number."""
    if max_bytes is not None and target_bpp is not None:
        raise SlimfastError(f"give either {names[0]} or {names[1]}, not both")
    if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, numbers.Integral)
                                  or max_bytes < 1):
        raise SlimfastError(f"{names[0]} must be a whole number of bytes, at least 1, not {printable(repr(max_bytes))}")
    if target_bpp is not None and (isinstance(target_bpp, bool) or not isinstance(target_bpp, numbers.Real)
                                   or not math.isfinite(target_bpp) or target_bpp <= 0):
        raise SlimfastError(f"{names[1]} must be a finite number of bits per pixel above 0, "
                            f"not {printable(repr(target_bpp))}")


# Encoder effort (``effort=``, ``slimfast compress --effort``): 0 codes the analysis' own latents;
# 1..MAX_EFFORT refine them per image (slimfast.models.refine, which has one level per effort).
MAX_EFFORT = 3
EFFORT_RANGE = f"a whole number from 0 to {MAX_EFFORT}"
# Refinement keeps the torch graph of the whole image: about 0.4 GB + 0.35 GB per megapixel.
EFFORT_MAX_PIXELS = 16 * 2 ** 20


def check_effort(effort) -> int:
    """``effort`` as an int in 0..:data:`MAX_EFFORT`, or a one-line error saying what is valid."""
    if isinstance(effort, bool) or not isinstance(effort, numbers.Integral) or not 0 <= effort <= MAX_EFFORT:
        raise SlimfastError(f"effort must be {EFFORT_RANGE}, not {printable(repr(effort))}")
    return int(effort)


def refinement_lambda(info: zoo.ModelInfo, width: int) -> float:
    """The lambda ``info`` was trained with at ``width`` (its card's), which effort above 0 scores
    iterates with; a one-line error for a model that effort cannot refine."""
    card = info.card
    if card.get("metric", "mse") != "mse":
        raise SlimfastError(f"effort above 0 refines models trained for MSE; {info.name} was trained for "
                            f"{card.get('metric')} (use effort 0)")
    lmbda = card.get("lambda")
    if info.widths and card.get("lambdas"):
        lmbda = card["lambdas"][sorted(info.widths, reverse=True).index(width)]
    if not isinstance(lmbda, (int, float)) or isinstance(lmbda, bool) or not lmbda > 0:
        raise SlimfastError(f"effort above 0 needs the lambda {info.name} was trained with, and its model card "
                            "records none (use effort 0)")
    return float(lmbda)


@lru_cache(maxsize=4)
def _refinement_model(path: str, sha256: str):
    """The torch model of a weights file, frozen: effort's differentiable proxy."""
    if hashlib.sha256(open(path, "rb").read()).hexdigest() != sha256:
        raise SlimfastError(f"weights file {path} does not match its model card (sha256); reinstall slimfast")
    from .models.weights import load_model

    return load_model(path).requires_grad_(False)


def operating_points(info: zoo.ModelInfo, model_path=()) -> list[OperatingPoint]:
    """``info``'s family, from the smallest files (quality 0) to the largest (quality 100)."""
    if info.widths:
        return [OperatingPoint(info.name, w) for w in sorted(info.widths)]
    pinned = not zoo.is_current(info, model_path=model_path)
    return [OperatingPoint(f"{m.name}@{m.version}" if pinned else m.name, None)
            for m in zoo.family_members(info, model_path=model_path)]


FIT_QUALITY = 0.25  # max_bytes / target_bpp on the quality knob: quality found to within this


def knob_for(info: zoo.ModelInfo, model_path=()) -> Knob | None:
    """The continuous quality knob of ``info``'s family (:mod:`slimfast.quality`), or None where
    its points have no hyperprior or their cards no increasing lambdas (quality then picks a point)."""
    from .archs import ARCHITECTURES

    arch = ARCHITECTURES.get(info.architecture)
    if arch is None or not arch.hyper:
        return None
    points = operating_points(info, model_path)
    if info.widths:
        lams = info.card.get("lambdas") or []
        if len(lams) != len(info.widths):
            return None
        by_width = dict(zip(sorted(info.widths, reverse=True), lams))  # the card lists them widest first
        lambdas = [by_width[p.width] for p in points]
        default = [p.width for p in points].index(info.default_width)
    else:
        members = zoo.family_members(info, model_path=model_path)
        lambdas = [m.card.get("lambda") for m in members]
        default = next((i for i, m in enumerate(members) if m.default), ladder_index(50, len(members)))
    try:
        return Knob(tuple(float(v) for v in lambdas), default)
    except (TypeError, ValueError):
        return None


def default_quality_range(info: zoo.ModelInfo, model_path=()) -> tuple[float, float]:
    """The qualities that pick the point a model codes at when given none."""
    points = operating_points(info, model_path)
    at = next(i for i, p in enumerate(points) if p.model.partition("@")[0] == info.name
              and p.width == info.default_width)
    return quality_range(at, len(points), knob_for(info, model_path))


def model_info(name: str | None, model_path=()) -> zoo.ModelInfo:
    """A model by name (as :func:`slimfast.zoo.get`), or by family name: the family's default
    model, else the one quality 50 picks."""
    if name is not None and "@" not in name:
        models = zoo.list_models(model_path=model_path)
        family = [m for m in models if m.family == name]
        if family and not any(m.name == name for m in models):
            members = zoo.family_members(family[0], model_path=model_path)
            return next((m for m in members if m.default), members[quality_index(50, len(members))])
    return zoo.get(name, model_path=model_path)


class Codec:
    """A loaded model ready to code images. Get one with :func:`slimfast.load`.

    ``settings``: how it runs (:class:`~slimfast.settings.Settings`; ``None``: the environment's).
    """

    def __init__(self, info: zoo.ModelInfo, settings: Settings | None = None):
        self.info = info
        self.settings = Settings.from_env() if settings is None else settings
        self.model = _model_for(info, self.settings)

    name = property(lambda self: self.info.name)
    widths = property(lambda self: self.info.widths)
    family = property(lambda self: self.info.family)

    def __repr__(self) -> str:
        return f"<slimfast.Codec {self.name} v{self.info.version}>"

    @property
    def precision(self) -> dict[str, str]:
        """``{"analysis": ..., "synthesis": ...}``: the precisions this model codes at here, ``auto`` resolved."""
        return {part: resolved_precision(self.info, self.settings, part) for part in ("analysis", "synthesis")}

    # -- operating points ---------------------------------------------------------------------
    def operating_points(self) -> list[OperatingPoint]:
        """This model's family, from the smallest files (quality 0) to the largest (quality 100)."""
        return operating_points(self.info, self.settings.model_path)

    def resolve(self, quality: float | None, width: int | None) -> OperatingPoint:
        """The operating point (and step) ``quality`` (0..100) or ``width`` picks; neither: the model's default."""
        if width is not None:
            if not self.widths:
                raise SlimfastError(f"--width applies to slimmable models only; {self.name} is not slimmable")
            if isinstance(width, bool) or width not in self.widths:
                raise SlimfastError(f"width {printable(repr(width))} not available for {self.name}; choose one of "
                                    f"{', '.join(map(str, sorted(self.widths)))}")
            if quality is not None:
                raise SlimfastError("give either a quality or a width, not both")
            return OperatingPoint(self.name, width)
        if quality is None:
            return OperatingPoint(self.name, self.info.default_width)
        points = self.operating_points()
        knob = knob_for(self.info, self.settings.model_path)
        if knob is None:
            return points[quality_index(quality, len(points))]
        index, step = knob.at(check_quality(quality))
        return dataclasses.replace(points[index], step=step)

    # -- coding -------------------------------------------------------------------------------
    def compress(self, image, quality: float | None = None, width: int | None = None,
                 max_bytes: int | None = None, target_bpp: float | None = None, metadata: str = "all",
                 first_frame: bool = False, effort: int = 0) -> bytes:
        """Encode a PIL image or uint8 array (HxW, HxWx3, HxWx4) to ``.sfi`` bytes.

        ``quality`` (0..100, higher is better, fractions allowed): in a family with a hyperprior,
        the continuous knob (:mod:`slimfast.quality`: 75 is the family's default point as
        trained, other values a point at another quantization step); in the others, one of the
        ``n`` rate points of the family, or of a slimmable model's widths, evenly: point
        ``min(n - 1, floor(quality / 100 * n))``, smallest file first. ``None``: the model's
        own point. ``width`` picks a width directly. ``max_bytes`` / ``target_bpp`` instead
        give the largest file that fits (a bisection of the knob, or the largest of the
        points), and raise :class:`SlimfastError` if none does. Images above
        ``settings.max_pixels`` (what the decoder would refuse) are refused before their pixels
        are read.

        ``metadata``: what the file carries besides pixels: ``"all"`` (the ICC profile, EXIF
        with its orientation reset to 1 as the pixels are turned, and XMP), ``"icc"`` (the ICC
        profile only: EXIF may hold the GPS location) or ``"none"``. A file with EXIF or XMP is
        format version 2; one without stays version 1.

        An animated image (GIF, WebP, APNG) is refused, since a file stores one frame, unless
        ``first_frame`` (then its first frame is coded).

        ``effort`` (0..:data:`MAX_EFFORT`, default 0): encoder effort. 0 codes the analysis
        transform's latents as they are; above 0 they are refined for this image
        (:mod:`slimfast.models.refine`: needs torch, about 3, 9 and 21 s for a 768x512 image
        on one core), and the file kept is the one of lowest real ``bits / pixels + lambda * MSE``
        among those tried, the unrefined one included. Decoders and the format are unchanged.
        With ``max_bytes`` / ``target_bpp`` the point is chosen as at effort 0, then refined
        within the limit. Models trained for MS-SSIM, and images above :data:`EFFORT_MAX_PIXELS`
        (refinement's memory grows with the image), are refused.
        """
        check_metadata(metadata)
        effort = check_effort(effort)
        if effort:
            from .errors import require_torch

            require_torch(f"effort {effort} (encoder refinement)")
        limited = max_bytes is not None or target_bpp is not None
        check_size_limit(max_bytes, target_bpp)
        if limited and (quality is not None or width is not None):
            raise SlimfastError("give a quality or width, or a size limit (max_bytes / target_bpp), not both")
        check_size(_declared_size(image), self.settings.max_pixels)
        img = image if isinstance(image, CanonicalImage) else canonicalize(image, first_frame=first_frame)
        if metadata != "all" and (img.exif is not None or img.xmp is not None or
                                  (metadata == "none" and img.icc is not None)):
            img = dataclasses.replace(img, exif=None, xmp=None, icc=img.icc if metadata == "icc" else None)
        if effort and img.size[0] * img.size[1] > EFFORT_MAX_PIXELS:
            raise SlimfastError(f"effort above 0 refines images of up to {EFFORT_MAX_PIXELS} pixels (its memory grows "
                                f"with the image), and this one is {img.size[0]}x{img.size[1]}: use effort 0")
        if limited:
            return self._compress_to_fit(img, max_bytes, target_bpp, effort)
        point = self.resolve(quality, width)
        return self._compress_point(img, point, effort)

    def _compress_point(self, img: CanonicalImage, point: OperatingPoint, effort: int = 0,
                        limit: int | None = None) -> bytes:
        info = (self.info if point.model in (self.name, f"{self.name}@{self.info.version}")
                else zoo.get(point.model, model_path=self.settings.model_path))
        model = _model_for(info, self.settings)
        w, h = img.size
        check_size(img.size, self.settings.max_pixels)
        x = to_input(pad_image(img.rgb, model.pad_multiple))
        if getattr(model, "bf16_analysis", False):  # built here, so that its errors are one line
            try:
                model.prepare_analysis(x.shape, point.width)
            except Exception as exc:
                if self.settings.analysis != "auto":
                    raise SlimfastError(f"bf16 analysis unavailable for {info.name} v{info.version}: {exc}") from None
                model = _model_for(info, self.settings.replace(analysis="fp32"))  # auto falls back
        lat = model.compress(x, width=point.width, step=point.step, coder=self._coder())
        alpha = zlib.compress(img.alpha.tobytes(), 9) if img.alpha is not None else None
        hdr = container.Header(model=info.name, weights_version=info.version,
                               weights_id=bytes.fromhex(info.sha256[:16]),
                               width=lat.width, image_size=(w, h), mode=img.mode,
                               streams=lat.strings, alpha=alpha, icc=img.icc,
                               chunks=_step_chunks(lat.step) + container.pack_layout(lat.coder)
                               + _metadata_chunks(img))
        data = container.pack(hdr)
        if effort:
            data = self._refined(info, model, x, hdr, len(data), effort, limit, lat.step)
        return data

    def _coder(self) -> str:
        """The entropy coder of new files: the settings', ``auto`` being rANS where it was built."""
        return DEFAULT_CODER if self.settings.coder == "auto" else self.settings.coder

    def _refined(self, info: zoo.ModelInfo, model, x: np.ndarray, hdr: container.Header, size: int, effort: int,
                 limit: int | None, step: int = STEP_ONE) -> bytes:
        """``hdr``'s file (``size`` bytes, y coded at ``step``) with its latents refined at ``effort``,
        within ``limit`` bytes. At a step Delta other than 1 the point stands in for a model trained at
        lambda / Delta^2 (:mod:`slimfast.quality`), the lambda its iterates are scored with."""
        from .models.refine import refine

        lmbda = refinement_lambda(info, hdr.width) * (STEP_ONE / step) ** 2
        overhead = size - sum(map(len, hdr.streams))  # the container's part: the same whatever the streams
        w, h = hdr.image_size
        best = refine(model, _refinement_model(str(info.path), info.sha256), x, (h, w), hdr.width, lmbda, effort,
                      step=step, max_stream_bytes=None if limit is None else limit - overhead,
                      threads=self.settings.threads, coder=_coder(hdr))
        return container.pack(dataclasses.replace(hdr, streams=best.strings))

    def decompress(self, data: bytes):
        """Like :func:`decompress` with this codec's settings, also finding its model if it is not installed."""
        return decompress(data, candidates=[self.info], settings=self.settings)

    def _compress_to_fit(self, img: CanonicalImage, max_bytes, target_bpp, effort: int = 0) -> bytes:
        limit = max_bytes if max_bytes is not None else math.floor(target_bpp * img.size[0] * img.size[1] / 8)
        knob = knob_for(self.info, self.settings.model_path)
        data, point = self._largest_on_knob(img, limit, knob) if knob else self._largest_on_ladder(img, limit)
        if not effort:
            return data
        # The point effort 0 picks, refined among the iterates that still fit.
        return self._compress_point(img, point, effort, limit)

    def _largest_on_ladder(self, img: CanonicalImage, limit: int) -> tuple[bytes, OperatingPoint]:
        # Every point is coded: on a given image the rate need not grow with the point's rank.
        points = self.operating_points()
        files = [self._compress_point(img, p) for p in points]
        fitting = [i for i, d in enumerate(files) if len(d) <= limit]
        if not fitting:
            raise SlimfastError(f"no operating point of {self.family} fits {limit} bytes: "
                                f"the smallest is {min(map(len, files))} bytes")
        best = max(fitting, key=lambda i: len(files[i]))
        return files[best], points[best]

    def _largest_on_knob(self, img: CanonicalImage, limit: int, knob: Knob) -> tuple[bytes, OperatingPoint]:
        """The largest file within ``limit`` over quality 0..100: the family's own points first
        (quality 0, each point at step 1, both sides of each hand-over, 100), upwards until one is
        too large, then bisection
        between the last that fits and it, to within :data:`FIT_QUALITY`. The size grows with
        quality almost everywhere; every file tried that fits competes, so a dip costs a little
        size, never the limit, and the result is never smaller than the best point that fits."""
        tried = {}

        def fits(q: float) -> bool:
            point = self.resolve(q, None)
            tried[q] = (self._compress_point(img, point), point)
            return len(tried[q][0]) <= limit

        # Where one point hands over to the next, the lower one's finest step may make a larger
        # file than the upper one's coarsest: both sides are tried.
        edges = {knob.quality_range(i)[0] for i in range(1, len(knob.lambdas))}
        marks = sorted({0.0, *edges, *(math.nextafter(q, 101) for q in edges),
                        *(knob.quality_of(math.log(v)) for v in knob.lambdas), 100.0})
        lo = hi = None
        for q in marks:
            if fits(q):
                lo, hi = q, None
            elif q not in edges:
                hi = q
                break
        if lo is None:
            raise SlimfastError(f"no quality of {self.family} fits {limit} bytes: the smallest file is "
                                f"{len(tried[0.0][0])} bytes")
        while hi is not None and hi - lo > FIT_QUALITY:
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        return max((v for v in tried.values() if len(v[0]) <= limit), key=lambda v: len(v[0]))


def _step_chunks(step: int) -> list[tuple[str, bytes]]:
    """The ``QUAL`` chunk of a file coded at a step other than 1 (step 1: none, as in older files)."""
    return [] if step == STEP_ONE else [("QUAL", container.pack_step(step))]


def _metadata_chunks(img: CanonicalImage) -> list[tuple[str, bytes]]:
    """The ``exif`` / ``xmpd`` chunks of ``img`` (none: the file stays format version 1)."""
    chunks = []
    for ctype, what, payload in (("exif", "EXIF", img.exif), ("xmpd", "XMP", img.xmp)):
        if payload is None:
            continue
        limit = container.CHUNK_TYPES[ctype].max_len
        if len(payload) > limit:
            raise SlimfastError(f"the image's {what} is {len(payload)} bytes, over the format's limit of {limit} "
                                f"(metadata='icc' / --metadata icc drops it)")
        chunks.append((ctype, bytes(payload)))
    return chunks


def decompress(data, candidates: list[zoo.ModelInfo] | None = None, *, settings: Settings | None = None,
               threads: int | None = None, engine: str | None = None, precision: str | None = None,
               synthesis: str | None = None, max_pixels: int | None = None):
    """Decode ``.sfi`` bytes, a path or a binary file object to a PIL image; the header
    names the model to use.

    ``candidates`` are models to try before the installed ones (used to measure a model that
    is not installed yet). ``settings`` (``None``: the environment's) and the keyword arguments
    say how it runs, as for :func:`load`.
    """
    settings = resolve_settings(settings, threads=threads, engine=engine, precision=precision, synthesis=synthesis,
                                max_pixels=max_pixels)
    hdr = _unpack_within(data, settings)
    model = _decoder_for(hdr, candidates, settings)
    w, h = hdr.image_size
    m = model.pad_multiple
    shape = (-(-h // m), -(-w // m))  # the deepest latent has stride pad_multiple
    with _corrupt_streams():
        rgb = model.decompress_rgb8(hdr.streams, shape, width=hdr.width, step=_step(hdr), coder=_coder(hdr))
    if rgb.shape[:2] != (h, w):
        rgb = np.ascontiguousarray(rgb[:h, :w])
    return to_pil(rgb, hdr.mode, _alpha_plane(hdr), hdr.icc, hdr.chunk("exif"), hdr.chunk("xmpd"))


def decode_symbols(data: bytes, *, settings: Settings | None = None) -> dict[str, np.ndarray]:
    """The integer symbols a ``.sfi`` file decodes to: ``{"y"}`` (and ``{"z"}``), ``[1, c, h, w]``.

    They are the same on every machine, engine, precision and thread count (the bitstream
    contract, :mod:`slimfast.coding`); only the pixels made from them are float arithmetic.
    """
    settings = resolve_settings(settings)
    hdr = _unpack_within(data, settings)
    model = _decoder_for(hdr, None, settings)
    m, (w, h) = model.pad_multiple, hdr.image_size
    with _corrupt_streams():
        return model.decode_symbols(hdr.streams, (-(-h // m), -(-w // m)), width=hdr.width, step=_step(hdr),
                                    coder=_coder(hdr))


def _sfi_bytes(src) -> bytes:
    """The bytes of ``src``: bytes as they are; a path or file object read no further than its
    header declares (:func:`container.read_file`), so that a device costs a few bytes."""
    if isinstance(src, bytes):
        return src
    if isinstance(src, (bytearray, memoryview)):
        return bytes(src)
    if isinstance(src, (str, os.PathLike)):
        return container.read_file(src, what=str(src))
    if callable(getattr(src, "read", None)):
        return container.read_file(src, what=str(getattr(src, "name", "file object")))
    raise SlimfastError(f"expected .sfi bytes, a path or a binary file object, got {type(src).__name__}")


def _unpack_within(data, settings: Settings) -> container.Header:
    hdr = container.unpack(_sfi_bytes(data))
    if hdr.pixels > settings.max_pixels:
        raise SlimfastError(f"image {hdr.image_size[0]}x{hdr.image_size[1]} is above this decoder's limit of "
                            f"{settings.max_pixels} pixels (max_pixels: SLIMFAST_MAX_PIXELS or --max-pixels raise it)")
    return hdr


@contextmanager
def _corrupt_streams():
    """Malformed streams, wherever found below (the coder, a latent codec), as one-line errors."""
    try:
        yield
    except (ValueError, CorruptStream) as exc:
        raise CorruptFileError(f"corrupt .sfi file: {str(exc).removeprefix('corrupt ')}") from None


def _decoder_for(hdr: container.Header, candidates: list[zoo.ModelInfo] | None, settings: Settings):
    """The model that decodes ``hdr``, checked against it and with its synthesis built."""
    info = next((c for c in candidates or [] if c.name == hdr.model and c.version == hdr.weights_version
                 and c.sha256.startswith(hdr.weights_id.hex())), None)
    info = info or zoo.find_by_id(hdr.model, hdr.weights_version, hdr.weights_id, model_path=settings.model_path)
    model = _model_for(info, settings, for_decoding=True)
    try:
        model.check_width(hdr.width)
    except ValueError as exc:
        raise CorruptFileError(f"corrupt .sfi header: {exc}") from None
    if getattr(model, "synthesis_precision", "fp32") != "fp32":  # built here, so its errors are not "corrupt file"
        try:
            model.prepare_synthesis(hdr.width)
        except Exception as exc:
            if settings.synthesis != "auto":
                raise SlimfastError(f"{model.synthesis_precision} synthesis unavailable for {info.name} "
                                    f"v{info.version}: {exc}") from None
            model = _model_for(info, settings.replace(synthesis="fp32"), for_decoding=True)  # auto falls back
    if len(hdr.streams) != model.num_strings:
        raise CorruptFileError(f"corrupt .sfi file: {info.name} files have {model.num_strings} streams")
    return model


def _step(hdr: container.Header) -> int:
    """The quantization step a file was coded at (1, as :data:`STEP_ONE`, without a ``QUAL`` chunk)."""
    return container.unpack_step(hdr.chunk("QUAL"), STEP_ONE)


def _coder(hdr: container.Header) -> str:
    """The entropy coder of a file's streams (``"range"`` without a ``LAYT`` chunk)."""
    return container.unpack_layout(hdr.chunk("LAYT"))


def _alpha_plane(hdr: container.Header) -> np.ndarray | None:
    w, h = hdr.image_size
    has_alpha = hdr.mode in ("RGBA", "LA")
    if hdr.alpha is None:
        if has_alpha:
            raise CorruptFileError("corrupt .sfi file: alpha plane missing")
        return None
    if not has_alpha:
        raise CorruptFileError(f"corrupt .sfi file: an alpha plane in a {hdr.mode} image")
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(hdr.alpha, w * h + 1)  # one byte more than allowed: too long shows
    except zlib.error:
        raise CorruptFileError("corrupt .sfi file: bad alpha plane") from None
    if len(raw) != w * h:
        raise CorruptFileError("corrupt .sfi file: alpha plane has the wrong size")
    # Exactly one zlib stream, complete, and nothing after it (the spec's "zlib-compressed plane").
    if not inflate.eof or inflate.unused_data or inflate.unconsumed_tail:
        raise CorruptFileError("corrupt .sfi file: alpha plane is not one complete zlib stream")
    return np.frombuffer(raw, dtype=np.uint8).reshape(h, w)


def load(name: str | None = None, *, threads: int | None = None, engine: str | None = None,
         precision: str | None = None, analysis: str | None = None, synthesis: str | None = None,
         settings: Settings | None = None, max_pixels: int | None = None) -> Codec:
    """A :class:`Codec` for a named model (``None``: the default model), ``"NAME@N"`` (version
    N) or a family name from ``slimfast models`` (its default model, else the one quality 50 picks).

    ``settings`` (``None``: :meth:`Settings.from_env`, the ``SLIMFAST_*`` variables) says how it
    runs; ``threads`` (0: the engine's default), ``engine`` (``"auto"``, ``"ort"``, ``"torch"``),
    ``precision``, ``analysis`` / ``synthesis`` and ``max_pixels`` override it (see :func:`resolve_settings`).
    """
    settings = resolve_settings(settings, threads=threads, engine=engine, precision=precision, analysis=analysis,
                                synthesis=synthesis, max_pixels=max_pixels)
    return Codec(model_info(name, settings.model_path), settings)
