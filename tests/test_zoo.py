"""The bundled models: pinned weights, honest cards."""
import json
import os

import numpy as np

import pytest

from slimfast import zoo
from slimfast.errors import SlimfastError
from slimfast.models.weights import file_digest, read_metadata

BUNDLED = sorted(p for p in zoo.BUNDLED_DIR.glob("*.json") if p.name != zoo.RETIRED_FILE)


def _random_weights(path, seed: int):
    """A random FasiNet-L (tables frozen) saved to ``path``: weights to publish in a test."""
    import torch

    from slimfast.models import FasiNetL
    from slimfast.models.weights import save_model

    torch.manual_seed(seed)
    m = FasiNetL().eval()
    m.update()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(m, path)
    return path


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
# all) and keep the repository under about 40 MiB; issue 4 asks for about 25 MB. The budget grew
# to 38 MiB while superseded versions stayed installed (11 MiB of them). Since the retirement rule
# (slimfast.zoo: the bundle holds current versions only) it is 25 MiB: 24.96 MiB with
# fasinet-h-mse v2 (q1 q4 q8, int8) and slimcae-mse (int8). A new model retires something first:
# slim-fasinet-h-mse (3.8 MB) took the place of slimcae-mse (4.9 MB, discontinued after 0.6.0),
# fasinet-h-mse-q10 (2.9 MB: int8 files store the hyper-synthesis once since 0.8.0) that of q8.
# fasinet-l-mse (q1 q2 q4 q6, 5.7 MB) left in 0.9.0: fasinet-h-mse beats it in RD and decode time.
WEIGHTS_BUDGET = 25 * 2 ** 20


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
    assert card.get("lambda") is None  # one lambda per width; a single one would be a leftover default
    assert card.get("default_width", max(card["widths"])) in card["widths"]


@pytest.mark.parametrize("card_path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_compact_storage_states_its_measured_cost(card_path):
    card = json.loads(card_path.read_text())
    assert read_metadata(card_path.with_suffix(".safetensors")).get("storage", "fp16") == card.get("storage", "fp16")
    if card.get("storage", "fp16") != "fp16":
        cost = card["storage_cost"]
        assert len(cost["fp16_points"]) == len(card["points"]) and "mean_psnr_change_db" in cost


def test_release_chain_sums_stages_and_keeps_the_schedule(tmp_path):
    from slimfast.tools.release import chain_info

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


def test_a_kept_previous_version_stays_decodable(tmp_path, monkeypatch, small_rgb):
    from slimfast import codec
    from slimfast.format import container
    from slimfast.errors import SlimfastError
    from slimfast.tools.release import publish, set_default

    out = tmp_path / "models"
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(out))
    on_path = {"model_path": [out]}  # zoo reads no environment: the folder is an argument
    runs = [_random_weights(tmp_path / f"run{seed}" / "final.safetensors", seed) for seed in (1, 2, 3)]
    publish(runs[0], "vtest", "vtest", version="1", out_dir=out, kodak=None)
    v1 = zoo.get("vtest", **on_path)
    old_file = codec.Codec(v1).compress(small_rgb)
    card2 = publish(runs[1], "vtest", "vtest", version="2", out_dir=out, kodak=None, keep_previous=True)

    assert card2["supersedes"]["version"] == "1" and card2["supersedes"]["sha256"] == v1.sha256
    assert (out / "vtest.v1.safetensors").exists() and file_digest(out / "vtest.v1.safetensors") == v1.sha256
    assert zoo.get("vtest", **on_path).version == "2" and zoo.get("vtest@1", **on_path).sha256 == v1.sha256
    assert zoo.versions_of("vtest", **on_path) == ["1", "2"]
    assert [m.version for m in zoo.list_models(**on_path) if m.name == "vtest"] == ["2"]
    # The old file names version 1 and still decodes, to the same pixels as before.
    before = np.asarray(codec.Codec(v1).decompress(old_file))
    assert np.array_equal(np.asarray(codec.decompress(old_file)), before)
    new_file = codec.Codec(zoo.get("vtest", **on_path)).compress(small_rgb)
    assert container.unpack(new_file).weights_version == "2" and container.unpack(old_file).weights_version == "1"

    for version in ("1", "2"):  # a shipped version never changes
        with pytest.raises(SlimfastError, match="already shipped"):
            publish(runs[2], "vtest", "vtest", version=version, out_dir=out, kodak=None)
    with pytest.raises(SlimfastError, match="no installed version 7"):
        zoo.get("vtest@7", **on_path)
    (out / "retired.json").write_text("[]")  # the retired cards' list sits beside the cards
    set_default("vtest", out_dir=out)
    assert json.loads((out / "retired.json").read_text()) == []
    assert json.loads((out / "vtest.json").read_text())["default"]
    assert not json.loads((out / "vtest.v1.json").read_text())["default"]
    # A file that needs a version that is gone says which versions there are.
    (out / "vtest.v1.json").unlink()
    with pytest.raises(SlimfastError, match=r"version 1 .*has version\(s\) 2"):
        codec.decompress(old_file)


