"""The held-out training images of the generalization check (slimfast/data/heldout.txt)."""
from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from slimfast.tools.training.heldout import heldout_names

TRAIN = Path(__file__).resolve().parents[2] / "shared" / "data" / "train"


def test_at_least_30_held_out_images_disjoint_from_validation():
    names = heldout_names()
    assert len(names) >= 30
    assert all(zlib.crc32(Path(n).name.encode()) % 1000 >= 50 for n in names)  # validation: [0, 50)


def test_training_never_sees_them(tmp_path):
    from slimfast.tools.training.data import list_images

    name = sorted(heldout_names())[0]
    folder = tmp_path / Path(name).parent
    folder.mkdir()
    for n in (Path(name).name, "kept.png"):
        (folder / n).write_bytes(b"")
    assert [f.name for f in list_images([str(tmp_path)])] == ["kept.png"]


@pytest.mark.skipif(not TRAIN.is_dir(), reason="needs ../shared/data/train")
def test_evaluated_halved(tmp_path):
    from PIL import Image

    from slimfast.tools.evaluate import prepare_heldout

    out = prepare_heldout(TRAIN, tmp_path / "h")
    first = sorted(heldout_names())[0]
    with Image.open(TRAIN / first) as src, Image.open(out / (Path(first).stem + ".png")) as half:
        assert half.size == (-(-src.size[0] // 2), -(-src.size[1] // 2))  # reduce(2): a 2x2 box, edges kept
    assert len(list(out.glob("*.png"))) == len(heldout_names())
