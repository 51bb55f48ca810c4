"""Quantization-aware training of the 8-bit hyper-synthesis: training sees what coding computes."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import slimfast  # noqa: E402
from slimfast.codec import pad_image, to_input  # noqa: E402
from slimfast.models.weights import load_model  # noqa: E402
from slimfast.tools.training.qat import fake_quantize_hs  # noqa: E402


@pytest.mark.parametrize("name", ["fasinet-h-mse-q1", "fasinet-h-mse-q4"])  # int8 and fp16 weight storage
def test_fake_quantized_hs_matches_the_exact_8bit_path_and_leaves_the_weights(sample_rgb, name):
    info = slimfast.zoo.get(name)
    model = load_model(info.path).eval()
    coded = slimfast.load(info.name, threads=1).model
    lat = coded.analyze(to_input(pad_image(sample_rgb[:192, :256], coded.pad_multiple)))
    codec = coded.codec(None)
    z = codec.z.quantize_tensor(lat["z"])
    means, _ = codec.entropy_parameters(z)
    z_hat = torch.from_numpy((z + codec.z._median).astype(np.float32))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        _, float_means = model.hyper_synthesis(z_hat)
        handles = fake_quantize_hs(model)
        _, qat_means = model.hyper_synthesis(z_hat)
        assert set(model.state_dict()) == set(before)  # checkpoints see the plain parameters
        for h in handles:
            h.remove()
        _, again = model.hyper_synthesis(z_hat)
    # The exact path up to float32 sums, except where an activation sits within float32 noise of a
    # rounding tie, which moves a handful of means by one step's effect
    off = np.abs(qat_means.numpy() - means)
    assert (off > 1e-4).mean() < 1e-3 and off.max() < 0.05
    float_off = np.abs(float_means.numpy() - means)
    assert np.median(float_off) > 100 * max(np.median(off), 1e-9) and float_off.max() > 0.1
    assert torch.equal(again, float_means)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_gradients_reach_the_hs_weights_through_the_rounding():
    model = load_model(slimfast.zoo.get("fasinet-h-mse-q1").path).train()
    fake_quantize_hs(model)
    z_hat = torch.randn(1, model.config["S"] if "S" in model.config else 32, 2, 3) * 4
    scale, mean = model.hyper_synthesis(z_hat.round())
    (scale.sum() + mean.sum()).backward()
    grads = [m.weight.grad for m in model.h_s_scale.modules() if isinstance(m, torch.nn.modules.conv._ConvNd)]
    assert all(g is not None and torch.isfinite(g).all() and g.abs().sum() > 0 for g in grads)


def test_qat_needs_the_8bit_option():
    from slimfast.models import build

    with pytest.raises(SystemExit, match="--qat-hs8 needs"):
        fake_quantize_hs(build("fasinet-h", {}))


def test_qat_from_float_weights_calibrates_the_steps_first(tmp_path, sample_rgb):
    from PIL import Image

    from slimfast.models import build
    from slimfast.models.weights import save_model
    from slimfast.tools.training.qat import with_calibrated_hs

    shipped = load_model(slimfast.zoo.get("fasinet-h-mse-q1").path)
    plain = build("fasinet-h", {k: v for k, v in shipped.config.items() if k != "hs_steps"})
    plain.load_state_dict(shipped.state_dict())
    weights = tmp_path / "float.safetensors"
    save_model(plain, weights, storage="fp32")
    images = []
    for i, box in enumerate(((0, 0, 192, 128), (300, 200, 492, 328))):
        images.append(tmp_path / f"{i}.png")
        Image.fromarray(sample_rgb).crop(box).save(images[-1])
    model = with_calibrated_hs(load_model(weights), str(weights), images)
    steps = model.config["hs_steps"]
    assert set(steps) == {"h_s_scale", "h_s_mean"} and all(len(v) == 3 and min(v) > 0 for v in steps.values())
    assert all(torch.equal(v, plain.state_dict()[k]) for k, v in model.state_dict().items())
    fake_quantize_hs(model)  # now accepted
