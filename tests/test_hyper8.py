"""The 8-bit hyper-synthesis (FasiNet-H's ``hs_steps`` option): float32 GEMMs that are exact by
construction, checked against int64 arithmetic at the extremes of their ranges."""
from __future__ import annotations

import numpy as np
import pytest

from slimfast import archs
from slimfast.coding import hyper, intmath
from slimfast.engines.specs import Specs
from tests import numpy_weights

STEPS = {"h_s_scale": [0.125, 0.02, 0.02], "h_s_mean": [0.25, 0.02, 0.03]}


def _tconv_int64(a, w, stride, padding, output_padding):
    """Reference transposed convolution in int64: every output a plain sum of products."""
    cin, h, wd = a.shape
    _, cout, kh, kw = w.shape
    sh, sw = stride
    full = np.zeros((cout, (h - 1) * sh + kh + output_padding[0], (wd - 1) * sw + kw + output_padding[1]), np.int64)
    for i in range(h):
        for j in range(wd):
            full[:, i * sh: i * sh + kh, j * sw: j * sw + kw] += np.einsum("c,cokl->okl", a[:, i, j], w)
    return full[:, padding[0]: padding[0] + h * sh, padding[1]: padding[1] + wd * sw]


@pytest.mark.parametrize("kernel,stride,cin", [((7, 1), (4, 1), 256), ((1, 7), (1, 4), 256), ((3, 3), (1, 1), 57)])
def test_transposed_convolution_is_exact_at_the_bound(kernel, stride, cin):
    """The largest channel count the bound admits, with every product at its extreme."""
    assert intmath.exact_in_float32(cin, kernel, stride)
    assert not intmath.exact_in_float32(2 * cin + 64, kernel, stride)
    rng = np.random.default_rng(0)
    for a, w in (
        (np.full((cin, 3, 4), 255), np.full((cin, 5, *kernel), 127)),  # every sum at its maximum
        (np.full((cin, 3, 4), -127), np.full((cin, 5, *kernel), 127)),  # and its minimum
        (rng.integers(0, 256, (cin, 3, 4)), rng.choice([-128, 127], (cin, 5, *kernel))),
    ):
        (ph, oph), (pw, opw) = [(k // 2, s - 1) if s > 1 else (k // 2, 0) for k, s in zip(kernel, stride)]
        wf = np.ascontiguousarray(w.astype(np.float32).transpose(2, 3, 1, 0))
        got = intmath.conv_transpose8(a.astype(np.float32), wf, stride, (ph, pw), (oph, opw))
        want = _tconv_int64(a.astype(np.int64), w.astype(np.int64), stride, (ph, pw), (oph, opw))
        assert np.array_equal(got.astype(np.int64), want)


def test_pointwise_convolution_is_exact_at_the_bound():
    cin = 512
    assert intmath.exact_in_float32(cin, (1, 1)) and not intmath.exact_in_float32(cin + 8, (1, 1))
    a = np.full((cin, 2, 3), 255, np.float32)
    w = np.full((4, cin), -128, np.float32)
    got = intmath.conv1x1_8(a, w)
    assert np.array_equal(got.astype(np.int64), np.full((4, 2, 3), -128 * 255 * cin, np.int64))


def test_requantization_rounds_half_to_even_and_clips():
    acc = np.array([-10.0, 0.5, 1.5, 2.5, 1000.0], np.float32).reshape(1, 1, 5)
    out = intmath.requantize8(acc, np.array([1.0]), np.array([0.0]))
    assert out.ravel().tolist() == [0, 0, 2, 2, 255]


def test_weights_quantize_within_seven_bits_deterministically():
    w = np.random.default_rng(1).normal(0, 0.1, (6, 4, 7, 1))
    q, step = intmath.quantize_weight8(w, 1)
    assert np.abs(q).max() == 127 and q.dtype == np.float32 and step.shape == (4,)
    assert np.array_equal(q, intmath.quantize_weight8(w.copy(), 1)[0])
    assert np.abs(q * step[None, :, None, None] - w).max() <= step.max() / 2 + 1e-12


def test_the_option_builds_8_bit_branches_that_track_the_float_ones():
    config = {"N1": 8, "N2": 16, "M": 32, "S": 8, "hs_steps": STEPS}
    state = numpy_weights.random_state("fasinet-h", config, seed=3)
    specs = Specs("fasinet-h", config, state)
    scale, mean = specs.hs_branches(32)
    assert isinstance(scale, hyper.Int8Branch) and isinstance(mean, hyper.Int8Branch)
    z = np.random.default_rng(4).integers(-3, 4, (1, 32, 3, 5)).astype(np.int32)
    med = state["entropy_bottleneck._medians"]
    means8, index8 = hyper.entropy_parameters(z, med, scale, mean, state["conditional.scale_table"])
    assert means8.shape == (1, 32, 12, 20) and index8.dtype == np.int16
    plain = Specs("fasinet-h", {k: v for k, v in config.items() if k != "hs_steps"}, state)
    means12, index12 = hyper.entropy_parameters(z, med, *plain.hs_branches(32), state["conditional.scale_table"])
    assert np.abs(means8 - means12).max() < 0.2
    assert np.mean(np.abs(index8.astype(int) - index12)) < 1.0


def test_the_option_is_checked():
    with pytest.raises(TypeError):
        archs.describe("fasinet-h", {"hs_steps": {"h_s_scale": [0.1, 1, 1], "h_s_mean": [0.125, 1, 1]}})
    with pytest.raises(TypeError):
        archs.describe("fasinet-h", {"hs_steps": {"h_s_scale": [0.125, 1]}})
    assert archs.describe("fasinet-h", {"hs_steps": STEPS}).config["hs_steps"] == STEPS


@pytest.mark.parametrize("hs_steps", [STEPS, None])
def test_two_threads_give_the_same_entropy_parameters(hs_steps):
    """The branches run on two threads where the engine has them: the same arithmetic, the same bits."""
    config = {"N1": 8, "N2": 16, "M": 32, "S": 8, **({"hs_steps": hs_steps} if hs_steps else {})}
    state = numpy_weights.random_state("fasinet-h", config, seed=5)
    codec = Specs("fasinet-h", config, state).latent_codec(32)
    z = np.random.default_rng(6).integers(-4, 5, (1, 32, 6, 9)).astype(np.int32)
    got = []
    for workers in (1, 2, 2):
        codec.workers = workers
        codec.forget()
        got.append(codec.entropy_parameters(z))
    for means, index in got[1:]:
        assert np.array_equal(means, got[0][0]) and np.array_equal(index, got[0][1])
