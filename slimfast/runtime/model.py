""":class:`RuntimeModel`: a weights file run through ONNX Runtime, entropy coding in numpy.

Mirrors :class:`slimfast.models.base.CompressionModel`'s coding API on numpy arrays:
``encode_symbols``, ``encode_strings``, ``decode_symbols``, ``synthesize``, ``compress``,
``decompress``, ``estimate_bits``. Bitstreams are interchangeable with the torch models':

* symbols are coded with the frozen integer tables of the weights file through
  :mod:`slimfast.coder`, exactly as the torch path does;
* FasiNet-H's means and scale indices come from the integer hyper-synthesis
  (:func:`slimfast.runtime.hyper.entropy_parameters`), bit-identical to torch's;
* only the float transforms (g_a, h_a, IQR + g_s) run in ORT, so a file's *decoded symbols*
  never depend on the backend, and reconstructions differ from torch's by float rounding only.

Neither torch nor :mod:`slimfast.models` is imported.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from .. import coder, intmath, tiling
from ..imageio import to_rgb8
from ..shapes import check_width
from . import onnxgraph, weights
from .archs import ARCHS
from .hyper import entropy_parameters


@dataclass
class Latents:
    """Same fields and meaning as :class:`slimfast.models.base.Latents` (kept torch-free here)."""

    strings: list[bytes]
    shape: tuple[int, int]
    width: int


_OPT_LEVELS = ("disable", "basic", "extended", "all")


GRAPH_CACHE_FILES = 64  # least recently used graphs beyond this are removed


def graph_cache_dir() -> Path | None:
    """Where built ONNX graphs are kept between processes: ``SLIMFAST_CACHE_DIR`` (empty or
    ``off``: no cache), else ``$XDG_CACHE_HOME/slimfast/graphs`` (``~/.cache/slimfast/graphs``)."""
    env = os.environ.get("SLIMFAST_CACHE_DIR")
    if env is not None:
        return None if env.strip().lower() in ("", "off", "0", "none") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "slimfast" / "graphs"


@lru_cache(maxsize=1)
def _graph_source_digest() -> str:
    """Hash of the code that builds graphs: a cached graph never outlives a change to it."""
    here = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for f in (*(here / n for n in ("onnxgraph.py", "archs.py", "quantize.py", "weights.py", "model.py", "hyper.py")),
              *(here.parent / n for n in ("storage.py", "shapes.py"))):
        h.update(f.read_bytes())
    return h.hexdigest()


@lru_cache(maxsize=1)
def _library_versions() -> tuple[str, ...]:
    """onnx and onnxruntime versions: the int8 graph is their quantizer's output."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("onnx", "onnxruntime"):
        try:
            out.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            out.append(f"{dist} ?")
    return tuple(out)


def _default_threads() -> int:
    try:
        return max(int(os.environ.get("SLIMFAST_THREADS", "0")), 0)
    except ValueError:
        return 0


