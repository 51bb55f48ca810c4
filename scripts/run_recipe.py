#!/usr/bin/env python
"""Train a shipped family from its recipe (recipes/<family>.json; the format: recipes/README.md).

    python scripts/run_recipe.py recipes/fasinet-h-mse.json --dry-run   # the commands, and what is done
    python scripts/run_recipe.py recipes/fasinet-h-mse.json             # every stage, in order
    python scripts/run_recipe.py recipes/fasinet-h-mse.json --stage h4-q4 --stage h4-q1
    python scripts/run_recipe.py recipes/fasinet-h-mse.json --release   # then the releases, as candidates

Each stage trains into RUNS/FAMILY/STAGE (``slimfast train --out``): running the recipe again resumes
an interrupted stage from its checkpoint and skips a finished one. A stage's ``--init`` is
``stage:NAME`` (that earlier stage's final.safetensors) or ``weights:MODEL@VERSION`` (bundled weights of
that version; a retired version comes out of git history at the commit retired.json names, checked
against its SHA-256). ``--jobs N`` runs up to N stages at once as soon as their warm starts exist (one
GPU holds several); each stage's output goes to RUNS/FAMILY/logs/STAGE.log.

``--release`` then runs the recipe's ``python -m slimfast.tools.release`` commands into RUNS/FAMILY/release
(``--release-dir``): candidates with measured Kodak cards, to hold against the bundled cards. Never
into slimfast/weights unless asked (``--release-dir slimfast/weights --release-version N``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "slimfast" / "weights"
RETIRED = WEIGHTS / "retired.json"
STAGE_KEYS = {"name", "about", "args", "card"}
RELEASE_KEYS = {"model", "stage", "args", "card_extra", "calibrate", "kodak", "hs8"}


class RecipeError(Exception):
    """A recipe that cannot be run as written (one line)."""


# -- the recipe ---------------------------------------------------------------------------------
def load_recipe(path: str | Path) -> dict:
    """The recipe at ``path``, checked for shape (not for what its arguments mean)."""
    path = Path(path)
    try:
        recipe = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise RecipeError(f"{path}: {e}") from None
    if not isinstance(recipe, dict) or not isinstance(recipe.get("family"), str) or not recipe["family"]:
        raise RecipeError(f"{path}: needs a \"family\"")
    stages = recipe.get("stages")
    if not isinstance(stages, list) or not stages:
        raise RecipeError(f"{path}: needs a non-empty \"stages\" list")
    seen: set[str] = set()
    for s in stages:
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or "/" in s["name"] or not s["name"]:
            raise RecipeError(f"{path}: every stage needs a \"name\" (no '/')")
        if s["name"] in seen:
            raise RecipeError(f"{path}: stage {s['name']!r} appears twice")
        if not isinstance(s.get("args"), list) or not all(isinstance(a, str) for a in s["args"]):
            raise RecipeError(f"{path}: stage {s['name']!r}: \"args\" must be a list of strings")
        if unknown := set(s) - STAGE_KEYS:
            raise RecipeError(f"{path}: stage {s['name']!r}: unknown keys {sorted(unknown)}")
        for flag in ("--out", "--minutes", "--data"):
            if flag in s["args"]:
                raise RecipeError(f"{path}: stage {s['name']!r}: {flag} is the runner's, not the recipe's")
        for ref in refs(s["args"]):
            if ref.startswith("stage:") and ref[6:] not in seen:
                raise RecipeError(f"{path}: stage {s['name']!r}: {ref} is not an earlier stage")
        seen.add(s["name"])
    for r in recipe.get("release", []):
        if not isinstance(r, dict) or r.get("stage") not in seen or not isinstance(r.get("args"), list):
            raise RecipeError(f"{path}: every release needs \"args\" and the \"stage\" it releases")
        if unknown := set(r) - RELEASE_KEYS:
            raise RecipeError(f"{path}: release of {r['stage']!r}: unknown keys {sorted(unknown)}")
        for ref in refs(r["args"]):
            if not ref.startswith("stage:") or ref[6:] not in seen:
                raise RecipeError(f"{path}: release of {r['stage']!r}: {ref} is not a stage")
    return recipe


def refs(args: list[str]) -> list[str]:
    """The ``stage:`` and ``weights:`` references among ``args``."""
    return [a for a in args if a.startswith(("stage:", "weights:"))]


def flag_value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args and args.index(flag) + 1 < len(args) else None


def stage_inputs(stage: dict) -> list[str]:
    """Names of the earlier stages this stage starts from."""
    return [r[6:] for r in refs(stage["args"]) if r.startswith("stage:")]


# -- where things are ---------------------------------------------------------------------------
def run_dir(runs: Path, family: str, stage: str) -> Path:
    return runs / family / stage


def stage_state(folder: Path, steps: int | None) -> tuple[str, int]:
    """("done" | "partial" | "new", step reached)."""
    summary = folder / "summary.json"
    if summary.is_file() and (folder / "final.safetensors").is_file():
        done = int(json.loads(summary.read_text()).get("steps", 0))
        if steps is None or done >= steps:
            return "done", done
    ckpt = folder / "checkpoint.json"
    if ckpt.is_file():
        try:
            return "partial", int(json.loads(ckpt.read_text()).get("step", 0))
        except (ValueError, json.JSONDecodeError):
            return "partial", 0
    return "new", 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _short(path: Path) -> Path:
    """``path`` relative to the working directory where it lies below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def retired_entry(name: str, version: str) -> dict | None:
    if not RETIRED.is_file():
        return None
    for e in json.loads(RETIRED.read_text()):
        if e.get("name") == name and str(e.get("version")) == version:
            return e
    return None


