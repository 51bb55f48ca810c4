"""Images to ``.sfi`` bytes and back: padding, modes, alpha, ICC, operating points.

This layer joins a model (``slimfast.models``) to the container (``slimfast.container``).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from . import container, zoo
from .errors import SlimfastError
from .imageio import CanonicalImage, canonicalize, to_pil, to_rgb8

_lock = threading.Lock()
DEFAULT_MAX_DECODE_PIXELS = 64 * 1024 * 1024


def backend(architecture: str | None = None) -> str:
    """``"ort"`` or ``"torch"``: ``SLIMFAST_BACKEND`` if set, else ort when ``slimfast[fast]`` is installed.

    Architectures the ORT runtime does not cover always use torch.
    """
    from . import runtime

    name = os.environ.get("SLIMFAST_BACKEND", "").strip().lower() or "auto"
    if name not in ("auto", "ort", "torch"):
        raise SlimfastError(f"SLIMFAST_BACKEND must be 'torch' or 'ort', not {name!r}")
    if name == "torch" or (architecture is not None and not runtime.supports(architecture)):
        return "torch"
    if not runtime.available():
        if name == "ort":
            raise SlimfastError("SLIMFAST_BACKEND=ort needs onnx and onnxruntime: pip install 'slimfast[fast]'")
        return "torch"
    return "ort"


SYNTHESIS_PRECISIONS = ("fp32", "int8", "bf16")


def synthesis_precision() -> str:
    """``"fp32"``, ``"int8"`` or ``"bf16"``: ``SLIMFAST_SYNTHESIS`` (``slimfast decompress --int8``
    or ``--bf16``), fp32 by default.

    int8 runs the decoder's synthesis with int8 convolutions and the activation ranges stored in
    the model card (``slimfast.runtime.quantize``): faster, at a PSNR cost the card records.
    bf16 runs it in bfloat16 on OpenVINO (``slimfast.runtime.ov_backend``), where the CPU computes
    bf16 natively: faster, at a PSNR cost RESULTS.md measures ("bf16").
    The decoded symbols are the same in every case; only the pixels change.
    """
    name = os.environ.get("SLIMFAST_SYNTHESIS", "").strip().lower() or "fp32"
    if name not in SYNTHESIS_PRECISIONS:
        raise SlimfastError(f"SLIMFAST_SYNTHESIS must be 'fp32', 'int8' or 'bf16', not {name!r}")
    return name


def analysis_precision() -> str:
    """``"fp32"`` or ``"bf16"``: ``SLIMFAST_ANALYSIS`` (``slimfast compress --bf16``), fp32 by default.

    bf16 runs the encoder's analysis (g_a, and h_a for a hyperprior model) in bfloat16 on
    OpenVINO: faster, and the latents it rounds differ slightly from fp32's, so the file does
    too (RESULTS.md, "bf16", measures the bpp and PSNR change). Any decoder reads the file: what
    it decodes is the symbols written, whatever computed them.
    """
    name = os.environ.get("SLIMFAST_ANALYSIS", "").strip().lower() or "fp32"
    if name not in ("fp32", "bf16"):
        raise SlimfastError(f"SLIMFAST_ANALYSIS must be 'fp32' or 'bf16', not {name!r}")
    return name


def _check_bf16(info: zoo.ModelInfo, backend_name: str, part: str) -> bool:
    """Whether ``part`` (``"synthesis"`` or ``"analysis"``) runs in bf16, after checking that it can here."""
    if (synthesis_precision() if part == "synthesis" else analysis_precision()) != "bf16":
        return False
    if backend_name != "ort":
        raise SlimfastError(f"bf16 {part} runs on the ONNX Runtime backend's graphs only, and {info.name} "
                            "runs with torch here (SLIMFAST_BACKEND=torch, an architecture the runtime does "
                            "not cover, or onnxruntime missing)")
    from .runtime import ov_backend

    reason = ov_backend.unavailable_reason()
    if reason:
        raise SlimfastError(f"bf16 {part} {reason}")
    return True


def _int8_ranges(info: zoo.ModelInfo, backend_name: str) -> str | None:
    """The card's stored int8 ranges (as JSON, hashable for the cache) when int8 synthesis is on."""
    if synthesis_precision() != "int8":
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


@lru_cache(maxsize=16)
def _load_weights(path: str, sha256: str, backend: str = "torch", int8_ranges: str | None = None,
                  bf16: bool = False, bf16_analysis: bool = False):
    if sha256 and hashlib.sha256(open(path, "rb").read()).hexdigest() != sha256:
        raise SlimfastError(f"weights file {path} does not match its model card (sha256); reinstall slimfast")
    if backend == "ort":
        import json

        from .runtime import load_model as load_runtime

        return load_runtime(path, int8_ranges=json.loads(int8_ranges) if int8_ranges else None, bf16_synthesis=bf16,
                            bf16_analysis=bf16_analysis)
    from .errors import require_torch

    require_torch(f"the torch backend (weights {os.path.basename(path)})")
    from .weights import load_model

    return load_model(path)


