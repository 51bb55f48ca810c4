"""The 12-bit hyper-synthesis as it runs (:func:`slimfast.coding.hyper.run_branch`: weights arranged
once per layer and width in :class:`slimfast.coding.intmath.FixedConv`, transposed convolutions as
sub-pixel float64 GEMMs, channels-last activations, requantization and ReLU over blocks, in place)
gives the bits of the formulation it replaced, copied as first written in
``tests/test_hyper8_exact.py``: layer by layer at random geometries and at the ends of every range,
whole branches of every shape and several widths of one set of weights, inputs and weights outside
the exactness bound (where it keeps the plain formulation), random-weight slimmable models and the
bundled slim-fasinet-h-mse at every width."""
from __future__ import annotations

import numpy as np
import pytest

import slimfast
from slimfast import archs, zoo
from slimfast.archs.shapes import tconv_padding
from slimfast.coding import hyper, intmath
from slimfast.coding.intmath import ACT_CLIP, STEP_ONE
from slimfast.engines.specs import Specs
from tests import numpy_weights
from tests.test_hyper8 import _tconv_int64
from tests.test_hyper8_exact import (STEP_CHOICES, _conv1x1_12, _conv_transpose12, _geometries, _reference,
                                     _relu12, _run12_reference, _same_bits)

LIM = 2 ** ACT_CLIP
W12 = 2 ** intmath.WEIGHT_BITS - 1


def _acts(rng, shape) -> np.ndarray:
    """Fixed-point activations: the ends of the range, -0.0, small values and random ones."""
    a = rng.integers(-LIM, LIM + 1, shape).astype(np.float64)
    special = rng.choice([-LIM, -LIM + 1, -1.0, -0.0, 0.0, 1.0, 2.0, LIM - 1, LIM], shape)
    return np.where(rng.random(shape) < 0.5, special, a)


def _weights(rng, shape) -> np.ndarray:
    """12-bit weights: +-4095, +-1, 0 and random ones (int16, as the weights file holds them)."""
    w = rng.integers(-W12, W12 + 1, shape)
    return np.where(rng.random(shape) < 0.5, rng.choice([-W12, -1, 0, 1, W12], shape), w).astype(np.int16)


def _factors(rng, cout: int) -> tuple[np.ndarray, np.ndarray]:
    """Requantization factors that saturate some outputs at +-2**23, put some at rounding ties
    (biases of +-0.5 on zero accumulators) and make -0.0 (negative zero rounded; -0.0 biases)."""
    scale = rng.choice([2.0 ** -40, 1e-9, 2.0 ** -20, 1e-4, 0.5, 3.0, -2.0 ** -20, -1e-3], cout)
    bias = rng.choice([-0.0, 0.0, -0.5, 0.5, 1.5, -2.5, -0.3, 0.3, 1e3, -1e7, 2.0 ** 24], cout)
    bias = np.where(rng.random(cout) < 0.3, np.rint(rng.normal(0, 5e3, cout)), bias)
    return scale, bias


def _negative_zeros(out: np.ndarray) -> int:
    return int(np.signbit(out[out == 0]).sum())


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 4)])
def test_transposed_layers_equal_the_scattered_formulation(shape):
    """Every geometry of the 8-bit checks, in float64 at 12-bit extremes, with and without ReLU,
    channels-last and channels-first."""
    rng = np.random.default_rng(sum(shape) + 100)
    negative_zeros = 0
    for kernel, stride, padding, output_padding in _geometries():
        cin, cout = 6, 5
        a, w = _acts(rng, (cin, *shape)), _weights(rng, (cin, cout, *kernel))
        scale, bias = _factors(rng, cout)
        conv = intmath.FixedConv.transposed(w, scale, bias, stride, padding, output_padding)
        assert conv is not None, (kernel, stride, padding)
        want = _conv_transpose12(a, w, scale, bias, stride, padding, output_padding)
        negative_zeros += _negative_zeros(want)
        for relu in (False, True):
            ref = _relu12(want) if relu else want
            got = conv.channels_first(np.ascontiguousarray(a.transpose(1, 2, 0)), relu)
            _same_bits([got], [np.ascontiguousarray(ref)])
            got = conv.channels_last(np.ascontiguousarray(a.transpose(1, 2, 0)), relu)
            assert got.tobytes() == np.ascontiguousarray(ref.transpose(1, 2, 0)).tobytes()
    assert negative_zeros > 0  # the sign of zero is compared, not only assumed


