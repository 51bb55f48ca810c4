"""Archived files (issue 25, item 12): a file made with a model version this release no longer
bundles fails with a one-line message that says how to read it, and `slimfast upgrade` decodes it
with that version's weights from a folder and encodes it again with the current model."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimfast import zoo
from slimfast.cli import main
from slimfast.codec import Codec
from slimfast.format import container
from slimfast.jobs.upgrade import matching_point

SOURCE = "fasinet-h-mse-q1"  # a bundled model at version 2 or above: an older version of it can be faked
CURRENT = zoo.get(SOURCE).version
OLD = str(int(CURRENT) - 1)
FAMILY = zoo.get(SOURCE).family


def retired_copy(folder: Path, *, name: str = SOURCE, version: str = OLD, family: str | None = None,
                 bpp: float | None = None) -> zoo.ModelInfo:
    """A bundled model's weights and card copied into ``folder`` as another (name, version): its
    weights' metadata changes, hence their SHA-256, so the installed zoo does not know it."""
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file

    src = zoo.BUNDLED_DIR / f"{SOURCE}.safetensors"
    with safe_open(str(src), "np") as f:
        meta = dict(f.metadata())
    folder.mkdir(exist_ok=True)
    weights = folder / f"{name}.safetensors"
    save_file(load_file(str(src)), str(weights), metadata={**meta, "name": name, "version": version})
    card = json.loads((zoo.BUNDLED_DIR / f"{SOURCE}.json").read_text())
    card.update(name=name, version=version, default=False, sha256=hashlib.sha256(weights.read_bytes()).hexdigest())
    if family is not None:
        card["family"] = family
    if bpp is not None:
        card["points"] = [{"bpp": bpp, "psnr": 30.0}]
    (folder / f"{name}.json").write_text(json.dumps(card))
    (info,) = [m for m in zoo.models_in(folder) if m.name == name]
    assert info.sha256 != zoo.get(SOURCE).sha256
    return info


@pytest.fixture
def old_weights(tmp_path) -> Path:
    return tmp_path / "old-weights"


@pytest.fixture
def bundled_only(monkeypatch):
    monkeypatch.delenv("SLIMFAST_MODEL_PATH", raising=False)


def old_file(info: zoo.ModelInfo, rgb: np.ndarray, path: Path) -> Path:
    path.write_bytes(Codec(info).compress(rgb))
    hdr = container.unpack(path.read_bytes())
    assert (hdr.model, hdr.weights_version) == (info.name, info.version)
    return path


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def test_an_archived_file_fails_in_one_line_that_names_upgrade(bundled_only, old_weights, small_rgb, tmp_path,
                                                               capsys, monkeypatch):
    src = old_file(retired_copy(old_weights), small_rgb, tmp_path / "old.sfi")
    assert main(["decompress", str(src)]) == 1
    line = error_line(capsys)
    assert f"version {OLD}" in line and f"has version(s) {CURRENT}" in line and "slimfast upgrade" in line, line
    assert not (tmp_path / "old.png").exists()
    # listed as retired (as slimfast/weights/retired.json lists the versions a release retired)
    index = tmp_path / "index"
    index.mkdir()
    entry = {"name": SOURCE, "family": FAMILY, "architecture": zoo.get(SOURCE).architecture, "version": OLD,
             "sha256": zoo.models_in(old_weights)[0].sha256, "points": [{"bpp": 0.2, "psnr": 26.0}],
             "files": [f"{SOURCE}.safetensors", f"{SOURCE}.json"], "last_release": "0.5.1",
             "last_commit": "c40f6f16fbad6db3775cd92f93c00e233eaed91b", "retired_by_version": CURRENT}
    (index / zoo.RETIRED_FILE).write_text(json.dumps([entry]))
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(index))
    assert main(["decompress", str(src)]) == 1
    line = error_line(capsys)
    assert "retired" in line and "slimfast 0.5.1 (git c40f6f16fbad)" in line, line
    assert "slimfast upgrade FILE --weights-from FOLDER" in line, line


