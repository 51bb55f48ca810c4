"""The one coding path (slimfast.coding): every architecture, built from its description, codes
exactly in a process where torch cannot be imported, with weights made from numpy random numbers."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r"""
import importlib.abc, json, sys
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r}")
sys.meta_path.insert(0, _Block())
from pathlib import Path
import numpy as np
from tests import numpy_weights
from slimfast.runtime import RuntimeModel

out = {}
folder = Path(sys.argv[1])
for case, (arch, config) in enumerate(json.loads(sys.argv[2])):
    path = numpy_weights.write(folder / f"{case}.safetensors", arch, config, seed=1)
    m = RuntimeModel(path, threads=1)
    rng = np.random.default_rng(2)
    x = rng.random((1, 3, 2 * m.pad_multiple, 3 * m.pad_multiple), dtype=np.float32)
    for width in (m.widths or [None]):
        sym = m.encode_symbols(x, width)
        lat = m.compress(x, width)
        back = m.decode_symbols(lat.strings, lat.shape, width)
        x_hat = m.decompress(lat.strings, lat.shape, width)
        out[f"{case} {arch}@{width}"] = {
            "exact": all(np.array_equal(back[k], sym[k]) for k in sym) and set(back) == set(sym),
            "bytes": sum(map(len, lat.strings)), "estimate": m.estimate_bits(sym, width) / 8,
            "shape": list(x_hat.shape), "finite": bool(np.isfinite(x_hat).all()),
            "nonzero": int(sum(np.count_nonzero(v) for v in sym.values()))}
assert "torch" not in sys.modules
print(json.dumps(out))
"""

CASES = [("fasinet-l", {"N": 16, "M": 32}), ("fasinet-h", {"N1": 8, "N2": 16, "M": 32, "S": 8}),
         ("fasinet-h", {"N1": 16, "N2": 16, "M": 32, "S": 8, "K": 7, "final_gdn": False}),
         ("fasinet-h", {"N1": 8, "N2": 16, "M": 32, "S": 8,  # the 8-bit hyper-synthesis
                        "hs_steps": {"h_s_scale": [0.125, 0.02, 0.02], "h_s_mean": [0.25, 0.02, 0.03]}}),
         ("slimcae", {"C": 32, "widths": [32, 16]}), ("slimcae", {"C": 32, "widths": [32, 16], "gdn": "slim+"}),
         ("slimcae-hyper", {"C": 32, "widths": [32, 16]}), ("slimcae-hyper", {"C": 32, "widths": [32, 16], "means": False}),
         ("slim-fasinet-l", {"N": 16, "M": 32, "widths": [32, 16]}),
         ("slim-fasinet-h", {"N1": 8, "N2": 16, "M": 32, "S": 8, "widths": [32, 16]}),
         ("slim-fasinet-h", {"N1": 16, "N2": 16, "M": 32, "S": 8, "widths": [32, 16], "K": 7, "final_gdn": False,
                             "slim_hidden": False})]


@pytest.mark.slow  # starts subprocesses or trains
def test_every_architecture_codes_exactly_without_torch(tmp_path):
    pytest.importorskip("onnxruntime")
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), json.dumps(CASES)], capture_output=True,
                       text=True, cwd=ROOT, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    results = json.loads(r.stdout)
    assert len(results) == 18  # every case, every width
    for point, got in results.items():
        assert got["exact"], point                        # decoded symbols = encoded symbols
        assert got["nonzero"] > 0, point                  # the random weights code something
        # the estimate reads the same tables (random weights escape often, which it prices roughly)
        assert abs(got["bytes"] - got["estimate"]) <= 0.1 * got["estimate"] + 16, point
        assert got["finite"] and got["shape"][1] == 3, point


def test_engines_agree_symbol_for_symbol_on_numpy_weights(tmp_path):
    """The torch engine and ONNX Runtime engine, one coding path: the same strings."""
    import numpy as np

    from slimfast.models import build
    from slimfast.runtime import RuntimeModel
    from slimfast.models.weights import load_state

    from . import numpy_weights

    for case, (arch, config) in enumerate(CASES):
        path = numpy_weights.write(tmp_path / f"{case}.safetensors", arch, config, seed=3)
        model = build(arch, config).eval()
        model.load_state_dict(load_state(path), strict=False)  # the file has no density parameters to train
        ort, torch_path = RuntimeModel(path, threads=1), model.coding_path(threads=1)
        x = np.random.default_rng(4).random((1, 3, 2 * ort.pad_multiple, 2 * ort.pad_multiple), dtype=np.float32)
        for width in (ort.widths or [None]):
            a, b = ort.compress(x, width), torch_path.compress(x, width)
            # float analyses may round a latent differently; decoding each other's strings is exact
            for src, dst in ((a, torch_path), (b, ort)):
                other = ort if dst is torch_path else torch_path
                ref = other.decode_symbols(src.strings, src.shape, width)
                got = dst.decode_symbols(src.strings, src.shape, width)
                assert all(np.array_equal(got[k], ref[k]) for k in ref), (arch, width)