def test_a_new_version_retires_the_old_one_and_its_files_name_the_release_that_decodes_them(
        tmp_path, monkeypatch, small_rgb, capsys):
    import shutil

    from slimfast import __version__, cli, codec
    from slimfast.tools import report
    from slimfast.errors import SlimfastError
    from slimfast.tools.release import main as release_main
    from slimfast.tools.release import publish

    out = tmp_path / "models"
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(out))
    on_path = {"model_path": [out]}  # zoo reads no environment: the folder is an argument
    runs = [_random_weights(tmp_path / f"w{seed}.safetensors", seed) for seed in (1, 2)]
    publish(runs[0], "rtest", "rtest", version="1", out_dir=out, kodak=None, extra={"points": [
        {"bpp": 0.5, "psnr": 30.0}, {"bpp": 1.0, "psnr": 33.0}]})
    v1 = zoo.get("rtest", **on_path)
    old_file = codec.Codec(v1).compress(small_rgb)
    before = np.asarray(codec.Codec(v1).decompress(old_file))
    elsewhere = tmp_path / "old-release-weights"
    elsewhere.mkdir()
    for ext in (".safetensors", ".json"):  # what the old release had
        shutil.copy(out / f"rtest{ext}", elsewhere / f"rtest.v1{ext}")
    publish(runs[1], "rtest", "rtest", version="2", out_dir=out, kodak=None, extra={"points": [
        {"bpp": 0.5, "psnr": 31.0}, {"bpp": 1.0, "psnr": 34.0}]})

    # only the current version is left; the retired card names the release that had it
    assert sorted(p.name for p in out.iterdir()) == ["retired.json", "rtest.json", "rtest.safetensors"]
    (entry,) = json.loads((out / "retired.json").read_text())
    assert (entry["name"], entry["version"], entry["sha256"]) == ("rtest", "1", v1.sha256)
    assert set(entry) <= set(zoo.INDEX_KEYS), "the index keeps no more of the card than its files need"
    assert entry["last_release"] == __version__ and entry["retired_by_version"] == "2"
    assert zoo.versions_of("rtest", **on_path) == ["2"]
    with pytest.raises(SlimfastError, match=rf"version 1, retired .*slimfast {__version__}.*SLIMFAST_MODEL_PATH"):
        codec.decompress(old_file)
    src = tmp_path / "old.sfi"
    src.write_bytes(old_file)
    assert cli.main(["decompress", str(src), str(tmp_path / "old.png")]) != 0
    err = capsys.readouterr().err.strip()
    assert "retired" in err and len(err.splitlines()) == 1 and not (tmp_path / "old.png").exists()
    # the version comparison still has the retired curve
    assert any("rtest** v2 against v1" in line for line in report.versions_section())
    # that release's weights, installed from elsewhere, decode the file again to the same pixels
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", os.pathsep.join([str(out), str(elsewhere)]))
    assert np.array_equal(np.asarray(codec.decompress(old_file)), before)

    # --retire takes a kept version out, and refuses the current one
    publish(runs[0], "rtest", "rtest", version="3", out_dir=out, kodak=None, keep_previous=True)
    assert (out / "rtest.v2.json").exists()
    assert release_main(["--retire", "rtest@3", "--out-dir", str(out)]) == 2
    assert "current version" in capsys.readouterr().err
    assert release_main(["--retire", "rtest@v2", "--out-dir", str(out)]) == 0
    assert not (out / "rtest.v2.json").exists() and not (out / "rtest.v2.safetensors").exists()
    assert [e["version"] for e in json.loads((out / "retired.json").read_text())] == ["1", "2"]
    assert release_main(["--retire", "rtest@2", "--out-dir", str(out)]) == 2
    assert "not installed" in capsys.readouterr().err
    # a current version leaves only with --discontinue, and never the last of its family
    assert release_main(["--retire", "rtest@3", "--discontinue", "--out-dir", str(out)]) == 2
    assert "last model of family" in capsys.readouterr().err
    publish(runs[1], "rtest-b", "rtest", version="1", out_dir=out, kodak=None)
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(out))
    assert release_main(["--retire", "rtest@3", "--discontinue", "--out-dir", str(out)]) == 0
    assert zoo.versions_of("rtest", **on_path) == []
    assert [m.name for m in zoo.list_models(**on_path) if m.family == "rtest"] == ["rtest-b"]
    # the last of a family goes only when the whole family is meant to
    assert release_main(["--retire", "rtest-b@1", "--discontinue", "--out-dir", str(out)]) == 2
    assert "--whole-family" in capsys.readouterr().err
    assert release_main(["--retire", "rtest-b@1", "--discontinue", "--whole-family", "--last-release", "0.0.1",
                         "--out-dir", str(out)]) == 0
    assert [m.name for m in zoo.list_models(**on_path) if m.family == "rtest"] == []
    gone = {e["name"]: e for e in json.loads((out / "retired.json").read_text()) if e.get("discontinued")}
    assert gone["rtest-b"]["last_release"] == "0.0.1" and gone["rtest"]["last_release"] == __version__
    # the family, and each of its models, name the release that had them and how to bring files forward
    for asked in ("rtest", "rtest-b"):
        with pytest.raises(SlimfastError, match=r"no longer bundled \(last in slimfast .*slimfast upgrade .*-m MODEL"):
            zoo.get(asked, **on_path)