def test_upgrade_reencodes_with_the_current_version(bundled_only, old_weights, small_rgb, tmp_path, capsys):
    info = retired_copy(old_weights)
    src = old_file(info, small_rgb, tmp_path / "old.sfi")
    before = src.read_bytes()
    decoded = np.asarray(Codec(info).decompress(before))
    assert main(["upgrade", str(src), "--weights-from", str(old_weights)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and err[0].startswith("slimfast: warning: ") and "generation loss" in err[0], err
    out = tmp_path / "old.upgraded.sfi"
    assert err[1].startswith(f"{src} -> {out}: {SOURCE} v{OLD} -> {SOURCE} v{CURRENT}, "), err
    assert src.read_bytes() == before  # the original stays without --force
    hdr = container.unpack(out.read_bytes())
    assert (hdr.model, hdr.weights_version) == (SOURCE, CURRENT)
    # the new file is the current model's coding of the old file's pixels
    current = Codec(zoo.get(SOURCE))
    assert out.read_bytes() == current.compress(decoded)
    assert main(["decompress", str(out), "-o", str(tmp_path / "new.png"), "--quiet"]) == 0
    assert Image.open(tmp_path / "new.png").size == (56, 40)
    # an existing output is not replaced without --force
    assert main(["upgrade", str(src), "--weights-from", str(old_weights), "--quiet"]) == 1
    assert "exists" in error_line(capsys)


def test_upgrade_in_place_with_force_and_into_a_folder(bundled_only, old_weights, small_rgb, tmp_path, capsys):
    info = retired_copy(old_weights)
    files = [old_file(info, small_rgb, tmp_path / f"{n}.sfi") for n in ("a", "b")]
    out = tmp_path / "up"
    out.mkdir()
    assert main(["upgrade", *map(str, files), "--weights-from", str(old_weights), "-o", str(out)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[-1].startswith("2 files: ") and "bpp mean" in err[-1], err
    assert sorted(p.name for p in out.iterdir()) == ["a.sfi", "b.sfi"]
    assert main(["upgrade", str(files[0]), "--weights-from", str(old_weights), "--force", "--quiet"]) == 0
    assert capsys.readouterr().err == ""
    assert container.unpack(files[0].read_bytes()).weights_version == CURRENT
    assert files[0].read_bytes() == (out / "a.sfi").read_bytes()
    assert not list(tmp_path.glob("*.upgraded.sfi"))
    # now current: left as it is, with a line saying so
    assert main(["upgrade", str(files[0]), "--force"]) == 0
    assert capsys.readouterr().err == f"{files[0]}: already made with the current {SOURCE} v{CURRENT}; left as it is\n"


def test_a_discontinued_model_goes_to_the_nearest_point_of_its_family(bundled_only, old_weights, small_rgb,
                                                                       tmp_path, capsys):
    family = [m for m in zoo.list_models() if m.family == FAMILY]
    target = 0.5
    nearest = min(family, key=lambda m: abs(m.points[0]["bpp"] - target))
    largest = max(family, key=lambda m: m.points[0]["bpp"])
    assert len(family) >= 3 and nearest != largest
    info = retired_copy(old_weights, name=f"{FAMILY}-q3", version="1", bpp=target)
    assert matching_point(info, None) == (nearest.name, None)
    src = old_file(info, small_rgb, tmp_path / "gone.sfi")
    assert main(["upgrade", str(src), "--weights-from", str(old_weights), "-o", str(tmp_path / "new.sfi")]) == 0
    assert container.unpack((tmp_path / "new.sfi").read_bytes()).model == nearest.name
    assert main(["upgrade", str(src), "--weights-from", str(old_weights), "-o", str(tmp_path / "q.sfi"),
                 "-m", FAMILY, "-q", "100", "--quiet"]) == 0  # options choose another point
    assert container.unpack((tmp_path / "q.sfi").read_bytes()).model == largest.name
    capsys.readouterr()


def test_a_file_of_a_family_no_longer_bundled_goes_to_the_nearest_point_of_the_family_named(
        bundled_only, old_weights, small_rgb, tmp_path, capsys, monkeypatch):
    """A family discontinued whole (release --retire --discontinue --whole-family): its files say
    that upgrade needs -m; -m FAMILY alone takes that family's point nearest in rate."""
    family = [m for m in zoo.list_models() if m.family == FAMILY]
    nearest = min(family, key=lambda m: abs(m.points[0]["bpp"] - 0.5))
    other = next(m for m in family if m != nearest)
    info = retired_copy(old_weights, name="gone-q3", version="2", family="gone", bpp=0.5)
    src = old_file(info, small_rgb, tmp_path / "gone.sfi")
    index = tmp_path / "index"
    index.mkdir()
    entry = {"name": "gone-q3", "family": "gone", "architecture": info.architecture, "version": "2",
             "sha256": info.sha256, "points": [{"bpp": 0.5, "psnr": 30.0}],
             "files": ["gone-q3.safetensors", "gone-q3.json"], "last_release": "0.8.0",
             "last_commit": "fa40236b5b394294b958fb329bf87d7768cbf818", "discontinued": True}
    (index / zoo.RETIRED_FILE).write_text(json.dumps([entry]))
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(index))
    assert main(["decompress", str(src)]) == 1
    line = error_line(capsys)
    assert "retired" in line and "slimfast 0.8.0 (git fa40236b5b39)" in line, line
    assert "family 'gone' is no longer bundled" in line and "--weights-from FOLDER -m MODEL" in line, line
    assert main(["upgrade", str(src), "--weights-from", str(old_weights), "--quiet"]) == 1
    assert "no current model of family 'gone'" in error_line(capsys)
    for model, expected in ((FAMILY, nearest.name), (other.name, other.name)):  # a model named is that model
        out = tmp_path / f"{model}.sfi"
        assert main(["upgrade", str(src), "--weights-from", str(old_weights), "-m", model, "-o", str(out),
                     "--quiet"]) == 0
        assert container.unpack(out.read_bytes()).model == expected, model
    png = tmp_path / "x.png"
    Image.fromarray(small_rgb).save(png)
    for name in ("gone", "gone-q3"):  # asked for by name: the release that had it, and upgrade -m
        assert main(["compress", str(png), "-m", name, "-o", str(tmp_path / "x.sfi"), "--quiet"]) != 0
        line = error_line(capsys)
        assert "no longer bundled (last in slimfast 0.8.0;" in line and "-m MODEL" in line, line
    assert not (tmp_path / "x.sfi").exists()


def test_upgrade_errors_are_one_line_and_write_nothing(bundled_only, old_weights, small_rgb, tmp_path, capsys):
    orphan = retired_copy(old_weights, name="orphan-q1", version="1", family="gone-family")
    src = old_file(orphan, small_rgb, tmp_path / "orphan.sfi")
    cases = [
        (["--weights-from", str(old_weights)], "no current model of family 'gone-family'"),
        ([], "not installed"),  # without the old weights: the archived-file message
        (["--weights-from", str(tmp_path / "nowhere")], "no such folder"),
        (["--weights-from", str(tmp_path)], "holds no model weights"),
        (["--weights-from", str(old_weights), "-o", str(tmp_path / "x.png")], "image extension"),
    ]
    for extra, needle in cases:
        assert main(["upgrade", str(src), *extra, "--quiet"]) == 1
        assert needle in error_line(capsys)
    assert main(["upgrade", str(src)]) == 1  # the generation-loss warning comes only with a file written
    assert "not installed" in error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old-weights", "orphan.sfi"]


def test_the_readme_documents_archived_files():
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert "## Archived files" in text and "slimfast upgrade" in text and "--weights-from" in text


def test_a_copied_release_folder_works_as_weights_from(bundled_only, old_weights, small_rgb, tmp_path, capsys):
    """A release's whole weights folder (its retired.json and other models included) is accepted."""
    info = retired_copy(old_weights)
    for p in zoo.BUNDLED_DIR.glob("fasinet-l-msssim-q2.*"):
        shutil.copy(p, old_weights / p.name)
    shutil.copy(zoo.BUNDLED_DIR / zoo.RETIRED_FILE, old_weights / zoo.RETIRED_FILE)
    src = old_file(info, small_rgb, tmp_path / "old.sfi")
    assert main(["upgrade", str(src), "--weights-from", str(old_weights), "--quiet"]) == 0
    assert container.unpack((tmp_path / "old.upgraded.sfi").read_bytes()).weights_version == CURRENT


def test_upgrade_keeps_the_metadata(bundled_only, old_weights, small_rgb, tmp_path, capsys):
    info = retired_copy(old_weights)
    exif = Image.Exif()
    exif[0x010F] = "slimfast-test-camera"  # Make
    photo = Image.fromarray(small_rgb)
    photo.info["icc_profile"] = b"\0" * 128  # carried as bytes, never interpreted
    photo.info["exif"] = exif.tobytes()
    src = tmp_path / "meta.sfi"
    src.write_bytes(Codec(info).compress(photo))
    assert main(["upgrade", str(src), "--weights-from", str(old_weights), "--quiet"]) == 0
    old, new = (container.unpack(p.read_bytes()) for p in (src, tmp_path / "meta.upgraded.sfi"))
    assert new.weights_version == CURRENT and new.format_version == 2
    assert (new.icc, new.chunk("exif")) == (old.icc, old.chunk("exif")) and new.chunk("exif")
