"""Where coding time goes: the stages of the one coding path, timed one by one (``slimfast bench``).

Encode: analysis (g_a, h_a), the integer hyper-synthesis (entropy parameters from z), then
quantization and range coding. Decode: range decoding, the hyper-synthesis, then synthesis and
the 8-bit conversion. What the API call costs beyond its stages (canonical image, padding,
container, alpha, the PIL image) is reported as "other". ``trace`` turns one timed round into a
Chrome trace (``chrome://tracing``, Perfetto or speedscope open it).
"""
from __future__ import annotations

import statistics
import time

import numpy as np

ENCODE = ("analysis", "hyper-synthesis", "quantize + entropy coding")
DECODE = ("entropy decoding", "hyper-synthesis", "synthesis + RGB")


class _Clock:
    def __init__(self):
        self.spans: list[tuple[str, float, float]] = []
        self.symbols = 0  # entropy-coded symbols of the round (y and z): throughput = symbols / time

    def __call__(self, name: str, fn):
        t0 = time.perf_counter()
        out = fn()
        self.spans.append((name, t0, time.perf_counter()))
        return out


def _encode_stages(path, x: np.ndarray, c: int, clock: _Clock):
    codec, engine = path.codec(c), path.engine
    codec.forget()
    lat = clock("encode: analysis", lambda: engine.analyze(x, c))
    if path.hyper:
        z = codec.z.quantize_tensor(lat["z"])
        clock("encode: hyper-synthesis", lambda: codec.entropy_parameters(z))
    def code():
        symbols = codec.quantize(lat)
        clock.symbols = sum(int(v.size) for v in symbols.values())
        return codec.encode(symbols)

    return clock("encode: quantize + entropy coding", code)


def _decode_stages(path, strings: list[bytes], shape: tuple[int, int], c: int, clock: _Clock) -> None:
    codec, engine = path.codec(c), path.engine
    codec.forget()
    if path.hyper:  # the parameters first, so that the timed decode is range decoding alone
        z = codec.z.decode_tensor(strings[0], shape)
        clock("decode: hyper-synthesis", lambda: codec.entropy_parameters(z))
    symbols = clock("decode: entropy decoding", lambda: codec.decode(strings, shape))
    clock("decode: synthesis + RGB", lambda: engine.synthesize_rgb8(codec.dequantize(symbols), c))


def one_round(codec, img: np.ndarray, width: int | None, counts: dict | None = None) -> list[tuple[str, float, float]]:
    """One encode and decode of ``img`` through ``codec`` (a :class:`slimfast.codec.Codec`):
    each stage timed, then the whole API calls (``encode: total``, ``decode: total``); ``counts``
    receives the number of entropy-coded symbols."""
    import slimfast
    from ..codec import pad_image, to_input

    path = codec.model
    c = path.check_width(width if width is not None else codec.info.default_width)
    clock = _Clock()
    x = to_input(pad_image(img, path.pad_multiple))
    strings = _encode_stages(path, x, c, clock)
    shape = tuple(-(-s // path.pad_multiple) for s in x.shape[2:])
    _decode_stages(path, strings, shape, c, clock)
    data = clock("encode: total", lambda: codec.compress(img, width=width))
    clock("decode: total", lambda: slimfast.decompress(data, settings=codec.settings))
    if counts is not None:
        counts["symbols"] = clock.symbols
    return clock.spans


def stage_times(codec, img: np.ndarray, width: int | None, repeats: int) -> dict[str, float]:
    """Median milliseconds of every stage over ``repeats`` rounds, each side's "other", and the
    entropy coder's throughput (``encode: Msymbols/s``, ``decode: Msymbols/s``: y and z symbols
    over the range coding stages' time)."""
    runs: dict[str, list[float]] = {}
    counts: dict = {}
    for _ in range(repeats):
        for name, t0, t1 in one_round(codec, img, width, counts):
            runs.setdefault(name, []).append((t1 - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in runs.items()}
    for side, stage in (("encode", ENCODE[2]), ("decode", DECODE[0])):
        ms = med.get(f"{side}: {stage}")
        med[f"{side}: Msymbols/s"] = counts.get("symbols", 0) / ms / 1e3 if ms else 0.0
    for side, stages in (("encode", ENCODE), ("decode", DECODE)):
        staged = sum(med.get(f"{side}: {s}", 0.0) for s in stages)
        med[f"{side}: other"] = med[f"{side}: total"] - staged
    return med


def trace(spans: list[tuple[str, float, float]], process: str, pid: int = 1) -> list[dict]:
    """Chrome trace events ("X" complete events, microseconds) for one round's spans."""
    t_first = min(t0 for _, t0, _ in spans)
    events = [{"name": "process_name", "ph": "M", "pid": pid, "args": {"name": process}}]
    for name, t0, t1 in spans:
        side, stage = name.split(": ", 1)
        events.append({"name": stage, "cat": side, "ph": "X", "pid": pid, "tid": 1 if side == "encode" else 2,
                       "ts": (t0 - t_first) * 1e6, "dur": (t1 - t0) * 1e6})
    return events