def resolve_weights(ref: str, runs: Path, fetch: bool) -> tuple[Path, str]:
    """``weights:MODEL@VERSION`` -> (a file holding exactly those weights, where it comes from).

    The bundled file where the bundle holds that version; else a folder on SLIMFAST_MODEL_PATH
    with a file of the retired card's SHA-256; else git history at the retired card's
    ``last_commit`` (copied into RUNS/weights/ when ``fetch``)."""
    spec = ref[len("weights:"):]
    name, _, version = spec.partition("@")
    if not name or not version:
        raise RecipeError(f"{ref}: write weights:MODEL@VERSION")
    card = WEIGHTS / f"{name}.json"
    if card.is_file() and str(json.loads(card.read_text()).get("version")) == version:
        return _short(WEIGHTS / f"{name}.safetensors"), f"bundled {name} version {version}"
    entry = retired_entry(name, version)
    if entry is None:
        raise RecipeError(f"{ref}: neither bundled nor in {RETIRED.relative_to(ROOT)}")
    sha = entry.get("sha256")
    for folder in filter(None, os.environ.get("SLIMFAST_MODEL_PATH", "").split(os.pathsep)):
        for stem in (name, f"{name}.v{version}"):
            f = Path(folder) / f"{stem}.safetensors"
            if f.is_file() and _sha256(f) == sha:
                return f, f"{name} version {version} from SLIMFAST_MODEL_PATH"
    cached = runs / "weights" / f"{name}@{version}.safetensors"
    commit = entry.get("last_commit")
    where = f"retired {name} version {version}: git {str(commit)[:7]}, slimfast {entry.get('last_release')}"
    if cached.is_file() and _sha256(cached) == sha:
        return cached, where
    if not commit:
        raise RecipeError(f"{ref}: retired without a last_commit; install slimfast {entry.get('last_release')}'s "
                          "weights on SLIMFAST_MODEL_PATH")
    for stem in (name, f"{name}.v{version}"):
        obj = f"{commit}:slimfast/weights/{stem}.safetensors"
        if subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", obj], capture_output=True, check=False).returncode:
            continue
        if not fetch:
            return cached, f"{where}; copied there when the stage starts"
        blob = subprocess.run(["git", "-C", str(ROOT), "show", obj], capture_output=True, check=True).stdout
        if hashlib.sha256(blob).hexdigest() != sha:
            continue
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".tmp")
        tmp.write_bytes(blob)
        tmp.replace(cached)
        return cached, where
    missing = (f"{ref}: not in git history here (commit {commit}); install slimfast "
               f"{entry.get('last_release')}'s weights on SLIMFAST_MODEL_PATH")
    if not fetch:  # a dry run says so and goes on
        return cached, f"NOT AVAILABLE: {missing}"
    raise RecipeError(missing)


def resolve(args: list[str], recipe: dict, runs: Path, fetch: bool) -> tuple[list[str], list[str]]:
    """``args`` with every reference replaced by a path, and a note per reference."""
    out, notes = [], []
    for a in args:
        if a.startswith("stage:"):
            p = run_dir(runs, recipe["family"], a[6:])
            out.append(str(p / "final.safetensors") if flag_before(args, a) == "--init" else str(p))
            notes.append(f"{a} -> {out[-1]}")
        elif a.startswith("weights:"):
            p, where = resolve_weights(a, runs, fetch)
            out.append(str(p))
            notes.append(f"{a} -> {p} ({where})")
        else:
            out.append(a)
    return out, notes