def test_retire_names_the_release_that_last_bundled_it(tmp_path, monkeypatch, capsys):
    """While the package version is an unreleased one, retiring from the bundle needs --last-release."""
    from slimfast import __version__
    from slimfast.tools import release

    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(f"# Changelog\n\n## {__version__} (unreleased)\n\n- x\n\n## 0.0.1\n")
    assert release.unreleased_version(changelog) == __version__
    changelog.write_text(f"# Changelog\n\n## {__version__}\n\n- x\n")
    assert release.unreleased_version(changelog) is None
    out = tmp_path / "models"
    for name in ("lr-a", "lr-b"):
        release.publish(_random_weights(tmp_path / f"{name}.safetensors", 3), name, "lr", out_dir=out, kodak=None)
    monkeypatch.setattr(zoo, "BUNDLED_DIR", out)  # as if it were the bundle
    monkeypatch.setattr(release, "unreleased_version", lambda: __version__)
    assert release.main(["--retire", "lr-a@1", "--discontinue"]) == 2
    assert "--last-release" in capsys.readouterr().err and (out / "lr-a.json").exists()
    for bad in ("99.0.0", "next", "0.8"):
        code = release.main(["--retire", "lr-a@1", "--discontinue", "--last-release", bad])
        assert (code, (out / "lr-a.json").exists()) == ((0, False) if bad == "0.8" else (2, True)), bad
    assert "above this package's version" in capsys.readouterr().err
    (entry,) = json.loads((out / "retired.json").read_text())
    assert (entry["name"], entry["last_release"], entry["discontinued"]) == ("lr-a", "0.8", True)


