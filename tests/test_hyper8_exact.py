"""The hyper-synthesis as it runs (sub-pixel GEMMs, channels-last, blocked elementwise steps) gives
the same bits as the plain formulation it replaced: one GEMM per tap scattered into a
channels-first output, then the same float64 elementwise steps on whole arrays. Random geometries
and extreme values, random-weight models, and the bundled models on a real image. Both
formulations, 8-bit and 12-bit, are copied here as first written (:func:`_reference`); the 12-bit
layers' own checks are in ``tests/test_hyper12_exact.py``."""
from __future__ import annotations

import numpy as np
import pytest

import slimfast
from slimfast import archs, zoo
from slimfast.archs.shapes import tconv_padding
from slimfast.coding import hyper, intmath
from slimfast.coding.intmath import STEP_MAX, STEP_MIN, STEP_ONE
from slimfast.engines.specs import Specs
from tests import numpy_weights
from tests.test_hyper8 import STEPS, _tconv_int64

STEP_CHOICES = (STEP_ONE, STEP_MIN, STEP_MAX, 3001)


def _run8_reference(z_hat: np.ndarray, branch: hyper.Int8Branch) -> np.ndarray:
    a = np.clip(np.rint(z_hat / branch.in_step), -127, 127).astype(np.float32)
    for i, lay in enumerate(branch.layers):
        if lay.kind == "tconv":
            acc = intmath.tconv_accumulate(a, lay.wf, lay.stride, lay.padding, lay.output_padding)
        else:
            acc = (lay.wf @ a.reshape(a.shape[0], -1)).reshape(-1, *a.shape[1:])
        out = np.multiply(acc, lay.multiplier[:, None, None], dtype=np.float64)
        np.add(out, lay.bias[:, None, None], out=out)
        if i == len(branch.layers) - 1:
            return out
        np.rint(out, out=out)
        a = np.clip(out, 0, 255, out=out).astype(np.float32)


# -- the 12-bit formulation as first written (intmath.to_fixed, _requantize, tconv_accumulate,
# conv_transpose, conv1x1, relu, from_fixed and hyper.run_branch): weights converted per call, one
# GEMM per tap scattered into a zeroed channels-first output, the elementwise steps on whole arrays.

def _to_fixed12(x):
    v = np.multiply(x, float(1 << 8), dtype=np.float64)
    np.rint(v, out=v)
    return np.clip(v, -(2 ** 23), 2 ** 23, out=v)


def _from_fixed12(a):
    return a / float(1 << 8)


def _requantize12(acc, scale, bias_q):
    out = acc * scale[:, None, None]
    np.add(out, bias_q[:, None, None], out=out)
    np.rint(out, out=out)
    return np.clip(out, -(2 ** 23), 2 ** 23, out=out)


def _tconv_accumulate12(a, wf, stride, padding, output_padding):
    cin, h, w = a.shape
    kh, kw, cout, _ = wf.shape
    sh, sw = stride
    full = np.zeros((cout, (h - 1) * sh + kh + output_padding[0], (w - 1) * sw + kw + output_padding[1]), wf.dtype)
    x = a.reshape(cin, h * w)
    for i in range(kh):
        for j in range(kw):
            full[:, i: i + (h - 1) * sh + 1: sh, j: j + (w - 1) * sw + 1: sw] += (wf[i, j] @ x).reshape(cout, h, w)
    return full[:, padding[0]: padding[0] + h * sh, padding[1]: padding[1] + w * sw]


def _conv_transpose12(a, w_int, scale, bias_q, stride, padding, output_padding):
    wf = np.ascontiguousarray(w_int.astype(np.float64).transpose(2, 3, 1, 0))
    return _requantize12(_tconv_accumulate12(a, wf, stride, padding, output_padding), scale, bias_q)


def _conv1x1_12(a, w_int, scale, bias_q):
    cin, h, w = a.shape
    acc = (w_int[:, :, 0, 0].astype(np.float64) @ a.reshape(cin, h * w)).reshape(-1, h, w)
    return _requantize12(acc, scale, bias_q)