def test_subpixel_float64_sums_are_the_integer_sums_at_the_extremes():
    """The model's geometries at full width, every product at its extreme: the float64 sums are
    the int64 ones (:func:`slimfast.coding.intmath.exact_in_float64`)."""
    rng = np.random.default_rng(1)
    for kernel, stride, padding, output_padding, cin in (((7, 1), (4, 1), (3, 0), (3, 0), 192),
                                                         ((1, 7), (1, 4), (0, 3), (0, 3), 96),
                                                         ((5, 5), (2, 2), (2, 2), (1, 1), 192)):
        assert intmath.exact_in_float64(cin, kernel, stride)
        for a, w in ((np.full((cin, 3, 4), LIM), np.full((cin, 7, *kernel), W12)),
                     (np.full((cin, 3, 4), -LIM), np.full((cin, 7, *kernel), W12)),
                     (rng.choice([-LIM, LIM], (cin, 3, 4)), rng.choice([-W12, W12], (cin, 7, *kernel)))):
            wf = np.ascontiguousarray(w.astype(np.float64).transpose(2, 3, 1, 0))
            got = intmath.SubpixelTConv.of(wf, stride, padding, output_padding)(a.transpose(1, 2, 0).astype(np.float64))
            want = _tconv_int64(a.astype(np.int64), w.astype(np.int64), stride, padding, output_padding)
            assert np.array_equal(got.transpose(2, 0, 1).astype(np.int64), want)


def test_pointwise_layers_equal_the_plain_formulation():
    rng = np.random.default_rng(2)
    negative_zeros = 0
    for cin, cout, shape in ((1, 1, (1, 1)), (7, 3, (2, 5)), (192, 192, (4, 6)), (40, 200, (3, 200))):
        a, w = _acts(rng, (cin, *shape)), _weights(rng, (cout, cin, 1, 1))
        scale, bias = _factors(rng, cout)
        conv = intmath.FixedConv.pointwise(w, scale, bias)
        want = _conv1x1_12(a, w, scale, bias)
        negative_zeros += _negative_zeros(want)
        for relu in (False, True):
            ref = _relu12(want) if relu else want
            _same_bits([conv.channels_first(np.ascontiguousarray(a.transpose(1, 2, 0)), relu)], [ref])
            got = conv.channels_last(np.ascontiguousarray(a.transpose(1, 2, 0)), relu)
            assert got.tobytes() == np.ascontiguousarray(ref.transpose(1, 2, 0)).tobytes()
    assert negative_zeros > 0