def test_a_family_no_longer_bundled_names_the_last_release_that_had_it():
    """Every family that has retired versions and no current model (its last one discontinued)."""
    from slimfast.codec import model_info

    current = {m.family for m in zoo.list_models()}
    gone: dict[str, list[dict]] = {}
    for r in zoo.retired_versions():
        if r.get("family") not in current:
            gone.setdefault(r["family"], []).append(r)
    if not gone:
        pytest.skip("no family discontinued whole in this bundle")
    release = lambda v: tuple(int(x) for x in v.split("."))  # noqa: E731
    for family, entries in gone.items():
        last = max((r["last_release"] for r in entries), key=release)
        asked = [family] if family not in {r["name"] for r in entries} else []
        for name in asked + sorted({r["name"] for r in entries}):
            with pytest.raises(SlimfastError, match=r"no longer bundled \(last in slimfast ") as e:
                model_info(name)
            assert "\n" not in str(e.value) and "slimfast upgrade FILE --weights-from FOLDER -m MODEL" in str(e.value)
            if name in asked:
                assert f"family {family!r} is no longer bundled (last in slimfast {last};" in str(e.value)


def test_the_bundle_holds_current_versions_only_and_retired_ones_name_an_older_release():
    from slimfast import __version__
    from slimfast.tools.release import _release_key

    cards = [json.loads(p.read_text()) for p in BUNDLED]
    names = [c["name"] for c in cards]
    assert len(names) == len(set(names)), "a superseded version is still bundled: retire it"
    registry = zoo.BUNDLED_DIR / zoo.RETIRED_FILE
    retired = json.loads(registry.read_text()) if registry.exists() else []
    shipped = {c["sha256"] for c in cards}
    for r in retired:
        assert r["sha256"] not in shipped and r["points"]
        # the release that still bundles it is an older one (or a development state before this
        # one, X.Y.Z.devN): the package version was bumped
        assert _release_key(r["last_release"]) < _release_key(__version__), (r["name"], r["version"])


# The last commit whose retired.json held full cards (slimfast 0.8.0): the index was made from it.
FULL_RETIRED_COMMIT = "7f2bd9894b8b73a6d264e7ed6ea659cda1f5e9ed"


def _git_show(spec: str) -> str | None:
    import subprocess

    try:
        r = subprocess.run(["git", "-C", str(zoo.BUNDLED_DIR), "show", spec], capture_output=True, text=True,
                           timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 else None


@pytest.mark.slow  # starts subprocesses or trains
def test_the_shipped_retired_index_is_compact_and_the_full_cards_are_in_git_history():
    from slimfast.tools.release import compact_retired

    registry = zoo.BUNDLED_DIR / zoo.RETIRED_FILE
    index = json.loads(registry.read_text())
    assert registry.stat().st_size < 600 * len(index)  # an index line per version, not its card
    assert all(set(e) <= set(zoo.INDEX_KEYS) for e in index)
    assert not {"training", "data", "license"} & {k for e in index for k in e}
    assert compact_retired(index) == index  # already compact: converting changes nothing
    old = _git_show(f"{FULL_RETIRED_COMMIT}:slimfast/weights/{zoo.RETIRED_FILE}")
    if old is None:
        pytest.skip("no git history here (an installed package or a shallow clone)")
    assert all(e in index for e in compact_retired(json.loads(old)))  # later releases only add entries
    for e in index:  # what README promises: git show LAST_COMMIT:slimfast/weights/CARD
        card = _git_show(f"{e['last_commit']}:slimfast/weights/{e['files'][1]}")
        assert card and json.loads(card)["sha256"] == e["sha256"], (e["name"], e["version"])


def test_an_older_release_folder_with_full_retired_cards_still_names_the_release(tmp_path):
    from slimfast.errors import UnreadableFileError
    from slimfast.tools.release import compact_retired

    sha = "ab" * 32
    full = {"name": "oldm", "family": "oldf", "architecture": "fasinet-l", "version": 1, "sha256": sha,
            "lambda": 0.01, "lambdas": None, "training": {"minutes": 3}, "data": "terms", "license": "MIT",
            "points": [{"width": None, "bpp": 0.5, "psnr": 30.0, "ms_ssim": 0.9, "images": 24}],
            "files": ["oldm.safetensors", "oldm.json"], "last_release": "0.1.0", "last_commit": "0123456789ab" * 3,
            "discontinued": True}
    (tmp_path / zoo.RETIRED_FILE).write_text(json.dumps([full, {"name": "broken", "version": "1", "points": 3}]))
    on_path = {"model_path": [tmp_path]}
    (got,) = [r for r in zoo.retired_versions(**on_path) if r["name"] in ("oldm", "broken")]
    assert got == compact_retired([full])[0] == {**{k: full[k] for k in (
        "name", "family", "architecture", "sha256", "files", "last_release", "last_commit", "discontinued")},
        "version": "1", "points": [{"bpp": 0.5, "psnr": 30.0}]}
    with pytest.raises(UnreadableFileError, match=r"version 1, retired .*slimfast 0\.1\.0 \(git 0123456789ab\)"):
        zoo.find_by_id("oldm", "1", bytes.fromhex(sha[:16]), **on_path)
    with pytest.raises(SlimfastError, match=r"'oldm' is no longer bundled \(last in slimfast 0\.1\.0"):
        zoo.get("oldm", **on_path)


def test_a_card_names_per_width_lambdas_only_when_trained_with_them(tmp_path, monkeypatch):
    from slimfast.tools.release import publish

    out = tmp_path / "models"
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(out))
    for name, summary in (("one", {"steps": 5, "lmbda": 0.05}),
                          ("many", {"steps": 5, "lmbda": 0.013, "lmbdas": [0.05, 0.02]})):
        run = _random_weights(tmp_path / name / "final.safetensors", 0).parent
        (run / "summary.json").write_text(json.dumps(summary))
        card = publish(run / "final.safetensors", name, name, out_dir=out, kodak=None)
        assert (card["lambda"], card["lambdas"]) == ((0.05, None) if name == "one" else (None, [0.05, 0.02]))