def _relu12(a):
    return np.maximum(a, 0.0)


def _run12_reference(a, layers):
    for lay in layers:
        if lay.kind == "relu":
            a = _relu12(a)
            continue
        cin = a.shape[0]
        if lay.kind == "tconv":
            cout = lay.w.shape[1] if lay.cout is None else lay.cout
            a = _conv_transpose12(a, lay.w[:cin, :cout], lay.scale[:cout], lay.bias[:cout],
                                  lay.stride, lay.padding, lay.output_padding)
        elif lay.kind == "conv1x1":
            cout = lay.w.shape[0] if lay.cout is None else lay.cout
            a = _conv1x1_12(a, lay.w[:cout, :cin], lay.scale[:cout], lay.bias[:cout])
        else:
            raise ValueError(f"unknown integer layer kind {lay.kind!r}")
    return a


def _reference(z, medians, scale_branch, mean_branch, scale_table, step):
    """:func:`slimfast.coding.hyper.entropy_parameters` as first written (8-bit and 12-bit)."""
    med = np.asarray(medians).astype(np.float64)[: z.shape[1]].reshape(-1, 1, 1)
    z_hat = z[0].astype(np.float64) + med
    if isinstance(scale_branch, hyper.Int8Branch):
        scale = intmath.to_fixed(_run8_reference(z_hat, scale_branch))
        mean = None if mean_branch is None else _run8_reference(z_hat, mean_branch)
    else:
        a = _to_fixed12(z_hat)
        scale = _run12_reference(a, scale_branch)
        mean = None if mean_branch is None else _from_fixed12(_run12_reference(a, mean_branch))
    lut = intmath.scale_index_lut(scale_table)
    index = lut[np.clip(intmath.divide_by_step(scale, step), 0, lut.size - 1).astype(np.intp)][None]
    return (np.zeros(index.shape) if mean is None else mean[None]), index


def _same_bits(got, want):
    for g, w in zip(got, want):
        assert g.dtype == w.dtype and g.shape == w.shape and g.flags.c_contiguous
        assert g.tobytes() == w.tobytes()  # the sign of zero included


def _geometries():
    """(kernel, stride, padding, output_padding): the models' own, and odd ones (both axes
    strided, kernel below stride, every padding)."""
    for k, s in ((7, 4), (1, 1), (3, 1), (5, 2), (4, 4), (2, 4), (3, 2), (9, 3)):
        p, op = tconv_padding(k, s)
        yield (k, 1), (s, 1), (p, 0), (op, 0)
        yield (1, k), (1, s), (0, p), (0, op)
        yield (k, 3), (s, 2), (p, 1), (op, 1)
        for pad in range(k):
            yield (k, k), (s, s), (pad, k - 1 - pad), (s - 1, 0)


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4)])
def test_subpixel_transposed_convolution_equals_the_sum_of_products(shape):
    rng = np.random.default_rng(sum(shape))
    for kernel, stride, padding, output_padding in _geometries():
        cin, cout = 5, 3
        a = rng.choice([-127, -1, 0, 1, 255], (cin, *shape))
        w = rng.choice([-128, -1, 0, 1, 127], (cin, cout, *kernel))
        wf = np.ascontiguousarray(w.astype(np.float32).transpose(2, 3, 1, 0))
        got = intmath.conv_transpose8(a.astype(np.float32), wf, stride, padding, output_padding)
        want = _tconv_int64(a, w, stride, padding, output_padding)
        assert got.shape == want.shape and np.array_equal(got.astype(np.int64), want), (kernel, stride, padding)
        scattered = intmath.tconv_accumulate(a.astype(np.float32), wf, stride, padding, output_padding)
        assert got.tobytes() == scattered.tobytes()


