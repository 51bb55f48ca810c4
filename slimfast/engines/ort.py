"""The ONNX Runtime engine: an architecture's float transforms as ONNX graphs, run by ONNX
Runtime (fp32, or int8 synthesis) or OpenVINO (bf16), without torch.

The graphs are built from the architecture's description over the weights
(:mod:`slimfast.engines.specs`, :mod:`slimfast.engines.onnxgraph`) and cached on disk. Like
every engine it runs only the transforms (g_a, h_a, IQR + g_s); quantization and entropy
coding are the latent codec's (:mod:`slimfast.coding`), so its files are every other engine's
symbol for symbol and its reconstructions differ from torch's by float rounding only.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..archs.grammar import TConv
from ..coding import tiling
from ..format.imageio import to_rgb8
from . import onnxgraph
from .openvino import PRECISIONS as OV_PRECISIONS

_OPT_LEVELS = ("disable", "basic", "extended", "all")


GRAPH_CACHE_FILES = 64  # least recently used graphs beyond this are removed


@lru_cache(maxsize=1)
def _library_versions() -> tuple[str, ...]:
    """onnx and onnxruntime versions: the int8 graph is their quantizer's output. Read without
    importlib.metadata (about 10 ms of a cold start) where the installation allows."""
    import onnxruntime

    return f"onnx {_dist_version('onnx')}", f"onnxruntime {onnxruntime.__version__}"


def _dist_version(name: str) -> str:
    """A distribution's version from its ``NAME-VERSION.dist-info`` folder beside the package."""
    import importlib.util

    spec = importlib.util.find_spec(name)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found = sorted(Path(folder).parent.glob(f"{name}-*.dist-info"))
        if found:
            return found[-1].name[len(name) + 1: -len(".dist-info")]
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def _check_options(tconv: str | None, optimization: str, ov_precision: str, int8_and_bf16: bool) -> None:
    if int8_and_bf16:
        raise ValueError("int8 and bf16 synthesis exclude each other")
    if tconv not in (None, "convtranspose", "subpixel"):
        raise ValueError(f"tconv must be 'convtranspose' or 'subpixel', not {tconv!r}")
    if optimization not in _OPT_LEVELS:
        raise ValueError(f"optimization must be one of {', '.join(_OPT_LEVELS)}")
    if ov_precision not in OV_PRECISIONS:
        raise ValueError(f"ov_precision must be one of {', '.join(OV_PRECISIONS)}, not {ov_precision!r}")


