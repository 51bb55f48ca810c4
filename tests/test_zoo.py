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


# The bundled weights travel with the repository to a lent GPU beside a training set (64 MiB in
# all) and keep the repository under about 40 MiB. The budget grew from 25 to 32 MiB when the
# slimmable models shipped; int8 storage (slimfast.storage) is how further models fit.
WEIGHTS_BUDGET = 32 * 2 ** 20


def test_weights_are_safetensors_and_small():
    total = sum(p.stat().st_size for p in zoo.BUNDLED_DIR.glob("*.safetensors"))
    assert total < WEIGHTS_BUDGET
    assert not list(zoo.BUNDLED_DIR.glob("*.pt")) and not list(zoo.BUNDLED_DIR.glob("*.pth"))


SLIMMABLE = [p for p in BUNDLED if json.loads(p.read_text()).get("widths")]


@pytest.mark.parametrize("card_path", SLIMMABLE, ids=[p.stem for p in SLIMMABLE])
def test_slimmable_models_give_distinct_points_rising_with_width(card_path):
    card = json.loads(card_path.read_text())
    pts = sorted(card["points"], key=lambda p: p["width"])
    assert [p["width"] for p in pts] == sorted(card["widths"]) and len(pts) >= 5
    assert all(a["bpp"] < b["bpp"] and a["psnr"] < b["psnr"] for a, b in zip(pts, pts[1:])), pts
    assert card.get("lambdas") and len(card["lambdas"]) == len(card["widths"])
    assert card.get("default_width", max(card["widths"])) in card["widths"]


@pytest.mark.parametrize("card_path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_compact_storage_states_its_measured_cost(card_path):
    card = json.loads(card_path.read_text())
    assert read_metadata(card_path.with_suffix(".safetensors")).get("storage", "fp16") == card.get("storage", "fp16")
    if card.get("storage", "fp16") != "fp16":
        cost = card["storage_cost"]
        assert len(cost["fp16_points"]) == len(card["points"]) and "mean_psnr_change_db" in cost


def test_release_chain_sums_stages_and_keeps_the_schedule(tmp_path):
    from slimfast.release import chain_info

    warm, sched, final = (tmp_path / n for n in ("warm", "sched", "final"))
    for d in (warm, sched, final):
        d.mkdir()
    (warm / "summary.json").write_text(json.dumps({"steps": 100, "minutes": 1.5, "lmbdas": [0.05, 0.05]}))
    (sched / "lambdas.json").write_text(json.dumps({"steps": 40, "minutes": 0.5, "trials": 3, "on_stop": "rollback",
                                                    "lambdas": [0.05, 0.02], "validation": [{"width": 8}]}))
    (final / "summary.json").write_text(json.dumps({"steps": 10, "minutes": 2.0, "lmbdas": [0.05, 0.02]}))
    info = chain_info([warm, sched], final)
    assert info["train_steps"] == 150 and info["train_minutes"] == 4.0
    assert [s["run"] for s in info["training_chain"]] == ["warm", "sched", "final"]
    assert info["lambda_schedule"]["lambdas"] == [0.05, 0.02] and info["lambda_schedule"]["on_stop"] == "rollback"
