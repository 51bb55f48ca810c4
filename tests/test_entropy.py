import numpy as np
import pytest
import torch

from slimfast.coding import coder, intmath
from slimfast.coding.latent_codecs import FactorizedCodec, Tables
from slimfast.nn.entropy import ConditionalEntropyModel, EntropyBottleneck
from slimfast.errors import SlimfastError


def _tables(rng, T=4, L=9):
    freqs = np.zeros((T, L + 1), np.int32)
    lengths = rng.integers(1, L + 1, size=T)
    offsets = rng.integers(-5, 1, size=T)
    for t in range(T):
        pmf = np.exp(-np.abs(np.arange(lengths[t]) + offsets[t]))
        freqs[t, : lengths[t] + 1] = coder.pmf_to_freqs(pmf, 1e-3)
    return freqs, lengths, offsets


def test_pmf_to_freqs_is_a_complete_positive_table():
    f = coder.pmf_to_freqs(np.array([0.5, 0.5 - 1e-12, 0.0, 1e-30]), 0.0)
    assert f.sum() == coder.TOTAL and f.min() >= 1 and f.size == 5


def test_round_trip_is_exact_for_any_int32_including_escapes():
    rng = np.random.default_rng(0)
    freqs, lengths, offsets = _tables(rng)
    vals = np.round(rng.laplace(scale=3, size=(3, 17, 23))).astype(np.int32)
    vals[0, 0, 0], vals[1, 2, 3], vals[2, 5, 5] = 2 ** 31 - 1, -(2 ** 31), 100000
    idx = rng.integers(0, len(lengths), size=vals.shape)
    data = coder.encode(vals, idx, freqs, lengths, offsets)
    assert np.array_equal(coder.decode(data, idx, freqs, lengths, offsets), vals)


@pytest.mark.parametrize("small_run,block", [(2048, 1 << 16), (0, 1), (10 ** 9, 10 ** 9), (7, 50)])
def test_the_stream_does_not_depend_on_how_tables_are_batched(monkeypatch, small_run, block):
    # Many small tables (a hyperprior's z) and a few large ones, with escapes in both: batching
    # tables into vectorized blocks is an implementation detail, never a format change.
    rng = np.random.default_rng(1)
    freqs, lengths, offsets = _tables(rng, T=300)
    idx = np.concatenate([rng.integers(0, 300, 6000), np.full(5000, 7), np.full(3000, 11)])
    rng.shuffle(idx)
    vals = np.round(rng.laplace(scale=3, size=idx.size)).astype(np.int32)
    vals[rng.integers(0, idx.size, 40)] = rng.integers(-(2 ** 31), 2 ** 31 - 1, 40)
    reference = coder.encode(vals, idx, freqs, lengths, offsets)
    monkeypatch.setattr(coder, "SMALL_RUN", small_run)
    monkeypatch.setattr(coder, "BLOCK_SYMBOLS", block)
    assert coder.encode(vals, idx, freqs, lengths, offsets) == reference
    assert np.array_equal(coder.decode(reference, idx, freqs, lengths, offsets), vals)


def test_code_length_matches_ideal_estimate():
    rng = np.random.default_rng(1)
    freqs, lengths, offsets = _tables(rng, T=3, L=12)
    idx = rng.integers(0, 3, size=200000)
    vals = np.empty(idx.size, np.int64)
    for t in range(3):  # sample from each table's own distribution (no escapes)
        n = int(lengths[t])
        p = freqs[t, :n].astype(np.float64)
        sel = idx == t
        vals[sel] = rng.choice(n, size=sel.sum(), p=p / p.sum()) + offsets[t]
    data = coder.encode(vals, idx, freqs, lengths, offsets)
    est = coder.estimate_bits(vals, idx, freqs, lengths, offsets) / 8
    assert abs(len(data) - est) / est < 0.005


@pytest.mark.parametrize("mutate", ["truncate", "garbage_tail", "count"])
def test_malformed_streams_raise_the_clear_error(mutate):
    rng = np.random.default_rng(2)
    freqs, lengths, offsets = _tables(rng)
    vals = rng.integers(-3, 3, size=500).astype(np.int32)
    vals[7] = 999  # one escape
    idx = rng.integers(0, 4, size=500)
    data = coder.encode(vals, idx, freqs, lengths, offsets)
    bad = {"truncate": data[:-3], "garbage_tail": data + b"\x01\x02", "count": b"\xff\xff\xff\x0f" + data[1:]}[mutate]
    with pytest.raises(SlimfastError):
        coder.decode(bad, idx, freqs, lengths, offsets)


