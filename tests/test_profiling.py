"""The stage breakdown of slimfast bench (slimfast.tools.profiling): every stage timed, a readable trace."""
from __future__ import annotations

import json

import pytest

from slimfast.codec import pad_image, to_input

import slimfast
from slimfast.tools import profiling


@pytest.mark.parametrize("name,hyper", [("test-l", False), ("test-h", True)])
def test_stages_cover_both_sides_and_the_trace_opens(model_dir, small_rgb, name, hyper, tmp_path):
    codec = slimfast.load(name, threads=1)
    st = profiling.stage_times(codec, small_rgb, None, 2)
    for side, stages in (("encode", profiling.ENCODE), ("decode", profiling.DECODE)):
        timed = [s for s in stages if f"{side}: {s}" in st]
        assert ("hyper-synthesis" in timed) == hyper
        assert all(st[f"{side}: {s}"] >= 0 for s in timed)
        assert st[f"{side}: other"] == pytest.approx(st[f"{side}: total"] - sum(st[f"{side}: {s}"] for s in timed))
    counts = {}
    profiling.one_round(codec, small_rgb, None, counts)
    sym = codec.model.encode_symbols(to_input(pad_image(small_rgb, codec.model.pad_multiple)))
    assert counts["symbols"] == sum(v.size for v in sym.values())  # the throughput counts every coded symbol
    ms = st["decode: entropy decoding"]
    assert st["decode: Msymbols/s"] == pytest.approx(counts["symbols"] / ms / 1e3)
    events = profiling.trace(profiling.one_round(codec, small_rgb, None), name)
    path = tmp_path / "trace.json"
    path.write_text(json.dumps({"traceEvents": events}))
    back = json.loads(path.read_text())["traceEvents"]
    spans = [e for e in back if e["ph"] == "X"]
    assert {e["cat"] for e in spans} == {"encode", "decode"} and all(e["dur"] >= 0 for e in spans)
    assert back[0]["ph"] == "M" and back[0]["args"]["name"] == name


def test_bench_markdown_shows_where_the_time_goes():
    from slimfast.tools.bench import stages_md

    st = {f"{side}: {s}": 1.0 for side, ss in (("encode", profiling.ENCODE), ("decode", profiling.DECODE)) for s in ss}
    st.update({"encode: other": 0.5, "decode: other": 0.25, "encode: total": 3.5, "decode: total": 3.25})
    md = "\n".join(stages_md({"models": [{"model": "m", "width": None, "stages": st}]}))
    assert "## Where the time goes" in md and "| m | - | 1.0 | 1.0 | 1.0 | 0.5 | 1.0 | 1.0 | 1.0 | 0.2 | 3.5 / 3.2 |" in md
