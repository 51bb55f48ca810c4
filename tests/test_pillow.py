import numpy as np
from PIL import Image

import slimfast  # noqa: F401  (registers the plugin)


def test_pillow_open_and_save(model_dir, small_rgb, tmp_path):
    p = tmp_path / "x.sfi"
    Image.fromarray(small_rgb).save(p, model="test-h")
    with Image.open(p) as im:
        assert im.format == "SFI" and im.size == (56, 40) and im.mode == "RGB"
        a = np.asarray(im)
    assert a.shape == (40, 56, 3)
    direct = np.asarray(slimfast.decompress(p.read_bytes()))
    assert np.array_equal(a, direct)


def test_pillow_save_with_quality_and_alpha(model_dir, small_rgb, tmp_path):
    rgba = Image.fromarray(np.dstack([small_rgb, small_rgb[:, :, 1]]), "RGBA")
    p = tmp_path / "a.sfi"
    rgba.save(p, model="test-l", quality=10)
    with Image.open(p) as im:
        im.load()
        assert im.mode == "RGBA"
        assert np.array_equal(np.asarray(im)[:, :, 3], small_rgb[:, :, 1])