def test_entropy_bottleneck_tables_follow_the_learned_density():
    torch.manual_seed(0)
    eb = EntropyBottleneck(4)
    opt = torch.optim.Adam(eb.parameters(), lr=1e-2)
    for _ in range(300):  # fit the density to N(0, 2^2) plus the quantile loss
        y = torch.randn(1, 4, 16, 16) * 2
        eb.train()
        _, lik = eb(y)
        loss = -torch.log2(lik).mean() + eb.aux_loss() * 1e-2
        opt.zero_grad()
        loss.backward()
        opt.step()
    eb.eval()
    eb.update()
    freqs, lengths, offsets = eb.tables()
    assert (freqs[np.arange(4), lengths] >= 1).all()  # escape symbol present
    for c in range(4):
        assert freqs[c, : lengths[c] + 1].sum() == coder.TOTAL
    codec = FactorizedCodec(4, eb._medians.numpy(), Tables(freqs, lengths, offsets))
    y = (torch.randn(1, 4, 32, 32) * 2).numpy()
    sym = codec.quantize_tensor(y)
    assert np.array_equal(sym, torch.round(torch.from_numpy(y) - eb._medians.view(1, 4, 1, 1)).int().numpy())
    assert np.array_equal(codec.decode_tensor(codec.encode_tensor(sym), sym.shape[2:]), sym)
    # A unit-step quantized N(0, 4) has ~3.05 bits/symbol: the learned model is close to it.
    assert 3.0 < codec.bits_tensor(sym) / sym.size < 3.3


def test_training_forward_uses_noise_for_rate_and_rounding_for_the_decoder():
    eb = EntropyBottleneck(2).train()
    y = torch.full((1, 2, 4, 4), 0.3, requires_grad=True)
    y_hat, lik = eb(y)
    med = eb.medians().view(1, 2, 1, 1)
    assert torch.allclose(y_hat, torch.round(y - med) + med)
    y_hat.sum().backward()
    assert torch.allclose(y.grad, torch.ones_like(y))  # straight-through


@pytest.mark.parametrize("dist", ["logistic", "gaussian"])
def test_conditional_tables_and_likelihoods(dist):
    gc = ConditionalEntropyModel(dist)
    gc.update()
    freqs, lengths, offsets = gc.tables()
    assert freqs.shape[0] == 64 and np.all(offsets == -(lengths // 2))
    assert np.isclose(float(gc.scale_table[0]), 0.11) and np.isclose(float(gc.scale_table[-1]), 256)
    v = torch.arange(-50, 51, dtype=torch.float32)
    total = gc.likelihood(v, torch.full_like(v, 3.0)).sum()
    assert abs(float(total) - 1) < 1e-4
    idx = intmath.scale_index(np.array([0.01, 0.11, 0.1100001, 1.0, 1e6]), gc.scale_table.numpy())
    assert list(idx[[0, 1, 4]]) == [0, 0, 63] and idx[2] == 1
    rng = np.random.default_rng(0)
    sym = rng.integers(-20, 20, size=(1, 8, 9, 9)).astype(np.int32)
    index = rng.integers(0, 64, size=sym.shape)
    assert np.array_equal(coder.decode(coder.encode(sym, index, freqs, lengths, offsets), index, freqs, lengths,
                                       offsets), sym)


def test_scale_index_by_table_lookup_equals_the_binary_search_everywhere():
    """The fixed-point lookup (the hyperprior's fast path) picks exactly the table the float64
    comparison picks, for every integer from below 0 to past the top, and at the clip limits."""
    for table in (np.exp(np.linspace(np.log(0.11), np.log(256), 64)), np.array([0.11, 0.5, 1.0, 7.25])):
        lut = intmath.scale_index_lut(table)
        v = np.arange(-600, lut.size + 600, dtype=np.float64)
        v = np.concatenate([v, [-(2.0 ** intmath.ACT_CLIP), 2.0 ** intmath.ACT_CLIP]])
        ref = intmath.scale_index(intmath.from_fixed(v), table)
        assert np.array_equal(intmath.scale_index_fixed(v, lut), ref)
        edges = np.rint(table * (1 << intmath.ACT_FRAC))  # the integers next to each threshold
        near = np.concatenate([edges - 1, edges, edges + 1])
        assert np.array_equal(intmath.scale_index_fixed(near, lut), intmath.scale_index(intmath.from_fixed(near), table))


def test_the_overread_check_never_refuses_a_valid_stream():
    """coder.decode refuses a stream whose symbols carry more than its words hold, each symbol
    priced at the least constriction can spend on it: valid streams must always pass, for
    tables of every shape and for the costliest sequences (every symbol the rarest entry)."""
    rng = np.random.default_rng(7)
    for trial in range(150):
        t_count, width = int(rng.integers(1, 5)), int(rng.integers(1, 200))
        lengths = rng.integers(1, width + 1, size=t_count).astype(np.int32)
        freqs = np.zeros((t_count, width + 1), np.int32)
        for t in range(t_count):
            p = rng.dirichlet(np.full(lengths[t], [0.05, 1.0, 20.0][trial % 3]))
            freqs[t, : lengths[t] + 1] = coder.pmf_to_freqs(p, float(rng.uniform(0, 1e-3)))
        rows = rng.integers(0, t_count, size=int(rng.integers(1, 5000)))
        rarest = np.array([np.argmin(np.where(f > 0, f, 1 << 30)) for f in freqs])
        vals = (rarest[rows] if trial % 2 else rng.integers(0, lengths[rows])).astype(np.int32)
        offsets = np.zeros(t_count, np.int32)
        data = coder.encode(vals, rows, freqs, lengths, offsets)
        assert np.array_equal(coder.decode(data, rows, freqs, lengths, offsets), vals)