class RuntimeModel:
    """A weights file ready to code with ONNX Runtime (see the module docstring).

    ``threads``: ORT intra-op threads (0: ORT's default, one per physical core; the
    environment variable ``SLIMFAST_THREADS`` sets the default). ``tconv``: ``"convtranspose"``
    or ``"subpixel"`` (stride-s transposed convolutions as Conv + DepthToSpace); ``None``, the
    default, takes the architecture's faster form (sub-pixel for FasiNet-L's 7x7 kernels,
    ConvTranspose for FasiNet-H's 5x5, whose phases are sparse).
    ``optimization``: ORT graph optimization level, one of ``disable``, ``basic``,
    ``extended``, ``all`` (``all``, the default, adds ORT's blocked NCHWc layout: 10-15% faster).
    ``spinning``: let idle ORT worker threads spin; off by default, since spinning workers
    took the speed-up of a second thread away on a 2-core machine.
    Left unset, ``tconv``, ``optimization`` and ``spinning`` follow ``SLIMFAST_ORT_TCONV``,
    ``SLIMFAST_ORT_OPT`` and ``SLIMFAST_ORT_SPIN=1`` (what ``slimfast bench`` compares).
    ``int8_ranges``: run the synthesis with int8 convolutions (:mod:`slimfast.runtime.quantize`)
    using these stored activation ranges, ``{str(width): {tensor: [min, max]}}`` (a model card's
    ``int8_synthesis.ranges``); ``None`` keeps it float32. ``bf16_synthesis``: run the synthesis
    in bfloat16 on OpenVINO (:mod:`slimfast.runtime.ov_backend`; needs the ``openvino`` package
    and a CPU with native bf16). Symbols decode identically in every case. ``bf16_analysis``: run
    the analysis (g_a, h_a) in bfloat16 on OpenVINO the same way; the latents it rounds, hence
    the file, differ slightly from fp32's.
    """

    def __init__(self, path: str | Path, threads: int | None = None, tconv: str | None = None,
                 optimization: str | None = None, spinning: bool | None = None, int8_ranges: dict | None = None,
                 bf16_synthesis: bool = False, bf16_analysis: bool = False):
        if int8_ranges and bf16_synthesis:
            raise ValueError("int8 and bf16 synthesis exclude each other")
        tconv = tconv or os.environ.get("SLIMFAST_ORT_TCONV") or None
        if tconv not in (None, "convtranspose", "subpixel"):
            raise ValueError(f"tconv must be 'convtranspose' or 'subpixel', not {tconv!r}")
        optimization = optimization or os.environ.get("SLIMFAST_ORT_OPT") or "all"
        if spinning is None:
            spinning = os.environ.get("SLIMFAST_ORT_SPIN", "0") == "1"
        meta, state, digest = weights.load_with_digest(path)
        arch = meta["architecture"]
        if arch not in ARCHS:
            raise ValueError(f"the runtime backend does not support {arch!r}; supported: {', '.join(sorted(ARCHS))}")
        if optimization not in _OPT_LEVELS:
            raise ValueError(f"optimization must be one of {', '.join(_OPT_LEVELS)}")
        self.path = Path(path)
        self.architecture = arch
        self.config = meta["config"]
        self.metadata = meta
        self._arch = ARCHS[arch](self.config, state)
        self._state = state
        self.pad_multiple = self._arch.pad_multiple
        self.widths = self._arch.widths
        self.latent_channels = self._arch.latent_channels
        self.hyper = self._arch.hyper
        self.shape_key = "z" if self.hyper else "y"
        self.num_strings = 2 if self.hyper else 1
        self.threads = _default_threads() if threads is None else int(threads)
        self.tconv = tconv  # None: the architecture's faster form at each width (tconv_for)
        self.optimization = optimization
        self.spinning = bool(spinning)
        self.int8_ranges = int8_ranges
        self.bf16_synthesis = bool(bf16_synthesis)
        self.bf16_analysis = bool(bf16_analysis)
        self.analysis_precision = "bf16" if bf16_analysis else "fp32"
        self.synthesis_precision = "int8" if int8_ranges else "bf16" if bf16_synthesis else "fp32"
        self._sessions: dict = {}
        self._phases: dict[int, int] = {}
        self._weights_digest = digest  # of the bytes loaded: the graph cache key
        self._ep_cache = None

    def __repr__(self) -> str:
        return f"<RuntimeModel {self.architecture} {self.path.name} threads={self.threads}>"

    # -- widths (CompressionModel semantics) -------------------------------------------------------
    @property
    def default_width(self) -> int:
        return self.widths[0] if self.widths else self.latent_channels

    def check_width(self, width: int | None) -> int:
        return check_width(self.architecture, self.widths, self.latent_channels, width)

    def tconv_for(self, width: int | None = None) -> str:
        """The form of the transposed convolutions in the graphs at ``width``."""
        return self.tconv or self._arch.tconv_for(self.check_width(width))

    # -- ORT sessions ---------------------------------------------------------------------------
    def onnx_model(self, part: str, width: int | None = None, tconv: str | None = None):
        """The float ONNX ``ModelProto`` of ``part`` at ``width``: ``"encoder"``, ``"analysis"``,
        ``"hyper_analysis"``, ``"decoder"``, or ``"decoder_phases"`` (the decoder without its last
        ``DepthToSpace``, where the last layer is sub-pixel); ``tconv`` overrides :meth:`tconv_for`."""
        c = self.check_width(width)
        a = self._arch
        tconv = tconv or self.tconv_for(c)
        if part == "analysis":  # y only, for tiles
            return onnxgraph.build_model({"x": 3}, {"y": c}, lambda b, ins: {"y": b.sequence(ins["x"], a.analysis(c))},
                                         tconv)
        if part == "hyper_analysis":
            return onnxgraph.build_model({"y": c}, {"z": c}, lambda b, ins: {"z": b.sequence(ins["y"], a.hyper_analysis(c))},
                                         tconv)
        if part == "encoder":
            outputs = {"y": c, "z": c} if self.hyper else {"y": c}

            def body(b, ins):
                y = b.sequence(ins["x"], a.analysis(c))
                return {"y": y, "z": b.sequence(y, a.hyper_analysis(c))} if self.hyper else {"y": y}

            return onnxgraph.build_model({"x": 3}, outputs, body, tconv)
        if part == "decoder":
            return onnxgraph.build_model({"y_hat": c}, {"x_hat": 3},
                                         lambda b, ins: {"x_hat": b.sequence(ins["y_hat"], a.synthesis(c))}, tconv)
        if part == "decoder_phases":  # the last layer's sub-pixel phases, not yet interleaved
            *body, last = a.synthesis(c)
            s = self._output_phases(c)
            if not s:
                raise ValueError("decoder_phases needs a sub-pixel final layer")
            return onnxgraph.build_model(
                {"y_hat": c}, {"x_phases": 3 * s * s},
                lambda b, ins: {"x_phases": b.tconv_phases(b.sequence(ins["y_hat"], body), *last[1:])}, tconv)
        raise ValueError("part must be 'encoder', 'analysis', 'hyper_analysis', 'decoder' or 'decoder_phases'")

    def _output_phases(self, c: int) -> int:
        """The stride ``s`` of a float synthesis whose last layer runs in sub-pixel form (its
        phases can go straight to bytes), else 0."""
        if c not in self._phases:
            last = self._arch.synthesis(c)[-1]
            square = last[0] == "tconv" and last[3][0] == last[3][1] >= 2
            self._phases[c] = int(last[3][0]) if square and not self.int8_ranges and self.tconv_for(c) == "subpixel" else 0
        return self._phases[c]

    def session(self, part: str, width: int | None = None):
        c = self.check_width(width)
        key = (part, c)
        sess = self._sessions.get(key)
        if sess is None and ((self.bf16_synthesis and part in ("decoder", "decoder_phases"))
                             or (self.bf16_analysis and part in ("encoder", "analysis", "hyper_analysis"))):
            sess = self._sessions[key] = self._openvino_session(part, c)
        if sess is None:
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = self.threads
            so.inter_op_num_threads = 1
            so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            so.graph_optimization_level = {
                "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}[self.optimization]
            so.log_severity_level = 3
            so.enable_cpu_mem_arena = os.environ.get("SLIMFAST_ORT_ARENA", "0") == "1"
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
            sess = self._cached_session(part, c, so)
            self._sessions[key] = sess
        return sess

    def _cache_file(self, part: str, c: int) -> Path | None:
        root = graph_cache_dir()
        if root is None:
            return None
        int8 = part == "decoder" and bool(self.int8_ranges)
        key = json.dumps([_graph_source_digest(), _library_versions(), onnxgraph.OPSET, self._weights_digest, part, c,
                          "subpixel" if int8 else self.tconv_for(c),
                          self.int8_ranges.get(str(c)) if int8 else None], sort_keys=True)
        return root / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.onnx"

    def _cached_session(self, part: str, c: int, so):
        """An ORT session for ``part``, from the graph cache when it holds this exact graph.

        A cached graph is the serialized bytes a fresh build produces (the key covers the
        weights, the part, width and form, the int8 ranges and the graph-building code), so a
        session from it computes exactly what a rebuilt one does; it saves importing onnx,
        building the graph and, for int8, quantizing it. A cache that cannot be read or
        written is ignored.
        """
        import onnxruntime as ort

        path = self._cache_file(part, c)
        if path is not None and path.is_file():
            try:
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            except Exception:  # a truncated or foreign file: rebuild it
                sess = None
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            if sess is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)  # least-recently-used order for pruning
                return sess
        return ort.InferenceSession(self._build_graph(part, c, path), so, providers=["CPUExecutionProvider"])

    def _build_graph(self, part: str, c: int, path: Path | None) -> bytes:
        """The serialized graph of ``part``, stored in the graph cache at ``path`` when one is given."""
        data = self._graph(part, c).SerializeToString()
        if path is not None:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
                tmp.write_bytes(data)
                os.replace(tmp, path)
                _prune(path.parent)
            except OSError:
                pass
        return data

    def _openvino_session(self, part: str, c: int):
        """The float graph of ``part`` (the graph cache's, or a fresh build) compiled by OpenVINO."""
        from .ov_backend import OpenVINOSession

        names = {"encoder": ["y", "z"] if self.hyper else ["y"], "analysis": ["y"], "hyper_analysis": ["z"],
                 "decoder": ["x_hat"], "decoder_phases": ["x_phases"]}[part]
        path = self._cache_file(part, c)
        if path is not None and path.is_file():
            try:
                sess = OpenVINOSession(path.read_bytes(), names, self.threads)
            except (OSError, RuntimeError):  # a truncated or foreign file: rebuild it
                sess = None
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            if sess is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)
                return sess
        return OpenVINOSession(self._build_graph(part, c, path), names, self.threads)

    def _graph(self, part: str, c: int):
        if part != "decoder" or not self.int8_ranges:
            return self.onnx_model(part, c)
        from .quantize import int8_decoder

        ranges = self.int8_ranges.get(str(c))
        if ranges is None:
            raise ValueError(f"no int8 synthesis ranges for width {c}")
        return int8_decoder(self.onnx_model("decoder", c, tconv="subpixel"), ranges)

    # -- entropy models (numpy) -----------------------------------------------------------------
    def _eb(self, c: int):
        p = self._arch.eb_prefix(c)
        s = self._state
        freqs = s[p + "freqs"]
        if freqs.size == 0:
            raise RuntimeError(f"{self.architecture}: weights saved before update(): no coding tables")
        return s[p + "_medians"].astype(np.float32), freqs, s[p + "lengths"], s[p + "offsets"]

    def _cond(self):
        s = self._state
        if s["conditional.freqs"].size == 0:
            raise RuntimeError(f"{self.architecture}: weights saved before update(): no coding tables")
        return s["conditional.freqs"], s["conditional.lengths"], s["conditional.offsets"]

    @staticmethod
    def _channel_index(shape) -> np.ndarray:
        b, c, h, w = shape
        return np.broadcast_to(np.arange(c, dtype=np.int64).reshape(1, c, 1, 1), (b, c, h, w))

    @staticmethod
    def _check_channels(symbols: np.ndarray, c: int) -> None:
        if symbols.ndim != 4 or symbols.shape[0] != 1 or symbols.shape[1] != c:
            raise ValueError(f"expected symbols of shape [1, {c}, h, w], got {tuple(symbols.shape)}")

    def entropy_parameters(self, z_symbols: np.ndarray, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exact (means, scale indices) for y from z's symbols (hyperprior models); cached once."""
        c = self.check_width(width)
        self._check_channels(z_symbols, c)
        key = (c, z_symbols.shape, z_symbols.tobytes())
        if self._ep_cache is not None and self._ep_cache[0] == key:
            return self._ep_cache[1]
        med = self._eb(c)[0]
        scale_branch, mean_branch = self._arch.hs_branches(c)
        result = entropy_parameters(z_symbols, med, scale_branch, mean_branch, self._state["conditional.scale_table"])
        self._ep_cache = (key, result)
        return result

    # -- coding API -----------------------------------------------------------------------------
    def analyze(self, x: np.ndarray, width: int | None = None) -> dict[str, np.ndarray]:
        """Float latents: ``{"y"}`` (and ``{"z"}`` for a hyperprior model) of ``x`` ``[1, 3, H, W]``."""
        c = self.check_width(width)
        x = np.asarray(x, dtype=np.float32)
        if self._analysis_parts(x.shape) == ["encoder"]:  # one graph, one call
            sess = self.session("encoder", c)
            outs = sess.run(None, {"x": np.ascontiguousarray(x)})
            return dict(zip((o.name for o in sess.get_outputs()), outs))
        sess = self.session("analysis", c)
        y = tiling.tiled(lambda t: sess.run(None, {"x": np.ascontiguousarray(t)})[0], x, down=tiling.STRIDE,
                         tile=tiling.ANALYSIS_TILE, halo=tiling.ANALYSIS_HALO)
        if not self.hyper:
            return {"y": y}
        return {"y": y, "z": self.session("hyper_analysis", c).run(None, {"y": y})[0]}

    def encode_symbols(self, x: np.ndarray, width: int | None = None) -> dict[str, np.ndarray]:
        c = self.check_width(width)
        lat = self.analyze(x, c)
        med = self._eb(c)[0]
        if not self.hyper:
            return {"y": np.rint(lat["y"] - med[:c].reshape(1, c, 1, 1)).astype(np.int32)}
        z_sym = np.rint(lat["z"] - med[:c].reshape(1, c, 1, 1)).astype(np.int32)
        means, _ = self.entropy_parameters(z_sym, c)
        y_sym = intmath.round_residual(lat["y"], means)
        return {"z": z_sym, "y": y_sym}

    def encode_strings(self, symbols: dict[str, np.ndarray], width: int | None = None) -> list[bytes]:
        c = self.check_width(width)
        _, freqs, lengths, offsets = self._eb(c)
        if not self.hyper:
            y = symbols["y"]
            self._check_channels(y, c)
            return [coder.encode(y, self._channel_index(y.shape), freqs, lengths, offsets)]
        z, y = symbols["z"], symbols["y"]
        self._check_channels(y, c)
        _, index = self.entropy_parameters(z, c)
        return [coder.encode(z, self._channel_index(z.shape), freqs, lengths, offsets),
                coder.encode(y, index, *self._cond())]

    def decode_symbols(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> dict[str, np.ndarray]:
        c = self.check_width(width)
        if len(strings) != self.num_strings:
            raise ValueError(f"{self.architecture} expects {self.num_strings} string(s)")
        _, freqs, lengths, offsets = self._eb(c)
        first = coder.decode(strings[0], self._channel_index((1, c, *shape)), freqs, lengths, offsets)
        if not self.hyper:
            return {"y": first}
        _, index = self.entropy_parameters(first, c)
        return {"z": first, "y": coder.decode(strings[1], index, *self._cond())}

    def dequantize(self, symbols: dict[str, np.ndarray], width: int | None = None) -> np.ndarray:
        """``y_hat`` (float32) exactly as the torch models compute it."""
        c = self.check_width(width)
        y = symbols["y"]
        self._check_channels(y, c)
        if not self.hyper:
            return y.astype(np.float32) + self._eb(c)[0][:c].reshape(1, c, 1, 1)
        means, _ = self.entropy_parameters(symbols["z"], c)
        return (y + means).astype(np.float32)

    def synthesize(self, symbols: dict[str, np.ndarray], width: int | None = None) -> np.ndarray:
        """Reconstruction ``[1, 3, H, W]`` float32 (not clamped), like ``CompressionModel.synthesize``."""
        c = self.check_width(width)
        return self._run_synthesis("decoder", self.dequantize(symbols, c), c, tiling.STRIDE)

    def _run_synthesis(self, part: str, y_hat: np.ndarray, c: int, up: int) -> np.ndarray:
        """A decoder graph over ``y_hat`` in tiles; its output has ``up`` x the latent's side."""
        sess = self.session(part, c)
        return tiling.tiled(lambda t: sess.run(None, {"y_hat": np.ascontiguousarray(t)})[0], y_hat,
                            up=up, tile=tiling.SYNTHESIS_TILE, halo=tiling.SYNTHESIS_HALO)

    def _analysis_parts(self, shape: tuple[int, ...]) -> list[str]:
        """The graphs :meth:`analyze` runs for an input of ``shape``: one, or tiles then h_a."""
        if max(shape[-2:]) <= tiling.ANALYSIS_TILE:
            return ["encoder"]
        return ["analysis", "hyper_analysis"] if self.hyper else ["analysis"]

    def prepare_analysis(self, shape: tuple[int, ...], width: int | None = None) -> None:
        """Build the analysis graphs :meth:`compress` runs for an input of ``shape`` now (a bf16
        one can fail to build: the caller reports that before coding anything)."""
        c = self.check_width(width)
        for part in self._analysis_parts(shape):
            self.session(part, c)

    def prepare_synthesis(self, width: int | None = None) -> None:
        """Build the synthesis graph :meth:`decompress_rgb8` runs at ``width`` now (an int8 or bf16
        one can fail to build: the caller reports that before decoding anything)."""
        c = self.check_width(width)
        self.session("decoder_phases" if self._output_phases(c) else "decoder", c)

    def decompress_rgb8(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> np.ndarray:
        """Reconstruction as ``[H, W, 3]`` uint8 (the padded size): the pixels of
        :meth:`decompress` x 255, rounded half to even.

        Where the last layer runs in sub-pixel form, its phases are interleaved by the same
        pass that makes the bytes, instead of a ``DepthToSpace`` over the float image first:
        the same values, one pass less over the largest tensor of the decoder.
        """
        c = self.check_width(width)
        self._ep_cache = None  # see decompress
        symbols = self.decode_symbols(strings, shape, c)
        s = self._output_phases(c)
        if not s:
            return to_rgb8(self.synthesize(symbols, c), 1)
        return to_rgb8(self._run_synthesis("decoder_phases", self.dequantize(symbols, c), c, tiling.STRIDE // s), s)

    def estimate_bits(self, symbols: dict[str, np.ndarray], width: int | None = None) -> float:
        c = self.check_width(width)
        _, freqs, lengths, offsets = self._eb(c)
        if not self.hyper:
            return coder.estimate_bits(symbols["y"], self._channel_index(symbols["y"].shape), freqs, lengths, offsets)
        _, index = self.entropy_parameters(symbols["z"], c)
        return (coder.estimate_bits(symbols["z"], self._channel_index(symbols["z"].shape), freqs, lengths, offsets)
                + coder.estimate_bits(symbols["y"], index, *self._cond()))

    def compress(self, x: np.ndarray, width: int | None = None) -> Latents:
        """Code one image ``[1, 3, H, W]`` in [0, 1], H and W multiples of ``pad_multiple``."""
        width = self.check_width(width)
        x = np.asarray(x, dtype=np.float32)
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[2] % self.pad_multiple or x.shape[3] % self.pad_multiple:
            raise ValueError("compress expects one image padded to a multiple of pad_multiple")
        self._ep_cache = None  # see decompress
        symbols = self.encode_symbols(x, width)
        return Latents(self.encode_strings(symbols, width), tuple(symbols[self.shape_key].shape[2:]), width)

    def decompress(self, strings: list[bytes], shape: tuple[int, int], width: int | None = None) -> np.ndarray:
        """Reconstruction ``[1, 3, H, W]`` float32 clamped to [0, 1]."""
        width = self.check_width(width)
        # The last entropy parameters are remembered within one call (decoding needs them twice);
        # across calls a repeated file would skip the hyper-synthesis, and timings of repeated
        # decodes (slimfast bench) would leave out its cost.
        self._ep_cache = None
        x = self.synthesize(self.decode_symbols(strings, shape, width), width)
        return np.clip(x, 0.0, 1.0, out=x)


def _prune(root: Path, keep: int = GRAPH_CACHE_FILES) -> None:
    import time

    files = sorted(root.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in root.glob("*.tmp") if p.stat().st_mtime < time.time() - 3600]  # failed writes
    for old in files[keep:] + stale:
        old.unlink(missing_ok=True)