def test_blocked_requantization_equals_whole_array_steps():
    """Across block boundaries, at rounding ties and beyond both clips."""
    rng = np.random.default_rng(7)
    for rows, c in ((1, 3), (intmath.BLOCK // 7 + 3, 7), (3 * intmath.BLOCK // 96 + 5, 96)):
        acc = rng.integers(-2 ** 23, 2 ** 23, (rows, c)).astype(np.float32)
        acc[0] = [0.5, -0.5, 2.5, 1e6, -1e6, 254.5, 255.5][:c] + [0.0] * max(0, c - 7)
        m = np.where(np.arange(c) == 0, 1.0, rng.normal(0, 1e-4, c))
        b = np.where(np.arange(c) == 0, 0.0, rng.normal(0, 3, c))
        want = np.rint(np.add(np.multiply(acc, m, dtype=np.float64), b))
        want = np.clip(want, 0, 255).astype(np.float32)
        assert intmath.requantize8(acc, m, b).tobytes() == want.tobytes()


def test_fused_scale_index_equals_the_separate_steps():
    """:func:`intmath.scale_index8` against affine8, to_fixed and step_scale_index one after another:
    across blocks of channels, at rounding ties, beyond the fixed-point clip, at every step."""
    rng = np.random.default_rng(9)
    lut = intmath.scale_index_lut(numpy_weights.SCALES)
    for c, hw in ((1, 5), (7, intmath.BLOCK // 3 + 1), (192, 1536), (5, intmath.BLOCK + 3)):
        acc = rng.integers(-2 ** 24, 2 ** 24, (c, hw)).astype(np.float32)
        acc[0, :6] = [0.5, -0.5, 2.5, 1.5, 0.0, -0.0][: hw] if hw >= 6 else acc[0, :6]
        m = np.where(np.arange(c) == 0, 1 / 256, rng.choice([1e-6, 1e-3, 1.0, 1e3], c))
        b = rng.normal(0, 2, c)
        for step in STEP_CHOICES:
            want = intmath.step_scale_index(intmath.to_fixed(intmath.affine8(acc, m, b)), step, lut)
            assert intmath.scale_index8(acc, m, b, step, lut).tobytes() == want.tobytes()


@pytest.mark.skipif(intmath.native is None, reason="the native steps (_intmath.c) were not built")
def test_native_steps_equal_the_numpy_ones(monkeypatch):
    """_intmath.c against the numpy code that defines it, bit for bit (signs of zero included): rounding
    ties, both clips, huge and tiny multipliers, odd channel counts, every step."""
    rng = np.random.default_rng(21)
    lut = intmath.scale_index_lut(numpy_weights.SCALES)
    ties = np.array([0.5, -0.5, 1.5, 2.5, -0.0, 0.0, 254.5, 255.5, 256.0, -1e9, 1e9, -0.4], np.float32)

    def both(f, *args):
        native = f(*args)
        monkeypatch.setattr(intmath, "native", None)
        plain = f(*args)
        monkeypatch.undo()
        assert native.dtype == plain.dtype and native.tobytes() == plain.tobytes()

    for _ in range(60):
        c, n = int(rng.integers(1, 200)), int(rng.integers(1, 400))
        acc = rng.integers(-2 ** 24, 2 ** 24, (n, c)).astype(np.float32)
        acc.reshape(-1)[: min(acc.size, ties.size)] = ties[: min(acc.size, ties.size)]
        m = rng.choice([1.0, 1 / 256, 1e-6, 1e-3, 0.5, 1e3], c) * rng.uniform(0.5, 2, c)
        b = rng.normal(0, 3, c)
        m[0], b[0] = 1.0, 0.0  # the ties pass unchanged
        both(intmath.requantize8, acc, m, b)
        channels_first = np.ascontiguousarray(acc.T)
        both(intmath.affine8, channels_first, m, b)
        for step in STEP_CHOICES + (STEP_ONE + 1,):
            both(intmath.scale_index8, channels_first, m, b, step, lut)


def _random_codec_parts(seed: int, hs_steps):
    config = {"N1": 8, "N2": 16, "M": 32, "S": 8, **({"hs_steps": hs_steps} if hs_steps else {})}
    state = numpy_weights.random_state("fasinet-h", config, seed=seed)
    scale, mean = Specs("fasinet-h", config, state).hs_branches(32)
    return scale, mean, state["entropy_bottleneck._medians"], state["conditional.scale_table"]


@pytest.mark.parametrize("hs_steps", [STEPS, {"h_s_scale": [0.5, 0.5, 0.5], "h_s_mean": [2.0, 0.01, 0.01]}, None])
def test_random_models_give_the_reference_bits(hs_steps):
    """Small and large z (saturating the 8-bit input and hidden activations), odd sizes, every
    step, with and without a mean branch, on one and two threads."""
    scale, mean, med, table = _random_codec_parts(11, hs_steps)
    rng = np.random.default_rng(12)
    for shape, high in (((1, 1), 3), ((2, 3), 40), ((3, 5), 2000), ((4, 7), 10 ** 6)):
        z = rng.integers(-high, high + 1, (1, 32, *shape)).astype(np.int32)
        for step in STEP_CHOICES:
            for mean_branch in (mean, None):
                want = _reference(z, med, scale, mean_branch, table, step)
                for workers in (1, 2):
                    _same_bits(hyper.entropy_parameters(z, med, scale, mean_branch, table, workers, step), want)


def test_extreme_8_bit_weights_give_the_reference_bits():
    """Every weight at +-127/-128 and multipliers that saturate each hidden layer: accumulators at
    the float32 bound of :func:`slimfast.coding.intmath.exact_in_float32`."""
    rng = np.random.default_rng(3)
    c, h = 64, 48
    layers = []
    for kind, shape, kw in (("tconv", (7, 1, h, c), dict(stride=(4, 1), padding=(3, 0), output_padding=(3, 0))),
                            ("tconv", (1, 7, c, h), dict(stride=(1, 4), padding=(0, 3), output_padding=(0, 3))),
                            ("conv1x1", (c, c), {})):
        wf = rng.choice([-128.0, 127.0], shape).astype(np.float32)
        cout = shape[2] if kind == "tconv" else shape[0]
        layers.append(hyper.Int8Layer(kind, wf, rng.choice([1e-5, 1e-3, 0.5], cout), rng.normal(0, 50, cout), **kw))
    branch = hyper.Int8Branch(0.125, tuple(layers))
    med = rng.normal(0, 1, c)
    table = numpy_weights.SCALES
    for z in (np.full((1, c, 3, 4), 10 ** 4, np.int32), rng.integers(-40, 41, (1, c, 3, 4)).astype(np.int32)):
        for step in STEP_CHOICES:
            want = _reference(z, med, branch, branch, table, step)
            _same_bits(hyper.entropy_parameters(z, med, branch, branch, table, 2, step), want)


def _bundled_hyperprior_points():
    for info in zoo.list_models():
        if archs.describe(info.architecture).hyper:
            for width in info.widths or [None]:
                yield info.name, width


@pytest.mark.parametrize("name,width", list(_bundled_hyperprior_points()))
def test_bundled_models_give_the_reference_bits(name, width, monkeypatch):
    """The shipped weights (8-bit: fasinet-h-mse-q*; 12-bit: slim-fasinet-h-mse at each width) on
    the z of the bundled sample and on random z."""
    from PIL import Image

    from slimfast.codec import pad_image, to_input
    from tests.conftest import SAMPLE

    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    path = slimfast.load(name).model
    codec = path.codec(width)
    x = to_input(pad_image(np.asarray(Image.open(SAMPLE).convert("RGB")), path.pad_multiple))
    z_real = codec.z.quantize_tensor(path.analyze(x, codec.channels)["z"])
    z_rand = np.random.default_rng(5).integers(-60, 61, (1, codec.channels, 3, 5)).astype(np.int32)
    parts = (codec.z._median.ravel(), codec.scale_branch, codec.mean_branch, codec.scale_table)
    for z, steps in ((z_real, STEP_CHOICES), (z_rand, (STEP_ONE,))):
        for step in steps:
            want = _reference(z, *parts, step)
            _same_bits(hyper.entropy_parameters(z, *parts, 2, step), want)