def test_the_float64_bound():
    """``cin * taps * 4095 * 2**23 < 2**53``, at its edge, for the model's kernels and larger weights."""
    for kernel, stride in (((7, 1), (4, 1)), ((1, 7), (1, 4)), ((1, 1), (1, 1)), ((3, 3), (1, 1)), ((5, 5), (2, 2))):
        taps = -(-kernel[0] // stride[0]) * -(-kernel[1] // stride[1])
        top = (2 ** 53 - 1) // (taps * W12 * LIM)
        assert intmath.exact_in_float64(top, kernel, stride) and not intmath.exact_in_float64(top + 1, kernel, stride)
        assert intmath.exact_in_float64(192, kernel, stride)
    assert not intmath.exact_in_float64(40000, (1, 1), (1, 1), 32767)


def _branch(rng, spec, cmax: int, width: int | None = None) -> list[hyper.IntLayer]:
    """Full-width (``cmax``) layers of ``spec``, whose entries are ``("tconv", kernel, stride)``,
    ``("conv1x1",)`` or ``("relu",)``; ``cout`` is ``width`` (None: all output channels), the
    leading block :func:`slimfast.coding.hyper.run_branch` takes."""
    out = []
    for kind, *geometry in spec:
        if kind == "relu":
            out.append(hyper.IntLayer("relu"))
            continue
        scale = np.where(rng.random(cmax) < 0.8, rng.uniform(2e-5, 2e-4, cmax), rng.uniform(1e-3, 1.0, cmax))
        scale[::5] = 1e-9  # accumulators rounded to zero, -0.0 where negative
        bias = np.rint(rng.normal(0, 3e3, cmax))
        bias[::5] = np.where(np.arange(0, cmax, 5) % 2, 0.5, -0.0)  # ties, and -0.0
        if kind == "conv1x1":
            out.append(hyper.IntLayer("conv1x1", _weights(rng, (cmax, cmax, 1, 1)), scale, bias, cout=width))
            continue
        kernel, stride = geometry
        (ph, oph), (pw, opw) = (tconv_padding(k, st) for k, st in zip(kernel, stride))
        out.append(hyper.IntLayer("tconv", _weights(rng, (cmax, cmax, *kernel)), scale, bias, tuple(stride), (ph, pw),
                                  (oph, opw), width))
    return out


def _at_width(layers: list[hyper.IntLayer], width: int | None) -> list[hyper.IntLayer]:
    """The same weights with ``cout`` ``width``: the layers a slimmable codec makes per width."""
    return [lay if lay.kind == "relu" else hyper.IntLayer(lay.kind, lay.w, lay.scale, lay.bias, lay.stride,
                                                         lay.padding, lay.output_padding, width) for lay in layers]


def _same_outcome(got, want) -> None:
    """The same bits, or the same exception."""
    try:
        w = want()
    except Exception as e:  # noqa: BLE001 - whichever the plain formulation raises
        with pytest.raises(type(e)):
            got()
        return
    g = got()
    assert g.dtype == w.dtype and g.shape == w.shape and g.tobytes() == w.tobytes()


SLIM_FASINET = (("tconv", (7, 1), (4, 1)), ("relu",), ("tconv", (1, 7), (1, 4)), ("relu",), ("conv1x1",))
SPECS = {
    "slim-fasinet-h": SLIM_FASINET,
    "slimcae-hyper": (("tconv", (5, 5), (2, 2)), ("relu",), ("tconv", (5, 5), (2, 2)), ("relu",), ("tconv", (3, 3), (1, 1))),
    "relu first, twice, last": (("relu",), ("conv1x1",), ("relu",), ("relu",), ("tconv", (3, 2), (2, 1)), ("relu",)),
    "one layer": (("tconv", (4, 4), (4, 4)),),
    "pointwise only": (("conv1x1",), ("relu",), ("conv1x1",)),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_branches_give_the_reference_bits_at_every_width(name):
    """One set of full-width weights at several widths: a codec's layers per width, and one list
    of layers (all output channels) fed inputs of each width in turn and back, each width
    arranging its own block once; small, large and saturating inputs of odd sizes."""
    rng = np.random.default_rng(len(name))
    full = _branch(np.random.default_rng(9), SPECS[name], 40)
    negative_zeros = 0
    for width in (40, 16, 40, 24, 16):
        per_width = _at_width(full, width)
        for shape in ((1, 1), (2, 3), (3, 5)):
            for spread in (3.0, 3e3, 1e9):
                a = intmath.to_fixed(rng.normal(0, spread, (width, *shape)))
                a[:, 0] = -0.0
                for layers in (per_width, full):
                    want = _run12_reference(a, layers)
                    negative_zeros += _negative_zeros(want)
                    _same_outcome(lambda: hyper.run_branch(a, layers), lambda: want)
        for layers in (per_width, full):
            for lay in layers:
                assert lay.kind == "relu" or lay.arranged(width) is not None
    assert negative_zeros > 0 or SPECS[name][-1] == ("relu",)  # a ReLU last makes +0.0 only


def test_a_layer_is_arranged_once_per_width():
    layers = _branch(np.random.default_rng(4), SLIM_FASINET, 32)
    a = intmath.to_fixed(np.random.default_rng(5).normal(0, 30, (32, 2, 3)))
    hyper.run_branch(a, layers)
    first = [lay.arranged(32) for lay in layers]
    hyper.run_branch(a, layers)
    hyper.run_branch(a[:8], layers)
    assert all(lay.arranged(32) is f for lay, f in zip(layers, first))
    assert set(layers[0]._arranged) == {8, 32} and set(layers[2]._arranged) == {32}


def test_outside_the_bound_the_plain_formulation_runs():
    """Inputs that are not fixed point, layers whose sums could round (weights beyond 12 bits, too
    many products), factors that are not finite float64 ones per channel, padding beyond the
    kernel: the plain formulation runs, the same bits (or the same error)."""
    rng = np.random.default_rng(5)
    layers = _branch(rng, SLIM_FASINET, 8)
    good = intmath.to_fixed(rng.normal(0, 100, (8, 2, 3)))
    with np.errstate(invalid="ignore", over="ignore"):
        for a in (good + 0.25, good * 4.0 + LIM, np.where(good > 0, np.nan, good), good.astype(np.float32),
                  good[:, :0], good[0]):
            _same_outcome(lambda: hyper.run_branch(a, layers), lambda: _run12_reference(a, layers))
        cin = 40000  # 40000 * 32767 * 2**23 > 2**53
        wide = hyper.IntLayer("conv1x1", np.full((2, cin, 1, 1), 32767, np.int16), np.array([1e-9, 2.0 ** -30]),
                              np.array([0.0, -0.0]))
        assert wide.arranged(cin) is None
        a = np.full((cin, 1, 2), float(LIM))
        a[::3] = -LIM + 1.0
        _same_outcome(lambda: hyper.run_branch(a, [wide]), lambda: _run12_reference(a, [wide]))
        last = layers[-1]
        for scale, bias in ((last.scale.astype(np.float32), last.bias), (np.where(last.scale > 1e-4, np.inf, 0), last.bias),
                            (last.scale, np.full(last.bias.shape, np.nan)), (last.scale[:3], last.bias)):
            odd = hyper.IntLayer("conv1x1", last.w, scale, bias)
            assert odd.arranged(8) is None
            _same_outcome(lambda: hyper.run_branch(good, [odd]), lambda: _run12_reference(good, [odd]))
        first = layers[0]
        pad = hyper.IntLayer("tconv", first.w, first.scale, first.bias, (4, 1), (7, 0), (3, 0))
        assert pad.arranged(8) is None
        _same_outcome(lambda: hyper.run_branch(good, [pad]), lambda: _run12_reference(good, [pad]))
        for bad in ([hyper.IntLayer("gelu")], [layers[0], hyper.IntLayer("gelu")], [layers[-1]]):
            _same_outcome(lambda: hyper.run_branch(good, bad), lambda: _run12_reference(good, bad))


@pytest.mark.parametrize("architecture", ["slim-fasinet-h", "slimcae-hyper"])
def test_random_slimmable_models_give_the_reference_bits(architecture):
    """Random full-width weights (quantized as ``update()`` does), every width in turn, small,
    large and saturating z, every step, one and two threads."""
    state = numpy_weights.random_state(architecture, seed=21)
    specs = Specs(architecture, {}, state)
    table = state["conditional.scale_table"]
    rng = np.random.default_rng(22)
    for width in specs.arch.widths:
        scale, mean = specs.hs_branches(width)
        m = rng.normal(0, 1, width)
        for shape, high in (((1, 1), 3), ((2, 3), 2000), ((2, 2), 10 ** 6)):
            z = rng.integers(-high, high + 1, (1, width, *shape)).astype(np.int32)
            for step in (STEP_ONE, STEP_CHOICES[-1]):
                want = _reference(z, m, scale, mean, table, step)
                for workers in (1, 2):
                    _same_bits(hyper.entropy_parameters(z, m, scale, mean, table, workers, step), want)


def _slim_fasinet_widths():
    info = zoo.get("slim-fasinet-h-mse")
    assert archs.describe(info.architecture).hyper
    return info.widths


@pytest.mark.parametrize("width", _slim_fasinet_widths())
def test_bundled_slim_fasinet_at_the_extremes(width, monkeypatch):
    """The shipped 12-bit weights on z that saturate the fixed point (+-2**23 after the
    medians), on alternating signs and on zeros; the sample image's z is in
    ``tests/test_hyper8_exact.py``."""
    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)
    codec = slimfast.load("slim-fasinet-h-mse").model.codec(width)
    parts = (codec.z._median.ravel(), codec.scale_branch, codec.mean_branch, codec.scale_table)
    rng = np.random.default_rng(width)
    c = codec.channels
    big = 2 ** 30
    for z in (np.full((1, c, 2, 3), big), np.full((1, c, 2, 3), -big), rng.choice([-big, big], (1, c, 3, 2)),
              np.zeros((1, c, 4, 5)), rng.integers(-300, 301, (1, c, 5, 7))):
        z = z.astype(np.int32)
        for step in STEP_CHOICES:
            want = _reference(z, *parts, step)
            _same_bits(hyper.entropy_parameters(z, *parts, 2, step), want)
            _same_bits(hyper.entropy_parameters(z, *parts, 1, step), want)


def test_blocked_scale_index_equals_whole_array_steps():
    """:func:`slimfast.coding.intmath.step_scale_index` across block boundaries, at both ends of the
    fixed-point range, below zero and beyond the table, for every step."""
    rng = np.random.default_rng(8)
    lut = intmath.scale_index_lut(numpy_weights.SCALES)
    for size in (1, intmath.BLOCK - 1, 2 * intmath.BLOCK + 5):
        v = rng.integers(-LIM, LIM + 1, size).astype(np.float64)
        v[: min(size, 8)] = [-LIM, LIM, -1.0, -0.0, 0.0, lut.size - 1, lut.size, 5.0][: min(size, 8)]
        v[8:] = np.where(rng.random(size - min(size, 8)) < 0.7, rng.integers(-10, lut.size + 10, size - min(size, 8)),
                         v[8:])
        for step in STEP_CHOICES:
            want = lut[np.clip(intmath.divide_by_step(v, step), 0, lut.size - 1).astype(np.intp)]
            got = intmath.step_scale_index(v.reshape(1, 1, -1), step, lut)
            assert got.shape == (1, 1, size) and got.dtype == want.dtype and got.tobytes() == want.tobytes()
