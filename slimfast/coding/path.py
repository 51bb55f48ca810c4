"""The one coding path: an engine's float transforms joined to a latent codec.

::

    encode: x -> engine.analyze -> {y, z} -> codec.quantize -> symbols -> codec.encode -> strings
    decode: strings -> codec.decode -> symbols -> codec.dequantize -> y_hat -> engine.synthesize -> x_hat

Every engine (ONNX Runtime fp32/int8, OpenVINO bf16, torch) goes through this class, so the
bitstream contract is written once: what differs between engines is float arithmetic in the
transforms, never the symbols a file decodes to.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..archs.shapes import check_width
from .intmath import STEP_ONE
from .latent_codecs import DEFAULT_CODER


@dataclass
class Latents:
    """Entropy-coded strings plus what decoding them needs: ``shape`` is the deepest latent's
    spatial size (h, w), ``width`` the latent channel count coded (the operating point),
    ``step`` the quantization step of the quality knob, ``coder`` the entropy coder of the strings
    (:data:`slimfast.coding.latent_codecs.CODERS`)."""

    strings: list[bytes]
    shape: tuple[int, int]
    width: int
    step: int = STEP_ONE  # the quantization step, in 1/STEP_ONE (hyperprior models)
    coder: str = DEFAULT_CODER


class CodingPath:
    """``engine`` runs the transforms of ``arch`` (a :class:`slimfast.engines.specs.Specs`: the
    architecture's description over its numpy weights), which also builds the latent codecs."""

    def __init__(self, engine, arch, architecture: str):
        self.engine = engine
        self.arch = arch
        self.architecture = architecture
        self.pad_multiple = arch.pad_multiple
        self.widths = arch.widths
        self.latent_channels = arch.latent_channels
        self.hyper = arch.hyper
        self.shape_key = "z" if self.hyper else "y"
        self.num_strings = 2 if self.hyper else 1
        self._codecs: dict = {}

    def __repr__(self) -> str:
        return f"<CodingPath {self.architecture} on {self.engine!r}>"

    def __getattr__(self, name):  # engine settings (threads, precisions, sessions) read through
        if name.startswith("_") or name == "engine":
            raise AttributeError(name)
        return getattr(self.engine, name)

    # -- widths -----------------------------------------------------------------------------------
    @property
    def default_width(self) -> int:
        return self.widths[0] if self.widths else self.latent_channels

    def check_width(self, width: int | None) -> int:
        return check_width(self.architecture, self.widths, self.latent_channels, width)

    def codec(self, width: int | None = None, step: int = STEP_ONE):
        """The latent codec at ``width`` and quantization step ``step / STEP_ONE`` (built once
        from the weights' frozen tables)."""
        c = self.check_width(width)
        if step != STEP_ONE:
            if not self.hyper:
                raise ValueError(f"{self.architecture} has no hyperprior: its quantization step is fixed")
            if (c, step) not in self._codecs:
                self._codecs[c, step] = self.codec(c).with_step(step)
            return self._codecs[c, step]
        if c not in self._codecs:
            codec = self.arch.latent_codec(c)
            if hasattr(codec, "workers"):  # the engine's thread count (0: its default, all cores)
                threads = int(getattr(self.engine, "threads", 1) or 2)
                codec.workers = min(2, threads)
            self._codecs[c] = codec
        return self._codecs[c]

    # -- coding, stage by stage -----------------------------------------------------------------
    def analyze(self, x: np.ndarray, width: int | None = None) -> dict[str, np.ndarray]:
        return self.engine.analyze(np.asarray(x, dtype=np.float32), self.check_width(width))

    def encode_symbols(self, x: np.ndarray, width: int | None = None, step: int = STEP_ONE) -> dict[str, np.ndarray]:
        c = self.check_width(width)
        return self.codec(c, step).quantize(self.analyze(x, c))

    def encode_strings(self, symbols: dict, width: int | None = None, step: int = STEP_ONE,
                       coder: str = DEFAULT_CODER) -> list[bytes]:
        return self.codec(width, step).encode(symbols, coder)

    def decode_symbols(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None,
                       step: int = STEP_ONE, coder: str = DEFAULT_CODER) -> dict:
        if len(strings) != self.num_strings:
            raise ValueError(f"{self.architecture} expects {self.num_strings} string(s)")
        return self.codec(width, step).decode(strings, tuple(shape), coder)

    def dequantize(self, symbols: dict, width: int | None = None, step: int = STEP_ONE) -> np.ndarray:
        """``y_hat`` (float32), the synthesis input."""
        return self.codec(width, step).dequantize(symbols)

    def entropy_parameters(self, z_symbols: np.ndarray, width: int | None = None, step: int = STEP_ONE):
        """Exact (means, scale indices) for y from z's symbols (hyperprior models)."""
        if not self.hyper:
            raise ValueError(f"{self.architecture} has no hyperprior")
        return self.codec(width, step).entropy_parameters(z_symbols)

    def synthesize(self, symbols: dict, width: int | None = None, step: int = STEP_ONE) -> np.ndarray:
        """Reconstruction ``[1, 3, H, W]`` float32, not clamped."""
        c = self.check_width(width)
        return self.engine.synthesize(self.dequantize(symbols, c, step), c)

    def estimate_bits(self, symbols: dict, width: int | None = None, step: int = STEP_ONE) -> float:
        return self.codec(width, step).estimate_bits(symbols)

    def prepare_analysis(self, shape: tuple[int, ...], width: int | None = None) -> None:
        self.engine.prepare_analysis(shape, self.check_width(width))

    def prepare_synthesis(self, width: int | None = None) -> None:
        self.engine.prepare_synthesis(self.check_width(width))

    # -- whole images ---------------------------------------------------------------------------
    def compress(self, x: np.ndarray, width: int | None = None, step: int = STEP_ONE,
                 coder: str = DEFAULT_CODER) -> Latents:
        """Code one image ``[1, 3, H, W]`` in [0, 1], H and W multiples of ``pad_multiple``."""
        c = self.check_width(width)
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[2] % self.pad_multiple or x.shape[3] % self.pad_multiple:
            raise ValueError("compress expects one image padded to a multiple of pad_multiple")
        self.codec(c, step).forget()
        symbols = self.encode_symbols(x, c, step)
        strings = self.encode_strings(symbols, c, step, coder)
        return Latents(strings, tuple(symbols[self.shape_key].shape[2:]), c, step, coder)

    def decompress(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None,
                   step: int = STEP_ONE, coder: str = DEFAULT_CODER) -> np.ndarray:
        """Reconstruction ``[1, 3, H, W]`` float32 clamped to [0, 1]."""
        c = self.check_width(width)
        self.codec(c, step).forget()
        x = self.synthesize(self.decode_symbols(strings, shape, c, step, coder), c, step)
        return np.clip(x, 0.0, 1.0, out=x)

    def decompress_rgb8(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None,
                        step: int = STEP_ONE, coder: str = DEFAULT_CODER) -> np.ndarray:
        """Reconstruction as ``[H, W, 3]`` uint8 at the padded size (x 255, rounded half to even)."""
        c = self.check_width(width)
        self.codec(c, step).forget()
        y_hat = self.dequantize(self.decode_symbols(strings, shape, c, step, coder), c, step)
        return self.engine.synthesize_rgb8(y_hat, c)