def _model_for(info: zoo.ModelInfo, for_decoding: bool = False):
    """The loaded model of ``info``: for encoding, its analysis at the chosen precision; with
    ``for_decoding``, its synthesis at the chosen precision."""
    b = backend(info.architecture)
    ranges = _int8_ranges(info, b) if for_decoding else None
    bf16 = _check_bf16(info, b, "synthesis") if for_decoding else False
    bf16_analysis = False if for_decoding else _check_bf16(info, b, "analysis")
    with _lock:
        return _load_weights(str(info.path), info.sha256, b, ranges, bf16, bf16_analysis)


def _inference(model):
    """torch's inference mode for a torch model, nothing for the ORT runtime."""
    if type(model).__module__.startswith("slimfast.runtime"):
        return contextlib.nullcontext()
    import torch

    return torch.inference_mode()


def pad_image(rgb: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate to a multiple of ``multiple`` per side (cropped again on decode)."""
    h, w = rgb.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        rgb = np.pad(rgb, ((0, ph), (0, pw), (0, 0)), mode="edge")
    return rgb


def _to_input(rgb: np.ndarray, model):
    """``[1, 3, H, W]`` float32 in [0, 1], built in place: one float copy of a huge image, not three."""
    x = np.empty((1, 3, *rgb.shape[:2]), dtype=np.float32)
    x[0] = rgb.transpose(2, 0, 1)
    np.divide(x, np.float32(255), out=x)
    if type(model).__module__.startswith("slimfast.runtime"):
        return x
    import torch

    return torch.from_numpy(x)


def _to_tensor(rgb: np.ndarray):
    """The torch model input for an ``HxWx3`` uint8 image."""
    return _to_input(rgb, None)


@dataclass
class OperatingPoint:
    model: str
    width: int | None


class Codec:
    """A loaded model ready to code images. Get one with :func:`slimfast.load`."""

    def __init__(self, info: zoo.ModelInfo):
        self.info = info
        self.model = _model_for(info)

    name = property(lambda self: self.info.name)
    widths = property(lambda self: self.info.widths)
    family = property(lambda self: self.info.family)

    def __repr__(self) -> str:
        return f"<slimfast.Codec {self.name} v{self.info.version}>"

    # -- operating points ---------------------------------------------------------------------
    def operating_points(self) -> list[OperatingPoint]:
        """This model's family, from the smallest files (quality 1) to the largest."""
        if self.widths:
            return [OperatingPoint(self.name, w) for w in sorted(self.widths)]
        pinned = not zoo.is_current(self.info)
        return [OperatingPoint(f"{m.name}@{m.version}" if pinned else m.name, None)
                for m in zoo.family_members(self.info)]

    def resolve(self, quality: int | None, width: int | None) -> OperatingPoint:
        if width is not None:
            if not self.widths:
                raise SlimfastError(f"--width applies to slimmable models only; {self.name} is not slimmable")
            if width not in self.widths:
                raise SlimfastError(f"width {width} not available for {self.name}; choose one of "
                                    f"{', '.join(map(str, sorted(self.widths)))}")
            if quality is not None:
                raise SlimfastError("give either a quality or a width, not both")
            return OperatingPoint(self.name, width)
        if quality is None:
            return OperatingPoint(self.name, self.info.default_width)
        points = self.operating_points()
        if not 1 <= quality <= len(points):
            raise SlimfastError(f"quality must be 1..{len(points)} for the {self.family} family")
        return points[quality - 1]

    # -- coding -------------------------------------------------------------------------------
    def compress(self, image, quality: int | None = None, width: int | None = None,
                 max_bytes: int | None = None, target_bpp: float | None = None) -> bytes:
        """Encode a PIL image or uint8 array (HxW, HxWx3, HxWx4) to ``.sfi`` bytes.

        ``quality`` (1 = smallest file) picks a rate point of the model's family, or a width of
        a slimmable model; ``width`` picks a width directly. ``max_bytes`` / ``target_bpp``
        pick the best operating point whose file fits (the smallest one if none does).
        """
        img = image if isinstance(image, CanonicalImage) else canonicalize(image)
        if max_bytes is not None or target_bpp is not None:
            return self._compress_to_fit(img, max_bytes, target_bpp)
        point = self.resolve(quality, width)
        return self._compress_point(img, point)

    def _compress_point(self, img: CanonicalImage, point: OperatingPoint) -> bytes:
        info = self.info if point.model in (self.name, f"{self.name}@{self.info.version}") else zoo.get(point.model)
        model = _model_for(info)
        w, h = img.size
        if w > container.MAX_SIDE or h > container.MAX_SIDE or w * h > container.MAX_PIXELS:
            raise SlimfastError(f"image {w}x{h} exceeds the format's limits ({container.MAX_SIDE} per side)")
        x = _to_input(pad_image(img.rgb, model.pad_multiple), model)
        if getattr(model, "bf16_analysis", False):  # built here, so that its errors are one line
            try:
                model.prepare_analysis(x.shape, point.width)
            except Exception as exc:
                raise SlimfastError(f"bf16 analysis unavailable for {info.name} v{info.version}: {exc}") from None
        with _inference(model):
            lat = model.compress(x, width=point.width)
        alpha = zlib.compress(img.alpha.tobytes(), 9) if img.alpha is not None else None
        hdr = container.Header(model=info.name, weights_version=info.version,
                               weights_id=bytes.fromhex(info.sha256[:16]) if info.sha256 else b"\0" * 8,
                               width=lat.width, image_size=(w, h), mode=img.mode,
                               streams=lat.strings, alpha=alpha, icc=img.icc)
        return container.pack(hdr)

    def decompress(self, data: bytes):
        """Like :func:`decompress`, also finding this codec's model if it is not installed."""
        return decompress(data, candidates=[self.info])

    def _compress_to_fit(self, img: CanonicalImage, max_bytes, target_bpp) -> bytes:
        limit = max_bytes if max_bytes is not None else int(target_bpp * img.size[0] * img.size[1] / 8)
        if limit <= 0:
            raise SlimfastError("the size limit must be positive")
        best = None
        for point in reversed(self.operating_points()):
            data = self._compress_point(img, point)
            best = data
            if len(data) <= limit:
                return data
        return best  # nothing fits: the smallest operating point


def max_decode_pixels() -> int:
    """Pixels one decode may produce (memory grows with it); ``SLIMFAST_MAX_PIXELS`` overrides."""
    try:
        return int(os.environ.get("SLIMFAST_MAX_PIXELS", DEFAULT_MAX_DECODE_PIXELS))
    except ValueError:
        return DEFAULT_MAX_DECODE_PIXELS


def decompress(data: bytes, candidates: list[zoo.ModelInfo] | None = None):
    """Decode ``.sfi`` bytes to a PIL image; the header names the model to use.

    ``candidates`` are models to try before the installed ones (used to measure a model that
    is not installed yet).
    """
    hdr = container.unpack(data)
    if hdr.pixels > max_decode_pixels():
        raise SlimfastError(f"image {hdr.image_size[0]}x{hdr.image_size[1]} is above this decoder's limit of "
                            f"{max_decode_pixels()} pixels (set SLIMFAST_MAX_PIXELS to raise it)")
    info = next((c for c in candidates or [] if c.name == hdr.model and c.version == hdr.weights_version
                 and c.sha256.startswith(hdr.weights_id.hex())), None)
    info = info or zoo.find_by_id(hdr.model, hdr.weights_version, hdr.weights_id)
    model = _model_for(info, for_decoding=True)
    try:
        model.check_width(hdr.width)
    except ValueError as exc:
        raise SlimfastError(f"corrupt .sfi header: {exc}") from None
    if getattr(model, "synthesis_precision", "fp32") != "fp32":  # built here, so its errors are not "corrupt file"
        try:
            model.prepare_synthesis(hdr.width)
        except Exception as exc:
            raise SlimfastError(f"{model.synthesis_precision} synthesis unavailable for {info.name} "
                                f"v{info.version}: {exc}") from None
    if len(hdr.streams) != model.num_strings:
        raise SlimfastError(f"corrupt .sfi file: {info.name} files have {model.num_strings} streams")
    w, h = hdr.image_size
    m = model.pad_multiple
    shape = (-(-h // m), -(-w // m))  # the deepest latent has stride pad_multiple
    try:
        with _inference(model):
            if hasattr(model, "decompress_rgb8"):  # the runtime: straight to bytes
                rgb = model.decompress_rgb8(hdr.streams, shape, width=hdr.width)
            else:
                rgb = to_rgb8(np.asarray(model.decompress(hdr.streams, shape, width=hdr.width)))  # in place
    except ValueError as exc:
        raise SlimfastError(f"corrupt .sfi file: {exc}") from None
    if rgb.shape[:2] != (h, w):
        rgb = np.ascontiguousarray(rgb[:h, :w])
    alpha = None
    if hdr.alpha is not None:
        try:
            raw = zlib.decompressobj().decompress(hdr.alpha, w * h + 1)
        except zlib.error:
            raise SlimfastError("corrupt .sfi file: bad alpha plane") from None
        if len(raw) != w * h:
            raise SlimfastError("corrupt .sfi file: alpha plane has the wrong size")
        alpha = np.frombuffer(raw, dtype=np.uint8).reshape(h, w)
    elif hdr.mode in ("RGBA", "LA"):
        raise SlimfastError("corrupt .sfi file: alpha plane missing")
    return to_pil(rgb, hdr.mode, alpha, hdr.icc)


def load(name: str | None = None) -> Codec:
    """A :class:`Codec` for a named model (``None``: the default model)."""
    return Codec(zoo.get(name))
