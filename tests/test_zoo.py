"""The bundled models: pinned weights, honest cards."""
import json

import pytest

from slimfast import zoo
from slimfast.weights import file_digest, read_metadata

BUNDLED = sorted(zoo.BUNDLED_DIR.glob("*.json"))


def test_there_are_bundled_models_and_exactly_one_default():
    cards = [json.loads(p.read_text()) for p in BUNDLED]
    assert cards, "no bundled models"
    assert sum(bool(c.get("default")) for c in cards) == 1


@pytest.mark.parametrize("card_path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_card_pins_its_weights_and_reports_measured_points(card_path):
    card = json.loads(card_path.read_text())
    weights = card_path.with_suffix(".safetensors")
    assert weights.exists()
    assert file_digest(weights) == card["sha256"], "shipped weights changed under the same version"
    meta = read_metadata(weights)
    assert meta["name"] == card["name"] and meta["version"] == card["version"]
    assert meta["architecture"] == card["architecture"]
    for key in ("family", "params", "train_steps", "data", "points"):
        assert key in card
    assert card["train_steps"] > 0 and card["points"]
    for p in card["points"]:
        assert p["bpp"] > 0 and p["psnr"] > 0
    assert "research use" in card["data"]


def test_weights_are_safetensors_and_small():
    total = sum(p.stat().st_size for p in zoo.BUNDLED_DIR.glob("*.safetensors"))
    assert total < 25 * 2 ** 20
    assert not list(zoo.BUNDLED_DIR.glob("*.pt")) and not list(zoo.BUNDLED_DIR.glob("*.pth"))
