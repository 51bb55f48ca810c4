import pytest
import torch

from slimfast.archs import grammar as g
from slimfast.nn.layers import GDN
from slimfast.models import FasiNetH, FasiNetL
from slimfast.nn.slim import SlimConvTranspose2d, SlimIQR


@pytest.mark.parametrize("cls,expected", [(FasiNetL, 1.33e6), (FasiNetH, 2.2e6)])
def test_parameter_counts_match_design(cls, expected):
    n = sum(p.numel() for p in cls().parameters())
    assert abs(n - expected) / expected < 0.02, n


def test_isd_downsamples_4x_per_axis_with_two_1d_layers():
    m = FasiNetL()
    isd = [layer for layer in m.arch.analysis(192) if isinstance(layer, g.Conv)][1:]
    assert [(c.kernel, c.stride) for c in isd] == [((9, 1), (4, 1)), ((1, 9), (1, 4))]
    with torch.no_grad():
        assert m.run(m.arch.analysis(192)[2:], torch.zeros(1, 96, 64, 48)).shape == (1, 192, 16, 12)


def test_isu_mirrors_isd():
    m = FasiNetH()
    scale, _ = m.arch.hyper_synthesis(192)
    tconvs = [layer for layer in scale.layers if isinstance(layer, g.TConv)]
    assert [(t.kernel, t.stride) for t in tconvs] == [((7, 1), (4, 1)), ((1, 7), (1, 4))]
    with torch.no_grad():
        assert m.run(scale.layers[:3], torch.zeros(1, 192, 4, 6)).shape == (1, 192, 16, 24)


@pytest.mark.parametrize("k,s", [(7, 4), (5, 4), (9, 4), (5, 2)])
def test_tconv_output_is_exactly_stride_times_input(k, s):
    assert SlimConvTranspose2d(2, 3, k, s)(torch.zeros(1, 2, 5, 7)).shape == (1, 3, 5 * s, 7 * s)


def test_gdn_matches_its_formula_and_params_stay_non_negative():
    gdn, igdn = GDN(4), GDN(4, inverse=True)
    x = torch.randn(2, 4, 5, 5)
    beta, gamma = gdn.effective_params()
    norm = torch.sqrt(beta.view(1, 4, 1, 1) + torch.einsum("ij,bjhw->bihw", gamma, x * x))
    assert torch.allclose(gdn(x), x / norm, atol=1e-6)
    assert torch.allclose(igdn(x), x * norm, atol=1e-6)
    with torch.no_grad():
        gdn.beta.fill_(-5.0)
        gdn.gamma.fill_(-5.0)
    beta, gamma = gdn.effective_params()
    assert (beta > 0).all() and (gamma >= 0).all()


def test_iqr_starts_as_identity_and_bounds_its_residual():
    iqr = SlimIQR(16)
    y = torch.randn(1, 16, 6, 6)
    assert torch.equal(iqr(y), y)
    torch.nn.init.normal_(iqr.conv3.weight, std=10.0)
    assert (iqr.residual(y).abs() <= 0.5).all()
    assert iqr.conv1.kernel_size == (7, 1) and iqr.conv2.kernel_size == (1, 7) and iqr.conv3.kernel_size == (1, 1)


def test_forward_returns_reconstruction_and_likelihoods():
    torch.manual_seed(0)
    for cls in (FasiNetL, FasiNetH):
        m = cls().train()
        out = m(torch.rand(2, 3, 128, 64))
        assert out["x_hat"].shape == (2, 3, 128, 64)
        for lik in out["likelihoods"].values():
            assert (lik > 0).all() and (lik <= 1).all()
        loss = out["x_hat"].mean() + sum(torch.log(lik).sum() for lik in out["likelihoods"].values())
        loss.backward()
        assert m.g_a[0].weight.grad is not None


@pytest.mark.parametrize("cls,enc,dec", [(FasiNetL, 4.1, 5.4), (FasiNetH, None, 1.9),
                                         # fasinet-h-mse version 3's options (docs/architecture.md)
                                         (lambda: FasiNetH(N1=96, N2=96, K=7, final_gdn=False), 5.17, 2.59)])
def test_macs_per_pixel_match_design(cls, enc, dec):
    from slimfast.tools.complexity import count

    c = count(cls())
    if enc is not None:
        assert abs(c["kmac_encode"] - enc) / enc < 0.03
    assert abs(c["kmac_decode"] - dec) / dec < 0.03


def test_fasinet_h_warm_starts_from_fasinet_l():
    torch.manual_seed(0)
    src = FasiNetL().eval()
    h = FasiNetH(N1=96, N2=96, K=7, final_gdn=False)
    h.load_unslimmed(src.state_dict(), "fasinet-l")
    h.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(h.analysis(x), src.analysis(x))
        y = src.analysis(x)
        assert torch.equal(h.iqr(y), src.iqr(y))
    assert h.g_s[0].kernel_size == (7, 7) and h.config["K"] == 7 and h.config["final_gdn"] is False
    assert FasiNetH(**h.config).config == h.config
    # the paper's FasiNet-H keeps its original config keys (files already shipped name it so)
    assert set(FasiNetH().config) == {"N1", "N2", "M", "S", "distribution"}


@pytest.mark.parametrize("kw,arch", [({}, "fasinet-l"),  # final GDN and N1 = 48: g_a does not fit
                                     ({"N1": 96, "final_gdn": True}, "fasinet-l"),
                                     ({"N1": 96, "final_gdn": False}, "slimcae")])
def test_fasinet_h_warm_start_refuses_misfits(kw, arch):
    h = FasiNetH(**kw)
    with pytest.raises(ValueError):
        h.load_unslimmed(FasiNetL().state_dict(), arch)
