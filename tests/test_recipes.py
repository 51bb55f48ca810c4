"""Training recipes (recipes/*.json) and their runner (scripts/run_recipe.py), without training a shipped model.

Every recipe parses; every stage's arguments are ones ``slimfast train`` accepts; every warm start
is an earlier stage or bundled (or retired, git-held) weights; every stage states what the card it
cites recorded; every bundled model is released by its family's recipe; the runner's dry run
prints every stage, and a two-stage toy recipe runs, chains and resumes.
"""
from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from slimfast.tools.train import build_parser

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted((ROOT / "recipes").glob("*.json"))
WEIGHTS = ROOT / "slimfast" / "weights"
RUNNER = ROOT / "scripts" / "run_recipe.py"
REQUIRED = ("--arch", "--steps", "--seed", "--batch-size", "--patch-size", "--lr", "--lr-drop-at")


def _runner():
    spec = importlib.util.spec_from_file_location("run_recipe", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


rr = _runner()


def bundled_cards() -> dict[str, dict]:
    return {c["name"]: c for c in (json.loads(f.read_text()) for f in sorted(WEIGHTS.glob("*.json"))
                                   if f.name != "retired.json")}


def card_of(model: str, version: str) -> dict:
    """The card of ``model`` at ``version``: bundled, or its entry in retired.json."""
    card = bundled_cards().get(model)
    if card and card["version"] == version:
        return card
    entry = rr.retired_entry(model, version)
    assert entry is not None, f"{model} version {version}: neither bundled nor retired"
    # a retired version's full card is in git history, where its index entry points; the entry's
    # fields (last_commit, ...) on top
    got = subprocess.run(["git", "-C", str(ROOT), "show", f"{entry['last_commit']}:slimfast/weights/{entry['files'][1]}"],
                         capture_output=True, text=True, check=False)
    if got.returncode:
        return entry  # an installed package or a shallow clone: the index entry alone
    return {**json.loads(got.stdout), **entry}


def recipe_ids():
    return [p.stem for p in RECIPES]


@pytest.fixture(params=RECIPES, ids=recipe_ids())
def recipe(request) -> dict:
    return rr.load_recipe(request.param)


def test_every_bundled_family_has_a_recipe():
    families = {c["family"] for c in bundled_cards().values()}
    assert families and families == {p.stem for p in RECIPES}


def test_recipe_parses_and_names_its_file(recipe):
    assert (ROOT / "recipes" / f"{recipe['family']}.json").is_file()
    assert recipe["stages"] and recipe["release"]


def test_stage_arguments_are_slimfast_train_arguments(recipe, tmp_path):
    parser = build_parser()
    for stage in recipe["stages"]:
        args = stage["args"]
        for flag in REQUIRED:
            assert flag in args, f"{stage['name']}: {flag} must be explicit"
        assert ("--lambda" in args) != ("--lambdas" in args), f"{stage['name']}: one of --lambda/--lambdas"
        resolved = [str(tmp_path / "x.safetensors") if a.startswith(("stage:", "weights:")) else a for a in args]
        ns = parser.parse_args([*resolved, "--out", str(tmp_path / stage["name"])])
        assert ns.minutes == 0 and ns.steps > 0, f"{stage['name']}: a budget in steps, not minutes"
        config = ns.model_config
        assert isinstance(json.loads(config) if isinstance(config, str) else config, dict)


def test_init_references_resolve(recipe):
    earlier: set[str] = set()
    for stage in recipe["stages"]:
        for ref in rr.refs(stage["args"]):
            assert rr.flag_before(stage["args"], ref) == "--init", f"{stage['name']}: {ref} outside --init"
            if ref.startswith("stage:"):
                assert ref[6:] in earlier, f"{stage['name']}: {ref} is not an earlier stage"
            else:
                model, _, version = ref[len("weights:"):].partition("@")
                bundled = bundled_cards().get(model)
                if not (bundled and bundled["version"] == version):  # retired: its release and commit are named
                    card = card_of(model, version)
                    assert card.get("sha256") and card.get("last_commit") and card.get("last_release"), ref
        earlier.add(stage["name"])


@pytest.mark.slow  # starts subprocesses or trains
def test_retired_warm_starts_are_in_git_history(recipe):
    if subprocess.run(["git", "-C", str(ROOT), "rev-parse"], capture_output=True, check=False).returncode:
        pytest.skip("not a git checkout")
    for stage in recipe["stages"]:
        for ref in rr.refs(stage["args"]):
            if ref.startswith("weights:"):
                _, where = rr.resolve_weights(ref, ROOT / "runs", fetch=False)
                if "NOT AVAILABLE" in where and subprocess.run(
                        ["git", "-C", str(ROOT), "rev-parse", "--is-shallow-repository"],
                        capture_output=True, text=True, check=False).stdout.strip() == "true":
                    pytest.skip("shallow clone: retired weights are not in its history")
                assert "NOT AVAILABLE" not in where, where


CITATION = re.compile(r"((?:scripts|docs)/\S+?\.(?:sh|md))[^()]*? at ([0-9a-f]{7,40})")


@pytest.mark.slow  # starts subprocesses or trains
def test_learning_rates_are_the_cited_scripts(recipe):
    """The cards do not record lr and its drop: each stage names the script (and a commit holding it)
    whose command line had them."""
    probe = ["git", "-C", str(ROOT), "cat-file", "-e", "7e3d88b"]
    if subprocess.run(probe, capture_output=True, check=False).returncode:
        pytest.skip("git history not here")
    for stage in recipe["stages"]:
        m = CITATION.search(stage.get("about", ""))
        assert m, f"{stage['name']}: cite the script and commit its lr comes from"
        text = subprocess.run(["git", "-C", str(ROOT), "show", f"{m.group(2)}:{m.group(1)}"],
                              capture_output=True, text=True, check=False).stdout
        lr, drop = rr.flag_value(stage["args"], "--lr"), rr.flag_value(stage["args"], "--lr-drop-at")
        assert f"--lr {lr} --lr-drop-at {drop}" in text, f"{stage['name']}: not in {m.group(1)} at {m.group(2)}"


def test_stages_state_what_their_card_recorded(recipe):
    """Steps, lambdas, batch, patch and the warm start of each stage against the card it cites."""
    for stage in recipe["stages"]:
        ref = stage["card"]
        card = card_of(ref["model"], ref["version"])
        if "training" not in card and "training_chain" not in card:
            pytest.skip(f"{ref['model']} version {ref['version']}: its full card is not in this checkout's history")
        args = stage["args"]
        if "run" in ref:
            runs = {r["run"]: r for r in card["training_chain"]}
            rec = runs[ref["run"]]
            assert ref["run"] == stage["name"]
            steps, lambdas, init = rec["steps"], rec["lambdas"], rec["init"]
            batch, patch = rec["batch_size"], rec["patch_size"]
        else:
            assert not card.get("training_chain"), f"{stage['name']}: cite the run in the card's training_chain"
            steps, init = card["train_steps"], card["training"]["init"]
            lambdas = card["lambdas"] or [card["lambda"]]
            batch, patch = card["training"]["batch_size"], card["training"]["patch_size"]
        assert int(rr.flag_value(args, "--steps")) == steps, stage["name"]
        assert int(rr.flag_value(args, "--batch-size")) == batch, stage["name"]
        assert int(rr.flag_value(args, "--patch-size")) == patch, stage["name"]
        ns = build_parser().parse_args([*(("x" if a.startswith(("stage:", "weights:")) else a) for a in args),
                                        "--out", "x"])
        assert (ns.lmbdas or [ns.lmbda]) == pytest.approx(lambdas, rel=1e-9), stage["name"]
        assert ref["init"] == init, f"{stage['name']}: the card's init is {init!r}"
        ours_init = rr.flag_value(args, "--init")
        if init is None:
            assert ours_init is None, stage["name"]
        elif init.startswith("runs/"):  # the stage that made that run (named where the run's folder was not)
            assert ours_init == f"stage:{ref.get('stage_of_init', init.split('/')[1])}", stage["name"]
        else:  # released weights: those very ones, or the stage that made them (recipes/README.md)
            assert init.startswith("slimfast/weights/"), init
            model = Path(init).stem
            assert ours_init.startswith((f"weights:{model}@", "stage:")), stage["name"]
        if card.get("metric", "mse") != "mse":
            assert rr.flag_value(args, "--metric") == card["metric"], stage["name"]


def test_release_names_a_bundled_family_and_model(recipe):
    cards = bundled_cards()
    family = recipe["family"]
    assert family in {c["family"] for c in cards.values()}
    released = []
    for rel in recipe["release"]:
        args = rel["args"]
        name = rr.flag_value(args, "--name")
        assert rr.flag_value(args, "--family") == family
        assert name == rel["model"] and name in cards and cards[name]["family"] == family
        card = cards[name]
        assert rr.flag_value(args, "--version") == card["version"]
        assert rr.flag_value(args, "--storage") == card.get("storage", "fp16")
        assert rel["stage"] in {s["name"] for s in recipe["stages"]}
        float_last = "last convolution" in card.get("int8_synthesis", {}).get("format", "")
        assert ("--float-last" in rel["calibrate"]) == float_last, name
        assert [p["psnr"] for p in rel["kodak"]] == [p["psnr"] for p in card["points"]], name
        assert [p["bpp"] for p in rel["kodak"]] == [p["bpp"] for p in card["points"]], name
        released.append(name)
    assert sorted(released) == sorted(n for n, c in cards.items() if c["family"] == family)


@pytest.mark.slow  # starts subprocesses or trains
@pytest.mark.parametrize("path", RECIPES, ids=recipe_ids())
def test_dry_run_prints_every_stage(path, tmp_path):
    out = subprocess.run([sys.executable, str(RUNNER), str(path), "--dry-run", "--runs", str(tmp_path)],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    assert out.returncode == 0, out.stderr
    recipe = rr.load_recipe(path)
    commands = [ln for ln in out.stdout.splitlines() if ln.startswith("python -m slimfast.tools.train")]
    assert len(commands) == len(recipe["stages"])
    parser = build_parser()
    for stage, line in zip(recipe["stages"], commands):
        argv = shlex.split(line)[3:]
        ns = parser.parse_args(argv)
        assert ns.out == str(tmp_path / recipe["family"] / stage["name"])
        init = rr.flag_value(stage["args"], "--init")
        if init and init.startswith("stage:"):
            assert ns.init == str(tmp_path / recipe["family"] / init[6:] / "final.safetensors")
    releases = [ln for ln in out.stdout.splitlines() if ln.startswith("python -m slimfast.tools.release")]
    assert len(releases) == 2 * len(recipe["release"])
    assert not list(tmp_path.iterdir()), "a dry run writes nothing"


@pytest.mark.slow  # starts subprocesses or trains
def test_runner_rejects_bad_recipes(tmp_path):
    def write(obj) -> Path:
        p = tmp_path / "r.json"
        p.write_text(json.dumps(obj))
        return p

    stage = {"name": "a", "args": ["--arch", "fasinet-l", "--steps", "2"]}
    with pytest.raises(rr.RecipeError, match="not an earlier stage"):
        rr.load_recipe(write({"family": "f", "stages": [{**stage, "args": [*stage["args"], "--init", "stage:b"]},
                                                        {**stage, "name": "b"}]}))
    with pytest.raises(rr.RecipeError, match="runner's"):
        rr.load_recipe(write({"family": "f", "stages": [{**stage, "args": [*stage["args"], "--minutes", "5"]}]}))
    with pytest.raises(rr.RecipeError, match="twice"):
        rr.load_recipe(write({"family": "f", "stages": [stage, stage]}))
    with pytest.raises(rr.RecipeError, match="neither bundled"):
        rr.resolve_weights("weights:no-such-model@1", tmp_path, fetch=False)
    out = subprocess.run([sys.executable, str(RUNNER), str(RECIPES[0]), "--stage", "nope", "--dry-run"],
                         capture_output=True, text=True, check=False)
    assert out.returncode == 2 and "no stage 'nope'" in out.stderr


@pytest.mark.slow  # starts subprocesses or trains
def test_runner_trains_a_toy_recipe_in_order_and_resumes(tmp_path):
    """Two 2-step stages on tiny images: the second starts from the first; a rerun skips both."""
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / f"img{i}.png")
    common = ["--arch", "fasinet-l", "--lambda", "0.013", "--steps", "2", "--seed", "0", "--batch-size", "1",
              "--patch-size", "32", "--lr", "1e-3", "--lr-drop-at", "0.5"]
    recipe = tmp_path / "toy.json"
    recipe.write_text(json.dumps({"family": "toy", "stages": [
        {"name": "a", "args": common},
        {"name": "b", "args": [*common, "--init", "stage:a"]}]}))
    runs = tmp_path / "runs"
    cmd = [sys.executable, str(RUNNER), str(recipe), "--runs", str(runs), "--data", str(data), "--poll", "0.2",
           "--extra", "--val-every 0 --val-fraction 0.2 --no-plot"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    logs = "".join(f.read_text() for f in sorted((runs / "toy" / "logs").glob("*.log")))
    assert out.returncode == 0, out.stdout + out.stderr + logs
    for name in ("a", "b"):
        summary = json.loads((runs / "toy" / name / "summary.json").read_text())
        assert summary["steps"] == 2
    assert json.loads((runs / "toy" / "b" / "summary.json").read_text())["init"] == str(
        runs / "toy" / "a" / "final.safetensors")
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0 and again.stdout.count("done already") == 2, again.stdout + again.stderr