@lru_cache(maxsize=1)
def worker_affinities(threads: int) -> str | None:
    """ONNX Runtime's ``intra_op_thread_affinities`` for ``threads`` threads: worker ``i`` (the
    caller's thread is the first of the ``threads``) on the ``i``-th CPU this process may use,
    1-based as ORT counts them. None where there is nothing to pin or too few CPUs (or no
    ``sched_getaffinity``)."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None
    if threads < 2 or threads > len(cpus):
        return None
    return ";".join(str(cpus[i] + 1) for i in range(1, threads))


def _graph_source_digest() -> str:
    """Hash of the code that builds graphs (and the descriptions they read): a cached graph
    never outlives a change to it."""
    pkg = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    files = [*(here / n for n in ("ort.py", "onnxgraph.py", "specs.py", "quantize.py")),
             pkg / "format" / "weightfile.py", pkg / "format" / "storage.py", *sorted((pkg / "archs").glob("*.py"))]
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()


class OrtEngine:
    """The float transforms of ``specs`` (:class:`slimfast.engines.specs.Specs`) on ONNX Runtime.

    ``threads``: ORT intra-op threads (0: ORT's default, one per physical core). ``tconv``:
    ``"convtranspose"`` or ``"subpixel"`` (stride-s transposed convolutions as Conv +
    DepthToSpace); ``None`` takes the architecture's faster form. ``optimization``: ORT's graph
    optimization level (``all`` adds the blocked NCHWc layout: 10-15% faster). ``spinning``: idle
    workers spin (off: spinning took the second thread's speed-up away on a 2-core machine).
    ``int8_ranges``: int8 synthesis with these stored activation ranges
    (:mod:`slimfast.engines.quantize`; a model card's ``int8_synthesis.ranges``).
    ``bf16_synthesis`` / ``bf16_analysis``: those graphs in bfloat16 on OpenVINO
    (:mod:`slimfast.engines.openvino`), ``ov_precision`` ``"f32"`` to time the engine alone.
    ``arena``: ORT's memory arena (off: it kept hundreds of MB after a large image at no
    measurable gain). ``affinity``: pin each intra-op worker thread to its own CPU (the caller's
    thread stays free), as ONNX Runtime does itself for its default thread count; unpinned, a
    worker woken for the next run could share a CPU with the caller for a while. ``cache_dir``:
    the graph cache (``None``: build every graph afresh). ``digest`` names the weights in the
    cache key.
    """

    def __init__(self, specs, digest: str, threads: int = 0, tconv: str | None = None, optimization: str = "all",
                 spinning: bool = False, int8_ranges: dict | None = None, bf16_synthesis: bool = False,
                 bf16_analysis: bool = False, arena: bool = False, cache_dir: str | Path | None = None,
                 ov_precision: str = "bf16", affinity: bool = False):
        _check_options(tconv, optimization, ov_precision, bool(int8_ranges and bf16_synthesis))
        self.specs = specs
        self.hyper = specs.hyper
        self.threads = int(threads or 0)
        self.tconv, self.optimization, self.spinning, self.arena = tconv, optimization, bool(spinning), bool(arena)
        self.affinity = bool(affinity)
        self.cache_dir = None if cache_dir is None else Path(cache_dir)
        self.ov_precision = ov_precision
        self.int8_ranges = int8_ranges
        self.bf16_synthesis, self.bf16_analysis = bool(bf16_synthesis), bool(bf16_analysis)
        self.analysis_precision = "bf16" if bf16_analysis else "fp32"
        self.synthesis_precision = "int8" if int8_ranges else "bf16" if bf16_synthesis else "fp32"
        self._sessions: dict = {}
        self._phases: dict[int, int] = {}
        self._weights_digest = digest

    def __repr__(self) -> str:
        return f"<OrtEngine threads={self.threads}>"

    def check_width(self, width: int | None) -> int:
        return self.specs.arch.check_width(width)

    def tconv_for(self, width: int | None = None) -> str:
        """The form of the transposed convolutions in the graphs at ``width``."""
        return self.tconv or self.specs.tconv_for(self.check_width(width))


    # -- the engine contract ----------------------------------------------------------------------
    def analyze(self, x: np.ndarray, c: int) -> dict[str, np.ndarray]:
        """Float latents: ``{"y"}`` (and ``{"z"}`` for a hyperprior model) of ``x`` ``[1, 3, H, W]``."""
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

    def synthesize(self, y_hat: np.ndarray, c: int) -> np.ndarray:
        """Reconstruction ``[1, 3, H, W]`` float32, not clamped."""
        return self._run_synthesis("decoder", y_hat, c, tiling.STRIDE)

    def synthesize_rgb8(self, y_hat: np.ndarray, c: int) -> np.ndarray:
        """``[H, W, 3]`` uint8. Where the last layer runs in sub-pixel form, its phases are
        interleaved by the same pass that makes the bytes instead of a ``DepthToSpace`` over the
        float image first: the same values, one pass less over the decoder's largest tensor."""
        s = self._output_phases(c)
        if not s:
            return to_rgb8(self.synthesize(y_hat, c), 1)
        return to_rgb8(self._run_synthesis("decoder_phases", y_hat, c, tiling.STRIDE // s), s)

    def prepare_analysis(self, shape: tuple[int, ...], c: int) -> None:
        """Build the analysis graphs for an input of ``shape`` now (a bf16 one can fail to build:
        the caller reports that before coding anything)."""
        for part in self._analysis_parts(shape):
            self.session(part, c)

    def prepare_synthesis(self, c: int) -> None:
        """Build the synthesis graph :meth:`synthesize_rgb8` runs at ``c`` now."""
        self.session("decoder_phases" if self._output_phases(c) else "decoder", c)

    # -- graphs and sessions ------------------------------------------------------------------------
    def onnx_model(self, part: str, width: int | None = None, tconv: str | None = None):
        """The float ONNX ``ModelProto`` of ``part`` at ``width``: ``"encoder"``, ``"analysis"``,
        ``"hyper_analysis"``, ``"decoder"``, or ``"decoder_phases"`` (the decoder without its last
        ``DepthToSpace``, where the last layer is sub-pixel); ``tconv`` overrides :meth:`tconv_for`."""
        c = self.check_width(width)
        a = self.specs
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
            # The description's record, not the layer's spec: that would widen the synthesis'
            # weights, which a cached graph never needs.
            last = self.specs.arch.synthesis(c)[-1]
            square = isinstance(last, TConv) and last.stride[0] == last.stride[1] >= 2
            self._phases[c] = int(last.stride[0]) if square and not self.int8_ranges and self.tconv_for(c) == "subpixel" else 0
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
            so.enable_cpu_mem_arena = self.arena
            so.add_session_config_entry("session.intra_op.allow_spinning", "1" if self.spinning else "0")
            pinned = worker_affinities(self.threads) if self.affinity else None
            if pinned:
                so.add_session_config_entry("session.intra_op_thread_affinities", pinned)
            sess = self._cached_session(part, c, so)
            self._sessions[key] = sess
        return sess

    def _cache_file(self, part: str, c: int, machine: str | None = None) -> Path | None:
        """Where the graph cache keeps ``part`` at width ``c``: with ``machine`` (:func:`_machine`),
        ONNX Runtime's optimized form of it for that CPU; without, the graph as built."""
        root = self.cache_dir
        if root is None:
            return None
        int8 = part == "decoder" and bool(self.int8_ranges)
        optimized = [self.optimization, machine] if machine else []
        key = json.dumps([_graph_source_digest(), _library_versions(), onnxgraph.OPSET, self._weights_digest, part, c,
                          "subpixel" if int8 else self.tconv_for(c),
                          self.int8_ranges.get(str(c)) if int8 else None, *optimized], sort_keys=True)
        return root / f"{hashlib.sha256(key.encode()).hexdigest()[:40]}.onnx"

    def _cached_session(self, part: str, c: int, so):
        """An ORT session for ``part``, from the graph cache when it holds this exact graph.

        Where this machine's CPU can be told (:func:`_machine`), the cache holds the graph as
        ONNX Runtime optimized it at ``optimization`` (written out once by the session that
        optimized it: ``optimized_model_filepath``), and a session from it runs with the
        optimizer off: the same kernels on the same weights as a session that optimizes the built
        graph, computing the same pixels, minus the optimizer's milliseconds at each start. As level
        ``all`` lays tensors out for this CPU's vector width, the key names the CPU. Elsewhere the
        cache holds the serialized bytes a fresh build produces, optimized at each start. Either
        way the key covers the weights, the part, width and form, the int8 ranges, the
        graph-building code and the onnx / onnxruntime versions, and a cached graph saves
        importing onnx, building the graph and, for int8, quantizing it. A cache that cannot be
        read or written is ignored.
        """
        import onnxruntime as ort

        machine = _machine()
        path = self._cache_file(part, c, machine)
        if path is not None and path.is_file():
            level = so.graph_optimization_level
            if machine is not None:  # optimized before it was stored
                so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            try:
                sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            except Exception:  # a truncated or foreign file: rebuild it
                sess = None
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            so.graph_optimization_level = level
            if sess is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)  # least-recently-used order for pruning
                return sess
        if path is None or machine is None:
            return ort.InferenceSession(self._build_graph(part, c, path), so, providers=["CPUExecutionProvider"])
        data = self._graph(part, c).SerializeToString()
        tmp = _temporary(path)
        if tmp is not None:
            so.optimized_model_filepath = str(tmp)
            try:
                sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
            except Exception:  # the optimized graph could not be written: a session without it
                sess = None
            so.optimized_model_filepath = ""
            if sess is not None:
                _store(tmp, path)
                return sess
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        return ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])

    def _build_graph(self, part: str, c: int, path: Path | None) -> bytes:
        """The serialized graph of ``part``, stored in the graph cache at ``path`` when one is given."""
        data = self._graph(part, c).SerializeToString()
        tmp = None if path is None else _temporary(path)
        if tmp is not None:
            try:
                tmp.write_bytes(data)
            except OSError:
                with contextlib.suppress(OSError):
                    tmp.unlink(missing_ok=True)
                return data
            _store(tmp, path)
        return data

    def _openvino_session(self, part: str, c: int):
        """The float graph of ``part`` (the graph cache's, or a fresh build) compiled by OpenVINO."""
        from .openvino import OpenVINOSession

        names = {"encoder": ["y", "z"] if self.hyper else ["y"], "analysis": ["y"], "hyper_analysis": ["z"],
                 "decoder": ["x_hat"], "decoder_phases": ["x_phases"]}[part]
        path = self._cache_file(part, c)
        if path is not None and path.is_file():
            try:
                sess = OpenVINOSession(path.read_bytes(), names, self.threads, self.ov_precision)
            except (OSError, RuntimeError):  # a truncated or foreign file: rebuild it
                sess = None
                with contextlib.suppress(OSError):
                    path.unlink(missing_ok=True)
            if sess is not None:
                with contextlib.suppress(OSError):
                    os.utime(path)
                return sess
        return OpenVINOSession(self._build_graph(part, c, path), names, self.threads, self.ov_precision)

    def _graph(self, part: str, c: int):
        if part != "decoder" or not self.int8_ranges:
            return self.onnx_model(part, c)
        from .quantize import int8_decoder

        ranges = self.int8_ranges.get(str(c))
        if ranges is None:
            raise ValueError(f"no int8 synthesis ranges for width {c}")
        return int8_decoder(self.onnx_model("decoder", c, tconv="subpixel"), ranges)

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



@lru_cache(maxsize=1)
def _machine() -> str | None:
    """The CPU an optimized graph is for, or None where it cannot be told: at level ``all`` ONNX
    Runtime lays tensors out in NCHWc blocks as wide as the CPU's vectors, so its optimized graph
    serves CPUs of the same instruction set only (the machine and ``/proc/cpuinfo``'s flags)."""
    try:
        with open("/proc/cpuinfo", "rb") as f:
            head = f.read(1 << 16)  # the first CPU's lines
    except OSError:
        return None
    for line in head.splitlines():
        name, colon, value = line.partition(b":")
        if colon and name.strip() in (b"flags", b"Features"):
            return hashlib.sha256(os.uname().machine.encode() + b" " + value.strip()).hexdigest()[:16]
    return None


def _temporary(path: Path) -> Path | None:
    """A temporary name beside ``path`` in the graph cache (created if need be), or None where it cannot be written."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")


def _store(tmp: Path, path: Path) -> None:
    """``tmp`` in the graph cache as ``path`` (atomically), then the cache pruned."""
    try:
        os.replace(tmp, path)
        _prune(path.parent)
    except OSError:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _prune(root: Path, keep: int = GRAPH_CACHE_FILES) -> None:
    import time

    files = sorted(root.glob("*.onnx"), key=lambda p: p.stat().st_mtime, reverse=True)
    stale = [p for p in root.glob("*.tmp") if p.stat().st_mtime < time.time() - 3600]  # failed writes
    for old in files[keep:] + stale:
        old.unlink(missing_ok=True)