def test_report_compares_versions_from_cards(tmp_path, monkeypatch):
    from slimfast.tools import report

    out = tmp_path / "models"
    out.mkdir()
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(out))
    src = sorted(zoo.BUNDLED_DIR.glob("fasinet-l-msssim-q4.safetensors"))[0]
    for stem, version, shift in (("vfam-a.v1", "1", 0.0), ("vfam-b.v1", "1", 0.0), ("vfam-a", "2", 1.0),
                                 ("vfam-b", "2", 1.0)):
        (out / f"{stem}.safetensors").write_bytes(src.read_bytes())
        base = 0.3 if stem.startswith("vfam-a") else 0.8
        points = [{"bpp": base * k, "psnr": 26 + 3 * k + shift} for k in (1.0, 1.5)]
        card = {"name": stem.split(".")[0], "family": "vfam", "architecture": "fasinet-l", "version": version,
                "points": points, "sha256": file_digest(src)}
        (out / f"{stem}.json").write_text(json.dumps(card))
    lines = [line for line in report.versions_section() if "vfam" in line]
    assert len(lines) == 1 and "v2 against v1" in lines[0]
    bd = float(lines[0].split("BD-rate **")[1].split("%")[0])
    assert bd < -5  # one dB better everywhere


def test_a_new_version_of_the_default_stays_default_and_pinned_ladders_keep_their_version(tmp_path, monkeypatch):
    from slimfast import codec
    from slimfast.errors import SlimfastError
    from slimfast.tools.release import publish, set_default

    out = tmp_path / "models"
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(out))
    on_path = {"model_path": [out]}  # zoo reads no environment: the folder is an argument
    _random_weights(tmp_path / "w.safetensors", 5)
    for name, lmbda in (("lad-a", 0.01), ("lad-b", 0.05)):
        publish(tmp_path / "w.safetensors", name, "lad", out_dir=out, kodak=None, extra={"lambda": lmbda})
    set_default("lad-a", out_dir=out)
    with pytest.raises(SlimfastError, match="positive integer"):
        publish(tmp_path / "w.safetensors", "lad-a", "lad", version="2b", out_dir=out, kodak=None)
    publish(tmp_path / "w.safetensors", "lad-a", "lad", version="2", out_dir=out, kodak=None, extra={"lambda": 0.01},
            keep_previous=True)
    card = json.loads((out / "lad-a.json").read_text())
    assert card["default"] and card["version"] == "2"
    assert not json.loads((out / "lad-a.v1.json").read_text())["default"]
    assert not list(out.glob(".*staged*"))
    # the current ladder: lad-a v2, lad-b v1; a pinned lad-a@1 ladder: version 1 only
    assert [(p.model) for p in codec.Codec(zoo.get("lad-a", **on_path)).operating_points()] == ["lad-a", "lad-b"]
    pinned = codec.Codec(zoo.get("lad-a@1", **on_path))
    assert [p.model for p in pinned.operating_points()] == ["lad-a@1", "lad-b@1"]


