"""Slimmable layers and models (SlimCAE, slimmable FasiNet) and the lambda schedule."""
from __future__ import annotations

import csv
import json
import zlib

import numpy as np
import pytest
import torch
from torch import nn
import torch.nn.functional as F

from slimfast.coding import intmath
from slimfast.nn.layers import GDN
from slimfast.models import FasiNetH, FasiNetL, build
from slimfast.nn.slim import SlimConv2d, SlimConvTranspose2d, SlimGDNPlus, SwitchableGDN

torch.set_num_threads(1)

SLIM_ARCHS = ["slimcae", "slimcae-hyper", "slim-fasinet-l", "slim-fasinet-h"]
HYPER_ARCHS = ["slimcae-hyper", "slim-fasinet-h"]


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    out = {}
    for arch in SLIM_ARCHS:
        m = build(arch).eval()
        m.update()
        out[arch] = m
    return out


def _image(side: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(1, 3, side // 8, side // 8, generator=g)
    return (F.interpolate(low, size=(side, side), mode="bilinear", align_corners=False)
            + 0.05 * torch.rand(1, 3, side, side, generator=g)).clamp(0, 1)


# -- layers ----------------------------------------------------------------------------------------
def test_slim_convs_use_leading_block():
    torch.manual_seed(0)
    conv = SlimConv2d(12, 10, 5, stride=2)
    x = torch.randn(2, 7, 16, 16)
    ref = F.conv2d(x, conv.weight[:4, :7], conv.bias[:4], stride=2, padding=2)
    assert torch.equal(conv(x, 4), ref)
    tconv = SlimConvTranspose2d(12, 10, 5, stride=2)
    ref = F.conv_transpose2d(x, tconv.weight[:7, :4], tconv.bias[:4], stride=2, padding=2, output_padding=1)
    out = tconv(x, 4)
    assert out.shape == (2, 4, 32, 32) and torch.equal(out, ref)
    with pytest.raises(ValueError):
        conv(torch.randn(1, 13, 8, 8))


def test_gdn_kinds():
    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 5)
    sw = SwitchableGDN((8, 6, 4))
    assert torch.equal(sw(x), sw.gdns[1](x))
    plus = SlimGDNPlus((8, 6, 4))
    with torch.no_grad():
        plus.gamma.add_(0.1 * torch.rand_like(plus.gamma))
        plus.gamma_scale[1] = 1.3
        plus.beta_bias[1] = 0.4
    beta = plus.beta_reparam(plus.beta)[:6]
    gamma = plus.gamma_reparam(plus.gamma)[:6, :6]
    s = plus.scalar_reparam
    ref = x / torch.sqrt(F.conv2d(x * x, (s(plus.gamma_scale)[1] * gamma + s(plus.gamma_bias)[1])[:, :, None, None],
                                  s(plus.beta_scale)[1] * beta + s(plus.beta_bias)[1]))
    assert torch.allclose(plus(x), ref, atol=1e-6)
    with pytest.raises(ValueError):
        plus(torch.randn(1, 5, 2, 2))


def test_gdns_shared_by_widths_need_the_width_index():
    # a layer that does not slim (slim_hidden=False) has one GDN per width, all the same size
    torch.manual_seed(0)
    x = torch.randn(1, 6, 5, 5)
    for layer in (SwitchableGDN((6, 6, 6)), SlimGDNPlus((6, 6, 6))):
        with torch.no_grad():
            for p in layer.parameters():
                p.add_(0.2 * torch.rand_like(p))
        with pytest.raises(ValueError, match="width index"):
            layer(x)
        with pytest.raises(ValueError):
            layer(x, 3)
        with pytest.raises(ValueError):
            layer(torch.randn(1, 4, 5, 5), 0)
        outs = [layer(x, i) for i in range(3)]
        assert not torch.equal(outs[0], outs[1])
    assert torch.equal(SwitchableGDN((6, 6, 6)).gdns[2](x), SwitchableGDN((6, 6, 6))(x, 2))
    with pytest.raises(ValueError):
        SwitchableGDN((4, 6))  # widest first


# -- nested sub-networks -----------------------------------------------------------------------------
@pytest.mark.parametrize("gdn", ["switchable", "slim+"])
def test_slimcae_width48_is_the_sliced_network(gdn):
    torch.manual_seed(0)
    m = build("slimcae", {"gdn": gdn}).eval()
    c = 48
    x = _image(64)

    def norm(layer):
        if isinstance(layer, SwitchableGDN):
            return layer.gdns[layer.index[c]]
        g = GDN(c, inverse=layer.inverse)
        beta, gamma = layer.effective_params(c)
        g.effective_params = lambda: (beta, gamma)
        return g

    def conv(layer, cin, cout):
        if isinstance(layer, nn.ConvTranspose2d):
            ref = nn.ConvTranspose2d(cin, cout, layer.kernel_size, layer.stride, layer.padding, layer.output_padding,
                                     bias=layer.bias is not None)
            ref.weight.data = layer.weight.data[:cin, :cout].clone()
        else:
            ref = nn.Conv2d(cin, cout, layer.kernel_size, layer.stride, layer.padding, bias=layer.bias is not None)
            ref.weight.data = layer.weight.data[:cout, :cin].clone()
        if layer.bias is not None:
            ref.bias.data = layer.bias.data[:cout].clone()
        return ref

    a = m.g_a
    enc = nn.Sequential(conv(a[0], 3, c), norm(a[1]), conv(a[2], c, c), norm(a[3]), conv(a[4], c, c), norm(a[5]))
    s = m.g_s
    dec = nn.Sequential(norm(s[0]), conv(s[1], c, c), norm(s[2]), conv(s[3], c, c), norm(s[4]), conv(s[5], c, 3))
    with torch.no_grad():
        y = m.analysis(x, c)
        assert y.shape == (1, c, 4, 4)
        assert torch.allclose(y, enc(x), atol=1e-5)
        assert torch.allclose(m.synthesis(y, c), dec(y), atol=1e-5)
        # Weights outside the leading blocks do not matter at width 48.
        before = m(x, width=c)["x_hat"]
        for layer in list(a) + list(s):
            if isinstance(layer, nn.ConvTranspose2d):
                layer.weight[c:].normal_()
                if layer.out_channels > 3:
                    layer.weight[:, c:].normal_()
            elif isinstance(layer, nn.Conv2d):
                layer.weight[c:].normal_()
                if layer.in_channels > 3:
                    layer.weight[:, c:].normal_()
        assert torch.equal(m(x, width=c)["x_hat"], before)


# -- size and compute ----------------------------------------------------------------------------------
def test_slimcae_parameters_and_macs_match_design():
    m = build("slimcae")
    design = {192: (4.0e6, 47.9e3), 144: (2.3e6, 28.0e3), 96: (1.0e6, 13.4e3), 72: (0.6e6, 8.1e3), 48: (0.27e6, 4.1e3)}
    for w, (params, macs) in design.items():
        assert abs(m.num_parameters(w, entropy=False) / params - 1) < 0.03, w
        assert abs(m.macs_per_pixel(w) / macs - 1) < 0.03, w
        assert m.macs_per_pixel(w, "encode") + m.macs_per_pixel(w, "decode") == pytest.approx(m.macs_per_pixel(w))
    # The width's entropy model counts, the others do not.
    assert m.num_parameters(48) - m.num_parameters(48, entropy=False) == sum(p.numel() for p in m.entropy[4].parameters())


def test_slim_fasinet_full_width_is_fasinet():
    slim_l = build("slim-fasinet-l")
    assert slim_l.num_parameters(192) == FasiNetL().num_parameters()
    assert slim_l.macs_per_pixel(192, "encode") == pytest.approx(4122, abs=1)   # design: 4.1 kMAC/px
    assert slim_l.macs_per_pixel(192, "decode") == pytest.approx(5436, abs=1)   # design: 5.4 kMAC/px
    h = build("slim-fasinet-h")
    assert h.num_parameters(192) == sum(p.numel() for p in FasiNetH().parameters())
    assert h.macs_per_pixel(192, "decode") == pytest.approx(1.9e3, rel=0.03)
    macs = [slim_l.macs_per_pixel(w) for w in slim_l.widths]
    assert macs == sorted(macs, reverse=True)


# -- coding ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", SLIM_ARCHS)
def test_exact_symbol_round_trip_at_every_width(models, arch):
    m = models[arch]
    x = _image(64 if m.pad_multiple <= 64 else m.pad_multiple, seed=1)
    for w in m.widths:
        with torch.no_grad():
            sym = m.encode_symbols(x, w)
        strings = m.encode_strings(sym, w)
        assert len(strings) == m.num_strings
        deepest = sym[m.shape_key]
        assert deepest.shape[1] == w
        dec = m.decode_symbols(strings, tuple(deepest.shape[2:]), w)
        for k in sym:
            assert dec[k].dtype == sym[k].dtype and np.array_equal(dec[k], sym[k]), (arch, w, k)
        bits = 8 * sum(len(s) for s in strings)
        assert abs(m.estimate_bits(sym, w) - bits) <= 0.05 * bits + 128 * m.num_strings
        lat = m.compress(x, w)
        x_hat = m.decompress(lat.strings, lat.shape, w)
        assert x_hat.shape == x.shape and lat.width == w
        with torch.no_grad():
            ref = m.synthesize(sym, w).clamp(0, 1)
        assert torch.equal(x_hat, ref)
    with pytest.raises(ValueError):
        m.compress(x, 100)


@pytest.mark.parametrize("arch", HYPER_ARCHS)
def test_hyper_entropy_parameters_are_bit_exact(models, arch, tmp_path):
    from slimfast.models.weights import load_model, save_model

    m = models[arch]
    x = _image(64, seed=2)
    path = tmp_path / "w.safetensors"
    save_model(m, path)                       # floats stored as fp16: a "different machine"
    other = load_model(path)
    for w in (m.widths[0], m.widths[-1]):
        with torch.no_grad():
            sym = m.encode_symbols(x, w)
        means, index = m.entropy_parameters(sym["z"], w)
        assert means.shape == index.shape == sym["y"].shape
        # Fixed point: every mean is an integer number of 1/2^ACT_FRAC.
        assert np.array_equal(means * (1 << intmath.ACT_FRAC), np.rint(means * (1 << intmath.ACT_FRAC)))
        # Same result from the reloaded model (different float weights), under other thread counts.
        torch.set_num_threads(2)
        try:
            m2, i2 = other.entropy_parameters(sym["z"], w)
        finally:
            torch.set_num_threads(1)
        assert np.array_equal(means, m2) and np.array_equal(index, i2)
        strings = m.encode_strings(sym, w)
        dec = other.decode_symbols(strings, tuple(sym["z"].shape[2:]), w)
        assert np.array_equal(dec["y"], sym["y"]) and np.array_equal(dec["z"], sym["z"])
        # The integer path tracks the float path the model trains with.
        eb = m.z_entropy[m.widths.index(w)]
        with torch.no_grad():
            z_hat = torch.from_numpy(sym["z"].astype(np.float32)) + eb._medians[:w].view(1, w, 1, 1)
            f_mean = m.hyper_synthesis(z_hat, w)[1].double().numpy()
        assert np.abs(f_mean - means).max() < 0.05


def test_hyper_integer_path_uses_the_leading_block(models):
    m = models["slimcae-hyper"]
    w = 48
    branch = m.h_s_scale
    a = intmath.to_fixed(np.random.default_rng(0).normal(size=(w, 2, 2)))
    from slimfast.coding.hyper import run_branch
    from slimfast.engines.specs import Specs

    state = {k: v.numpy() for k, v in m.state_dict().items()}
    got = run_branch(a, Specs("slimcae-hyper", m.config, state).hs_branches(w)[0])
    ref = a
    for i, layer in enumerate(m for m in branch if isinstance(m, nn.ConvTranspose2d)):
        wi = getattr(branch, f"int_w{i}").numpy()[:w, :w]
        ref = intmath.conv_transpose(ref, wi, getattr(branch, f"int_s{i}").numpy()[:w],
                                     getattr(branch, f"int_b{i}").numpy()[:w], layer.stride, layer.padding,
                                     layer.output_padding)
        if i < 2:
            ref = intmath.relu(ref)
    assert np.array_equal(got, ref)


def test_update_freezes_every_width(models):
    for arch, m in models.items():
        ebs = m.entropy_bottlenecks()
        assert len(ebs) == len(m.widths) and all(eb.updated for eb in ebs)
        assert sorted(eb.channels for eb in ebs) == sorted(m.widths)


# -- training integration -------------------------------------------------------------------------
def _write_images(folder, n_train=4, n_val=2, side=48, fraction=0.3):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    got_t = got_v = 0
    i = 0
    while got_t < n_train or got_v < n_val:
        name = f"img{i}.png"
        i += 1
        val = zlib.crc32(name.encode()) % 1000 < fraction * 1000
        if (val and got_v >= n_val) or (not val and got_t >= n_train):
            continue
        got_v += val
        got_t += not val
        low = rng.uniform(0, 255, size=(side // 8, side // 8, 3))
        im = np.kron(low, np.ones((8, 8, 1))) + rng.normal(0, 8, size=(side, side, 3))
        Image.fromarray(im.clip(0, 255).astype(np.uint8)).save(folder / name)
    return fraction


def test_schedule_tiny_run_writes_its_log(tmp_path, monkeypatch):
    from slimfast.tools import schedule as sched
    from slimfast.models.weights import load_model

    frac = _write_images(tmp_path / "data")
    cfg = sched.ScheduleConfig(architecture="slimcae", model_config={"C": 16, "widths": [16, 12, 8]},
                               data=[str(tmp_path / "data")], out=str(tmp_path / "run"), lmbda=0.05,
                               trial_steps=1, max_tries=3, batch_size=2, patch_size=32, lr=1e-3,
                               threads=1, val_fraction=frac, progress=False)
    # Scripted validation (after init, then after each trial) so that the decisions are known:
    # pair (16, 12): slope 10 -> 8 (accept) -> 9 (rises: stop, roll back);
    # pair (12, 8): slope 5 -> 4 -> 3 -> 2 (three accepts: max_tries reached).
    def pts(p):
        return [dict(width=w, bpp=b, psnr=q) for w, (b, q) in zip((16, 12, 8), p)]
    script = iter([
        pts([(1.0, 30.0), (0.5, 25.0), (0.3, 24.0)]),   # init: slopes 10, 5
        pts([(1.0, 30.0), (0.5, 26.0), (0.3, 24.0)]),   # 8: accept
        pts([(1.0, 30.0), (0.5, 25.5), (0.3, 24.0)]),   # 9: rollback
        pts([(1.0, 30.0), (0.5, 26.0), (0.3, 25.2)]),   # pair 2 starts at 4 (rolled back eval): 4 accept
        pts([(1.0, 30.0), (0.5, 26.0), (0.3, 25.4)]),   # 3 accept
        pts([(1.0, 30.0), (0.5, 26.0), (0.3, 25.6)]),   # 2 accept
    ])
    monkeypatch.setattr(sched.Scheduler, "evaluate", lambda self: next(script))
    result = sched.schedule(cfg)
    run = tmp_path / "run"
    rows = list(csv.DictReader(open(run / "trials.csv")))
    assert [r["decision"] for r in rows] == ["accept", "accept", "stop-rollback", "accept", "accept", "accept"]
    assert "bpp@8" in rows[0] and "psnr@16" in rows[0] and rows[1]["slope"] == "8.0000"
    assert len((run / "trials.jsonl").read_text().splitlines()) == 6
    lm = json.loads((run / "lambdas.json").read_text())["lambdas"]
    assert lm == pytest.approx([0.05, 0.05 * 0.8, 0.05 * 0.8 ** 4])
    assert result["lambdas"] == lm
    model = load_model(run / "final.safetensors")
    assert model.widths == (16, 12, 8)


def test_schedule_real_evaluation_and_rollback(tmp_path):
    from slimfast.tools import schedule as sched

    frac = _write_images(tmp_path / "data")
    cfg = sched.ScheduleConfig(architecture="slimcae", model_config={"C": 16, "widths": [16, 8]},
                               data=[str(tmp_path / "data")], out=str(tmp_path / "run"), trial_steps=1,
                               max_tries=2, batch_size=2, patch_size=32, threads=1, val_fraction=frac,
                               progress=False)
    s = sched.Scheduler(cfg)
    before = {k: v.clone() for k, v in s.model.state_dict().items()}
    snap = s._snapshot()
    s.train_budget([0.01, 0.01], 1, 0.0)
    assert any(not torch.equal(before[k], v) for k, v in s.model.state_dict().items())
    s._restore(snap)
    assert all(torch.equal(before[k], v) for k, v in s.model.state_dict().items())
    ev = s.evaluate()
    assert [e["width"] for e in ev] == [16, 8] and all(np.isfinite(e["bpp"]) and e["psnr"] > 0 for e in ev)
    s.run()
    rows = list(csv.DictReader(open(tmp_path / "run" / "trials.csv")))
    assert 2 <= len(rows) <= 3 and rows[0]["phase"] == "init"


def test_schedule_cli_help_and_chord_slope():
    from slimfast.tools import schedule as sched

    text = sched.build_parser().format_help()
    for flag in ("--trial-steps", "--trial-minutes", "--on-stop", "--lambdas", "--max-tries", "--val-fraction"):
        assert flag in text
    assert sched.chord_slope({"bpp": 1.0, "psnr": 30.0}, {"bpp": 0.5, "psnr": 27.0}) == pytest.approx(6.0)
    assert sched.chord_slope({"bpp": 0.5, "psnr": 30.0}, {"bpp": 0.6, "psnr": 27.0}) == float("inf")
    # an undertrained wide width no better than the narrow one: not ordered, keep cutting
    assert sched.chord_slope({"bpp": 0.75, "psnr": 25.06}, {"bpp": 0.73, "psnr": 25.27}) == float("inf")


@pytest.mark.slow  # starts subprocesses or trains
def test_train_loop_runs_all_widths(tmp_path):
    from slimfast.tools.train import TrainConfig, train

    frac = _write_images(tmp_path / "data")
    cfg = TrainConfig(architecture="slim-fasinet-l", model_config={"N": 8, "M": 16, "widths": [16, 8]},
                      data=[str(tmp_path / "data")], out=str(tmp_path / "run"), lmbdas=[0.02, 0.01], steps=2,
                      batch_size=2, patch_size=32, threads=1, val_every=0, val_fraction=frac, progress=False)
    run = train(cfg)
    assert (run / "final.safetensors").exists()



@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("width_loss", ["sum", "log"])
def test_joint_loss_over_the_widths(width_loss):
    from slimfast.tools.train import RDObjective

    torch.manual_seed(0)
    model = build("slim-fasinet-l", {"N": 8, "M": 16, "widths": [16, 8]}).train()
    lmbdas = [0.02, 0.005]
    objective = RDObjective(model, 0.0, lmbdas, "mse", bf16=False, width_loss=width_loss)
    x = _image(32)
    torch.manual_seed(1)  # the same quantization noise for the loss and for each width's own terms
    loss, stats = objective(x)
    torch.manual_seed(1)
    per_width = []
    for w, lm in zip(model.widths, lmbdas):
        out = model(x, width=w)
        per_width.append(lm * F.mse_loss(out["x_hat"], x) * 255 ** 2
                         + sum(-torch.log2(p).sum() for p in out["likelihoods"].values()) / (32 * 32))
        assert float(per_width[-1].detach()) == pytest.approx(lm * stats[f"dist@{w}"] + stats[f"bpp@{w}"], rel=1e-5)
    expected = sum(torch.log(t) for t in per_width) if width_loss == "log" else sum(per_width)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    # the log weighs each width's gradient by 1 / L_i (the sum by 1)
    weighted = sum(t / t.detach() for t in per_width) if width_loss == "log" else sum(per_width)
    params = [p for p in model.parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, params, allow_unused=True)
    want = torch.autograd.grad(weighted, params, allow_unused=True)
    pairs = [(g, h) for g, h in zip(got, want) if g is not None or h is not None]
    assert pairs and all(g is not None and h is not None and torch.allclose(g, h, rtol=1e-4, atol=1e-6)
                         for g, h in pairs)


def test_width_loss_is_checked():
    from slimfast.tools.train import RDObjective, build_parser

    with pytest.raises(SystemExit):
        RDObjective(build("slim-fasinet-l", {"N": 8, "M": 16, "widths": [16, 8]}), 0.0, [0.02, 0.01], "mse", False, "mean")
    assert build_parser().parse_args(["--out", "r", "--width-loss", "log"]).width_loss == "log"
    assert build_parser().parse_args(["--out", "r"]).width_loss == "sum"

def test_slim_fasinet_l_warm_starts_from_fasinet_l_weights(tmp_path):
    from slimfast.models import FasiNetL as _FasiNetL
    from slimfast.models.weights import load_for_training, save_model

    torch.manual_seed(3)
    src = _FasiNetL().eval()
    src.update()
    path = tmp_path / "l.safetensors"
    save_model(src, path, half=False)
    m = load_for_training(path, "slim-fasinet-l").eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(m.analysis(x, 192), src.analysis(x))
        y = torch.randn(1, 192, 4, 4)
        assert torch.equal(m.synthesis(y, 192), src.synthesis(y))
        assert m.analysis(x, 48).shape[1] == 48
    # A narrower model takes the leading blocks too; other architectures are refused.
    small = load_for_training(path, "slim-fasinet-l", {"N": 48, "M": 96, "widths": [96]})
    assert torch.equal(small.g_a[0].weight, src.g_a[0].weight[:48])
    with pytest.raises(ValueError):
        load_for_training(path, "slimcae")


H3 = {"N1": 96, "N2": 96, "M": 192, "S": 32, "K": 7, "final_gdn": False}  # fasinet-h-mse version 3


def test_slim_fasinet_h_warm_starts_from_fasinet_h_weights(tmp_path):
    from slimfast.models.weights import load_for_training, load_model, save_model

    torch.manual_seed(4)
    src = FasiNetH(**H3).eval()
    with torch.no_grad():  # not the identity IQR / flat entropy models of a fresh model
        for p in src.parameters():
            p.add_(0.01 * torch.randn_like(p))
    src.update()
    path = tmp_path / "h.safetensors"
    save_model(src, path, half=False)
    cfg = dict(H3, slim_hidden=False, widths=[192, 96, 48])
    m = load_for_training(path, "slim-fasinet-h", cfg).eval()
    assert m.config == dict(cfg, gdn="switchable", distribution="logistic")
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        ref, out = src(x), m(x, width=192)
        assert torch.equal(out["x_hat"], ref["x_hat"])
        assert all(torch.equal(out["likelihoods"][k], ref["likelihoods"][k]) for k in "yz")
        # every width keeps the full hidden transforms and takes the leading latent channels
        y = m.analysis(x, 96)
        assert y.shape[1] == 96 and torch.equal(y, src.analysis(x)[:, :96])
        assert m.g_s[1].gdns[2].beta.shape == (32,)
    m.update()
    save_model(m, tmp_path / "slim.safetensors", half=False)
    back = load_model(tmp_path / "slim.safetensors")
    assert back.config == m.config and back.arch.slim_hidden is False
    # kernels and final GDN must match: the paper's FasiNet-H does not fit
    with pytest.raises(ValueError):
        load_for_training(path, "slim-fasinet-h", {"widths": [192, 96]})
    with pytest.raises(ValueError):
        load_for_training(path, "slim-fasinet-l")


def test_widest_width_of_slim_fasinet_h_is_a_fasinet_h_that_codes_identically(tmp_path):
    from slimfast.models.weights import load_for_training, save_model

    torch.manual_seed(6)
    m = build("slim-fasinet-h", dict(H3, slim_hidden=False, widths=[192, 96, 48])).eval()
    with torch.no_grad():  # every width's GDNs and entropy models differ, so picking the wrong one shows
        for p in m.parameters():
            p.add_(0.02 * torch.randn_like(p))
    m.update()
    path = tmp_path / "slim.safetensors"
    save_model(m, path, half=False)
    h = load_for_training(path, "fasinet-h").eval()
    assert isinstance(h, FasiNetH) and h.config == dict(H3, distribution="logistic")
    x = _image(128, seed=3)
    with torch.no_grad():
        ref, out = m(x, width=192), h(x)
        assert torch.equal(out["x_hat"], ref["x_hat"])
        assert all(torch.equal(out["likelihoods"][k], ref["likelihoods"][k]) for k in "yz")
        sym = h.encode_symbols(x)
        assert h.encode_strings(sym) == m.encode_strings(m.encode_symbols(x, 192), 192)
    with pytest.raises(ValueError, match="takes their config"):
        load_for_training(path, "fasinet-h", {"K": 5})
    with pytest.raises(ValueError, match="slim_hidden=False"):
        build("slim-fasinet-h", dict(H3, widths=[192, 96])).full_width_state()


def test_slim_fasinet_h_full_hidden_costs():
    h = build("slim-fasinet-h", dict(H3, slim_hidden=False))
    assert h.num_parameters(192) == sum(p.numel() for p in FasiNetH(**H3).parameters())
    enc = [h.macs_per_pixel(w, "encode") for w in h.widths]
    dec = [h.macs_per_pixel(w, "decode") for w in h.widths]
    assert enc == sorted(enc, reverse=True) and dec == sorted(dec, reverse=True)
    assert dec[-1] < 0.5 * dec[0]  # the decoder still gets much cheaper
    assert build("slim-fasinet-h").config == {"N1": 48, "N2": 96, "M": 192, "S": 32, "widths": [192, 144, 96, 72, 48],
                                               "gdn": "switchable", "distribution": "logistic"}


def test_sort_channels_keeps_the_full_width_function_and_fronts_the_rate(tmp_path):
    from slimfast.models.weights import load_for_training, save_model

    torch.manual_seed(5)
    src = FasiNetH(**H3).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.02 * torch.randn_like(p))
    src.update()
    path = tmp_path / "h.safetensors"
    save_model(src, path, half=False)
    m = load_for_training(path, "slim-fasinet-h", dict(H3, slim_hidden=False, widths=[192, 96, 48])).eval()
    x = _image(128, seed=2)
    with torch.no_grad():
        ref = m(x, width=192)
    share = m.sort_channels(x)
    assert share["narrow_share_after"] > share["narrow_share_before"]
    with torch.no_grad():
        out = m(x, width=192)
        assert torch.allclose(out["x_hat"], ref["x_hat"], atol=1e-5)
        for k in "yz":  # the same likelihoods, permuted
            a, b = out["likelihoods"][k], ref["likelihoods"][k]
            assert torch.allclose(a.sum(dim=1), b.sum(dim=1), rtol=1e-4)
            assert torch.allclose(a.log2().sum(), b.log2().sum(), rtol=1e-5)
        y_bits = (-torch.log2(out["likelihoods"]["y"])).sum(dim=(0, 2, 3))
        assert torch.all(y_bits[:-1] >= y_bits[1:] - 1e-3 * y_bits.max())  # sorted by rate
        # the narrow widths' entropy models are the full one's leading block
        assert torch.equal(m.z_entropy[2].quantiles, m.z_entropy[0].quantiles[:48])
        x48 = m(x, width=48)["x_hat"]
    assert x48.shape == x.shape
    with pytest.raises(ValueError):
        build("slim-fasinet-h").sort_channels(x)



@pytest.mark.slow  # starts subprocesses or trains
def test_train_sort_channels_flag(tmp_path, capsys):
    from slimfast.tools.train import TrainConfig, train
    from slimfast.models.weights import save_model

    torch.manual_seed(6)
    src = FasiNetH(N1=16, N2=16, M=32, S=8, K=7, final_gdn=False).eval()
    src.update()
    save_model(src, tmp_path / "h.safetensors", half=False)
    frac = _write_images(tmp_path / "data", side=96)
    common = dict(data=[str(tmp_path / "data")], lmbdas=[0.02, 0.01], steps=1, batch_size=2, patch_size=64,
                  threads=1, val_every=0, val_fraction=frac, progress=False, sort_channels=True,
                  init=str(tmp_path / "h.safetensors"))
    cfg = TrainConfig(architecture="slim-fasinet-h", out=str(tmp_path / "run"), **common,
                      model_config={"N1": 16, "N2": 16, "M": 32, "S": 8, "K": 7, "final_gdn": False,
                                    "slim_hidden": False, "widths": [32, 16]})
    assert (train(cfg) / "final.safetensors").exists()
    assert "sorted channels on" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="no channel order"):
        train(TrainConfig(architecture="slim-fasinet-l", out=str(tmp_path / "run2"),
                          model_config={"N": 8, "M": 16, "widths": [16, 8]}, **dict(common, init=None)))