def flag_before(args: list[str], value: str) -> str | None:
    """The flag that ``value`` belongs to (``--chain a b``: both are ``--chain``'s)."""
    for a in reversed(args[:args.index(value)]):
        if a.startswith("--"):
            return a
    return None


# -- commands -----------------------------------------------------------------------------------
class Runner:
    def __init__(self, recipe: dict, a: argparse.Namespace):
        self.recipe, self.a = recipe, a
        self.family = recipe["family"]
        self.runs = Path(a.runs)
        self.stages = {s["name"]: s for s in recipe["stages"]}

    def train_command(self, stage: dict, fetch: bool) -> tuple[list[str], list[str]]:
        args, notes = resolve(stage["args"], self.recipe, self.runs, fetch)
        cmd = [self.a.python, "-m", "slimfast.tools.train", *args,
               "--out", str(run_dir(self.runs, self.family, stage["name"])),
               "--threads", str(self.a.threads), "--no-progress"]
        if self.a.data:
            cmd += ["--data", *self.a.data]
        return cmd + shlex.split(self.a.extra), notes

    def release_commands(self, rel: dict) -> list[list[str]]:
        args, _ = resolve(rel["args"], self.recipe, self.runs, fetch=False)
        out = str(self.a.release_dir or self.runs / self.family / "release")
        if self.a.release_version:
            args = _replace(args, "--version", self.a.release_version)
        final = run_dir(self.runs, self.family, rel["stage"]) / "final.safetensors"
        cmds = []
        if rel.get("hs8") is not None:  # FasiNet-H's 8-bit hyper-synthesis, calibrated on training images
            hs8 = final.with_name("final-hs8.safetensors")
            cmds.append([self.a.python, "-m", "slimfast.tools.hyper8", str(final), "--out", str(hs8), *rel["hs8"]])
            final = hs8
        cmd = [self.a.python, "-m", "slimfast.tools.release", str(final), *args, "--out-dir", out]
        if rel.get("card_extra"):
            cmd += ["--card-extra", json.dumps(rel["card_extra"])]
        cmds.append(cmd)
        if rel.get("calibrate") is not None:
            name = flag_value(rel["args"], "--name")
            cmds.append([self.a.python, "-m", "slimfast.tools.release", "--calibrate-int8", name, "--out-dir", out,
                         *rel["calibrate"]])
        return cmds

    def selected(self) -> list[str]:
        names = [s["name"] for s in self.recipe["stages"]]
        for n in self.a.stage or []:
            if n not in self.stages:
                raise RecipeError(f"no stage {n!r} in {self.family} (stages: {', '.join(names)})")
        return [n for n in names if not self.a.stage or n in self.a.stage]

    def state(self, name: str) -> tuple[str, int]:
        steps = flag_value(self.stages[name]["args"], "--steps")
        return stage_state(run_dir(self.runs, self.family, name), int(steps) if steps else None)

    def shown(self, cmd: list[str]) -> str:
        return shlex.join(["python" if cmd[0] == sys.executable else cmd[0], *cmd[1:]])

    # -- dry run ---------------------------------------------------------------------------------
    def dry_run(self) -> int:
        print(f"# {self.family}: {len(self.recipe['stages'])} stages, runs in {self.runs / self.family}")
        for name in self.selected():
            stage = self.stages[name]
            cmd, notes = self.train_command(stage, fetch=False)
            state, step = self.state(name)
            print(f"\n## stage {name}: {state}" + (f" (step {step})" if state != "new" else ""))
            if stage.get("about"):
                print(f"#  {stage['about']}")
            for n in notes:
                print(f"#  {n}")
            print(self.shown(cmd))
        if self.recipe.get("release") and not self.a.stage:
            print(f"\n## release{'' if self.a.release else ' (with --release)'}")
            for rel in self.recipe["release"]:
                for cmd in self.release_commands(rel):
                    print(self.shown(cmd))
        return 0

    # -- run ---------------------------------------------------------------------------------------
    def run(self) -> int:
        todo = self.selected()
        for name in todo:  # every input outside the selection must be there already
            for dep in stage_inputs(self.stages[name]):
                if dep not in todo and self.state(dep)[0] != "done":
                    raise RecipeError(f"stage {name} starts from stage {dep}, which has not finished "
                                      f"(run it first: --stage {dep})")
        logs = self.runs / self.family / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        running: dict[str, tuple[subprocess.Popen, object]] = {}
        failed: list[str] = []
        pending = [n for n in todo if self.state(n)[0] != "done"]
        for n in todo:
            if n not in pending:
                print(f"done already: {self.family}/{n}", flush=True)
        stop = _forward_signals(running)
        while pending or running:
            for n in list(pending):
                if len(running) >= self.a.jobs or stop["requested"]:
                    break
                deps = stage_inputs(self.stages[n])
                if any(d in failed for d in deps):
                    pending.remove(n)
                    failed.append(n)
                    print(f"skipped: {self.family}/{n} (its warm start failed)", file=sys.stderr, flush=True)
                    continue
                if any(self.state(d)[0] != "done" for d in deps):
                    if self.a.jobs == 1:  # sequential: the recipe's order is the order
                        break
                    continue
                cmd, _ = self.train_command(self.stages[n], fetch=True)
                log = open(logs / f"{n}.log", "a")  # noqa: SIM115 (open while the stage runs)
                log.write(f"$ {shlex.join(cmd)}\n")
                log.flush()
                # A session of its own: a Ctrl-C reaches the runner alone, which passes it on once
                # (a second SIGINT would make slimfast train abort instead of checkpointing).
                running[n] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=_env(),
                                               start_new_session=True), log)
                pending.remove(n)
                print(f"start: {self.family}/{n} (log {logs / f'{n}.log'})", flush=True)
            if not running and pending:
                if stop["requested"]:
                    break
                raise RecipeError(f"stages {pending} wait for warm starts that are not there")
            time.sleep(self.a.poll)
            for n, (p, log) in list(running.items()):
                if p.poll() is None:
                    continue
                log.close()
                del running[n]
                state, step = self.state(n)
                if p.returncode == 0 and state == "done":
                    print(f"done: {self.family}/{n} ({step} steps)", flush=True)
                else:
                    failed.append(n)
                    print(f"FAILED: {self.family}/{n} (exit {p.returncode}, {state} at step {step}; "
                          f"see {logs / f'{n}.log'}; run again to resume)", file=sys.stderr, flush=True)
        if failed or stop["requested"] or pending:
            return 1
        if self.a.release and not self.a.stage:
            for rel in self.recipe.get("release", []):
                for cmd in self.release_commands(rel):
                    print(f"$ {shlex.join(cmd)}", flush=True)
                    if subprocess.run(cmd, env=_env(), check=False).returncode:
                        return 1
        return 0