def test_a_rewritten_card_is_read_again(tmp_path):
    # Cards are parsed once and cached; an edit (same size, same mtime tick) must still show.
    out = tmp_path / "models"
    out.mkdir()
    on_path = {"model_path": [out]}  # zoo reads no environment: the folder is an argument
    src = zoo.BUNDLED_DIR / "fasinet-l-msssim-q4.safetensors"
    (out / "cachetest.safetensors").write_bytes(src.read_bytes())
    card = {"name": "cachetest", "family": "cachetest", "architecture": "fasinet-l", "version": "1",
            "train_steps": 111, "sha256": file_digest(src)}
    path = out / "cachetest.json"
    path.write_text(json.dumps(card))
    assert zoo.get("cachetest", **on_path).train_steps == 111
    stat = path.stat()
    tmp = out / "cachetest.json.new"
    tmp.write_text(json.dumps({**card, "train_steps": 222}))
    import os

    os.utime(tmp, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    tmp.replace(path)  # a new inode, as an atomic rewrite gives
    assert zoo.get("cachetest", **on_path).train_steps == 222
    stat = path.stat()
    path.write_text(json.dumps({**card, "train_steps": 333}))  # in place: same inode and size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_ino == stat.st_ino and path.stat().st_size == stat.st_size
    assert zoo.get("cachetest", **on_path).train_steps == 333


def test_release_card_extra_takes_inline_json_or_a_file_and_fails_in_one_line(tmp_path):
    from slimfast.tools import release
    from slimfast.errors import SlimfastError

    assert release._card_extra('{"note": "x"}') == {"note": "x"}
    f = tmp_path / "extra.json"
    f.write_text('{"note": "y"}')
    assert release._card_extra(str(f)) == {"note": "y"}
    for bad in (str(tmp_path / "missing.json"), "[1, 2]", "{not json"):
        with pytest.raises(SlimfastError):
            release._card_extra(bad)


def _bf16_points(*changes):
    return [{"width": None, "synthesis_psnr_change_db": s, "psnr_change_db": b, "bpp_change": r} for s, b, r in changes]


def test_bf16_defaults_allow_each_side_within_its_bounds_only():
    from slimfast.tools.release import bf16_defaults

    d = dict(bound_db=0.05, bound_bpp=0.005)
    assert bf16_defaults([], **d) == (False, False)
    assert bf16_defaults(_bf16_points((-0.01, -0.02, 0.001), (0.002, 0.01, -0.003)), **d) == (True, True)
    # the bounds themselves are allowed; just past them is not
    assert bf16_defaults(_bf16_points((-0.05, -0.05, 0.005)), **d) == (True, True)
    assert bf16_defaults(_bf16_points((-0.01, -0.02, 0.001), (-0.0501, -0.01, 0.0)), **d) == (False, False)
    assert bf16_defaults(_bf16_points((-0.01, -0.0501, 0.0)), **d) == (True, False)
    assert bf16_defaults(_bf16_points((-0.01, -0.01, 0.0051), (0.0, 0.0, 0.0)), **d) == (True, False)
    # the analysis needs the synthesis too (a file coded in bf16 is decoded in bf16 under "auto")
    assert bf16_defaults(_bf16_points((-0.06, 0.0, 0.0)), **d) == (False, False)
    # smaller files and PSNR gains never count against it
    assert bf16_defaults(_bf16_points((0.3, 0.2, -0.02)), **d) == (True, True)
    # a model trained for MS-SSIM is bounded in MS-SSIM dB as well
    ok = _bf16_points((-0.01, -0.01, 0.0))[0]
    assert bf16_defaults([dict(ok, synthesis_msssim_change_db=-0.02, msssim_change_db=-0.05)], **d) == (True, True)
    assert bf16_defaults([dict(ok, synthesis_msssim_change_db=-0.02, msssim_change_db=-0.06)], **d) == (True, False)
    assert bf16_defaults([dict(ok, synthesis_msssim_change_db=-0.06, msssim_change_db=0.0)], **d) == (False, False)


def test_bf16_point_is_the_change_against_fp32_in_4_significant_digits():
    from slimfast.tools.release import bf16_point

    row = {"width": 96, "bpp_fp32": 0.5, "psnr_fp32": 30.0, "psnr_bf16_synthesis": 29.987654321,
           "bpp_bf16": 0.50123456, "psnr_bf16": 30.0012345, "max_abs_diff": 2, "images": 3}
    assert bf16_point(row) == {"width": 96, "synthesis_psnr_change_db": -0.01235, "psnr_change_db": 0.001234,
                               "bpp_change": 0.002469}
    row.update(msssim_db_fp32=15.0, msssim_db_bf16_synthesis=14.9876543, msssim_db_bf16=15.00123)
    assert bf16_point(row)["synthesis_msssim_change_db"] == -0.01235 and bf16_point(row)["msssim_change_db"] == 0.00123


@pytest.mark.parametrize("card_path", BUNDLED, ids=[p.stem for p in BUNDLED])
def test_a_cards_bf16_decisions_follow_from_its_points(card_path):
    from slimfast.tools.release import bf16_defaults

    b = json.loads(card_path.read_text()).get("bf16")
    if b is None:
        pytest.skip("bf16 not measured for this model (release --measure-bf16)")
    card = json.loads(card_path.read_text())
    assert [p["width"] for p in b["points"]] == (sorted(card["widths"]) if card.get("widths") else [None])
    assert (b["synthesis"], b["analysis"]) == bf16_defaults(b["points"], b["bound_db"], b["bound_bpp"])
    assert b["heldout_images"] > 0 and str(b["heldout_images"]) in b["data"]


def test_measure_bf16_fails_in_one_line(tmp_path, monkeypatch, capsys):
    from slimfast.engines import openvino
    from slimfast.tools import release

    name = json.loads(BUNDLED[0].read_text())["name"]
    before = {p: p.read_bytes() for p in BUNDLED}
    for argv in (["--measure-bf16"], ["--measure-bf16", name, "--all"]):
        assert release.main(argv) == 2
        assert capsys.readouterr().err == "error: --measure-bf16 takes model names or --all (not both)\n"
    with pytest.raises(SlimfastError, match="no training data folder"):
        release.heldout_images(tmp_path / "missing")
    monkeypatch.setattr(openvino, "unavailable_reason", lambda: "needs OpenVINO: pip install 'slimfast[openvino]'")
    assert release.main(["--measure-bf16", name, "--train", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --measure-bf16: bf16 needs OpenVINO") and err.count("\n") == 1
    monkeypatch.setattr(openvino, "unavailable_reason", lambda: "")
    assert release.main(["--measure-bf16", name, "--train", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err.startswith("error: no training data folder")
    assert release.main(["--measure-bf16", "nonesuch"]) == 2
    assert "no model 'nonesuch'" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in BUNDLED} == before  # nothing written


def test_a_discontinued_model_name_says_which_release_had_it():
    current = {m.name for m in zoo.list_models()}
    gone = [r for r in zoo.retired_versions() if r["name"] not in current]
    if not gone:
        pytest.skip("no discontinued model in this bundle")
    r = gone[0]
    with pytest.raises(SlimfastError, match=rf"{r['name']}' is no longer bundled \(last in slimfast "):
        zoo.get(r["name"])
    with pytest.raises(SlimfastError, match="unknown model 'nonesuch'"):
        zoo.get("nonesuch")


@pytest.mark.parametrize("engine", ["ort", "torch"])
def test_weights_that_do_not_match_their_card_never_load(model_dir, tmp_path, monkeypatch, small_rgb, engine):
    """One flipped byte in the tensors: the file still parses, but its SHA-256 is not the card's."""
    import shutil

    import slimfast

    folder = tmp_path / "models"
    folder.mkdir()
    for f in model_dir.glob("test-h.*"):
        shutil.copy(f, folder / f.name)
    weights = folder / "test-h.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0x01
    weights.write_bytes(bytes(data))
    monkeypatch.setenv("SLIMFAST_MODEL_PATH", str(folder))
    with pytest.raises(SlimfastError, match="does not match its model card"):
        slimfast.load("test-h", engine=engine, threads=1).compress(small_rgb)