def _replace(args: list[str], flag: str, value: str) -> list[str]:
    if flag in args:
        args = list(args)
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _forward_signals(running: dict) -> dict:
    """SIGTERM/SIGINT: pass them to the stages (each checkpoints and exits) and start nothing new."""
    stop = {"requested": False}

    def handler(signum, frame):
        stop["requested"] = True
        for p, _ in running.values():
            if p.poll() is None:
                p.send_signal(signum)

    for s in (signal.SIGINT, signal.SIGTERM):
        signal.signal(s, handler)
    return stop


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/run_recipe.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="The recipe format: recipes/README.md.")
    p.add_argument("recipe", help="recipes/<family>.json")
    p.add_argument("--stage", action="append", metavar="NAME",
                   help="run only this stage (repeatable); its warm starts must have finished")
    p.add_argument("--runs", default="runs", help="run folders go to RUNS/FAMILY/STAGE (default runs)")
    p.add_argument("--dry-run", action="store_true", help="print the commands and each stage's state; run nothing")
    p.add_argument("--jobs", type=int, default=1, help="stages at once, each when its warm start is there (default 1)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per stage (default 1)")
    p.add_argument("--data", nargs="+", default=None, help="training data folders (default: slimfast train's)")
    p.add_argument("--extra", default="", help="more slimfast train flags for every stage, e.g. \"--bf16\"")
    p.add_argument("--python", default=sys.executable, help=argparse.SUPPRESS)
    p.add_argument("--poll", type=float, default=2.0, help=argparse.SUPPRESS)
    p.add_argument("--release", action="store_true", help="after the stages, run the recipe's releases")
    p.add_argument("--release-dir", default=None, help="release into this folder (default RUNS/FAMILY/release)")
    p.add_argument("--release-version", default=None, help="release as this version instead of the recipe's")
    return p


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    if a.jobs < 1:
        print("error: --jobs must be at least 1", file=sys.stderr)
        return 2
    try:
        runner = Runner(load_recipe(a.recipe), a)
        return runner.dry_run() if a.dry_run else runner.run()
    except RecipeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
