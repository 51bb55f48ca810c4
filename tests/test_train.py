"""Training pipeline: exact resume (also of the old train.py's checkpoints), pickle-free checkpoints, DDP, MS-SSIM."""
from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slimfast import metrics
from slimfast.tools import train as T
from slimfast.models import build
from slimfast.tools.training.checkpoint import tensor_bytes
from slimfast.tools.training.objective import entropy_models_in_fp32

from . import golden_files

ROOT = Path(__file__).resolve().parents[1]
OLD_CHECKPOINT = ROOT / "tests" / "fixtures" / "old_checkpoint"


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """Eight small smooth-plus-noise photos-to-be (80x96); a 30% validation split holds some back."""
    d = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:80, 0:96]
    for i in range(8):
        base = np.stack([np.sin(x / (5 + i)) * 100 + 128, np.cos(y / (7 + i)) * 100 + 128, (x + y) * 1.2], 2)
        im = np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(im).save(d / f"img{i}.png")
    return d


def common(data: Path, out: Path, *extra) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--arch", "fasinet-l", "--steps", "6",
            "--batch-size", "2", "--patch-size", "32", "--threads", "1", "--log-every", "1",
            "--val-every", "3", "--val-fraction", "0.3", "--val-crop", "64", "--lr-drop-at", "0.5",
            "--no-progress", *map(str, extra)]


def trajectory(run: Path) -> list[tuple]:
    """Every logged row but its wall-clock column."""
    with open(run / "log.csv", newline="") as f:
        return [tuple(v for k, v in r.items() if k != "minutes") for r in csv.DictReader(f)]


def checkpoint_tensors(run: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(run / "checkpoint.safetensors"))


@pytest.fixture(scope="module")
def straight_run(tiny_data, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "straight"
    assert T.main(common(tiny_data, out)) == 0
    return out


def test_interrupted_run_resumes_exactly(straight_run, tiny_data, tmp_path):
    out = tmp_path / "interrupted"
    # Stop at step 2 (before the lr drop at step 3 and a validation), then at 4, then finish.
    assert T.main(common(tiny_data, out, "--stop-at", 2)) == 0
    assert not (out / "final.safetensors").exists()
    assert T.main(common(tiny_data, out, "--stop-at", 4)) == 0
    assert T.main(common(tiny_data, out)) == 0

    a, b = trajectory(straight_run), trajectory(out)
    assert len([r for r in a if r[1] == "train"]) == 6 and len([r for r in a if r[1] == "val"]) == 2
    assert a == b
    lrs = [float(r[5]) for r in a if r[1] == "train"]
    assert lrs == [1e-3] * 3 + [1e-4] * 3

    # Model, both optimizers (main and aux) and every RNG state end bit-identical.
    ta, tb = checkpoint_tensors(straight_run), checkpoint_tensors(out)
    assert ta.keys() == tb.keys()
    assert any(k.startswith("aux.") for k in ta) and any(k.startswith("opt.") for k in ta)
    for k in ta:
        assert torch.equal(ta[k], tb[k]), k
    ja = json.loads((straight_run / "checkpoint.json").read_text())
    jb = json.loads((out / "checkpoint.json").read_text())
    assert ja["rng_ranks"] == jb["rng_ranks"] and ja["step"] == jb["step"] == 6


def test_rows_after_the_checkpoint_are_dropped_on_resume(straight_run, tiny_data, tmp_path):
    out = tmp_path / "crashed"
    assert T.main(common(tiny_data, out, "--stop-at", 3)) == 0
    with open(out / "log.csv", "a") as f:  # what a crash after the checkpoint would leave behind
        f.write("4,0.1,train,999,9,9,0.001,\n")
    assert T.main(common(tiny_data, out)) == 0
    assert trajectory(out) == trajectory(straight_run)


def test_checkpoint_is_pickle_free_and_self_contained(straight_run):
    from safetensors import safe_open

    names = {p.name for p in straight_run.iterdir()}
    assert {"checkpoint.safetensors", "checkpoint.json", "final.safetensors", "log.csv", "summary.json",
            "config.json"} <= names
    assert not any(n.endswith((".pt", ".pth", ".pkl", ".bin")) for n in names)
    with safe_open(str(straight_run / "checkpoint.safetensors"), framework="pt") as f:
        meta = json.loads(f.metadata()["checkpoint"])
        keys = set(f.keys())
    assert meta["format"] == T.CHECKPOINT_FORMAT and meta["step"] == 6 and meta["world_size"] == 1
    assert {"rng.torch.0", "rng.torch"} <= keys
    summary = json.loads((straight_run / "summary.json").read_text())
    assert summary["steps"] == 6 and summary["device"] == "cpu"
    from slimfast.models.weights import load_model

    model = load_model(straight_run / "final.safetensors")
    assert model.architecture == "fasinet-l" and model.entropy_bottleneck.updated


def test_training_plot_written_when_matplotlib_is_there(straight_run):
    pytest.importorskip("matplotlib")
    assert (straight_run / "training.png").stat().st_size > 1000


def test_load_checkpoint_restores_rng(straight_run):
    model = build("fasinet-l")
    opt = torch.optim.Adam(model.main_parameters())
    aux = torch.optim.Adam(model.aux_parameters())
    meta = T.load_checkpoint(straight_run, model, opt, aux)
    first = meta["rng"].random()
    meta2 = T.load_checkpoint(straight_run, model, opt, aux)
    assert meta2["rng"].random() == first
    assert T.load_checkpoint(straight_run, model, opt, aux, rank=1)["rng"] is None  # a rank it never saw


def test_ms_ssim_matches_pytorch_msssim():
    ref = pytest.importorskip("pytorch_msssim")
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 192, 180, generator=g)
    y = (x + 0.08 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    ours = T.ms_ssim(y, x, data_range=1.0)
    theirs = ref.ms_ssim(y, x, data_range=1.0, size_average=True)
    assert abs(float(ours) - float(theirs)) < 1e-5
    assert abs(float(T.ms_ssim(x, x)) - 1.0) < 1e-6


def test_one_ms_ssim_for_training_and_evaluation():
    """Evaluation's MS-SSIM of 8-bit images (numpy) is training's recipe (torch), and still
    pytorch_msssim's value."""
    ref = pytest.importorskip("pytorch_msssim")
    assert T.ms_ssim is metrics.ms_ssim_tensor
    rng = np.random.default_rng(3)
    a = rng.integers(0, 256, (170, 200, 3), dtype=np.uint8)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    ta, tb = (torch.from_numpy(v).permute(2, 0, 1)[None].float() for v in (a, b))
    assert abs(metrics.ms_ssim(a, b) - float(ref.ms_ssim(ta, tb, data_range=255.0))) < 1e-5
    assert float(T.ms_ssim(tb / 255, ta / 255)) == pytest.approx(metrics.ms_ssim(a, b), abs=1e-5)


def test_ms_ssim_needs_large_patches(tiny_data, tmp_path):
    with pytest.raises(ValueError, match="161"):
        T.ms_ssim(torch.rand(1, 3, 128, 128), torch.rand(1, 3, 128, 128))
    with pytest.raises(SystemExit, match="patch-size"):
        T.main(common(tiny_data, tmp_path / "r", "--metric", "ms-ssim"))


def test_ms_ssim_loss_has_gradients():
    x = torch.rand(1, 3, 176, 176)
    y = (x + 0.1 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    T.distortion(y, x, "ms-ssim").backward()
    assert torch.isfinite(y.grad).all() and y.grad.abs().sum() > 0


@pytest.mark.slow  # starts subprocesses or trains
def test_bf16_keeps_entropy_models_in_float32():
    model = build("fasinet-h").train()
    entropy_models_in_fp32(model)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(torch.rand(1, 3, 64, 64))
    assert all(v.dtype == torch.float32 for v in out["likelihoods"].values())


@pytest.mark.slow
def test_ddp_two_ranks_stay_identical(tiny_data, tmp_path):
    out, hashes = tmp_path / "ddp", tmp_path / "hash"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    args = common(tiny_data, out, "--debug-state-hash", hashes)
    args[args.index("--steps") + 1] = "3"
    p = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                        "-m", "slimfast.tools.train", *args], capture_output=True, text=True, env=env, timeout=240,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    r0 = json.loads((hashes / "rank0.json").read_text())
    r1 = json.loads((hashes / "rank1.json").read_text())
    assert r0["world_size"] == r1["world_size"] == 2 and r0["step"] == r1["step"] == 3
    assert r0["state"] == r1["state"]  # weights and optimizer states identical after all-reduce
    assert r0["data"] != r1["data"]    # but each rank trained on its own patches
    meta = json.loads((out / "checkpoint.json").read_text())
    assert meta["world_size"] == 2 and len(meta["rng_ranks"]) == 2
    assert meta["rng_ranks"][0]["numpy"] != meta["rng_ranks"][1]["numpy"]
    rows = trajectory(out)
    assert [r[0] for r in rows if r[1] == "train"] == ["1", "2", "3"]  # one writer: rank 0
    assert (out / "final.safetensors").exists()


def test_snapshots_keep_weights_without_changing_the_run(straight_run, tiny_data, tmp_path):
    from slimfast.models.weights import load_model

    out = tmp_path / "snap"
    assert T.main(common(tiny_data, out, "--snapshot-minutes", "1e-9")) == 0
    assert trajectory(out) == trajectory(straight_run)       # snapshots do not perturb training
    rows = [line.split(",") for line in (out / "snapshots" / "index.csv").read_text().splitlines()]
    steps = [int(r[0]) for r in rows]
    assert steps == sorted(steps) and len(steps) >= 5 and steps[-1] == 6
    m = load_model(out / "snapshots" / rows[-1][2])
    assert m.entropy_bottlenecks()[0].updated


def _old_checkpoint_args(run: Path) -> list[str]:
    """The fixture's command (tests/fixtures/old_checkpoint/README.md) without its --stop-at 2."""
    return ["--data", str(OLD_CHECKPOINT / "images"), "--out", str(run), "--arch", "fasinet-l", "--model-config",
            '{"N": 4, "M": 8}', "--steps", "4", "--batch-size", "2", "--patch-size", "32", "--threads", "1",
            "--log-every", "1", "--val-every", "2", "--val-fraction", "0.3", "--val-crop", "32",
            "--lr-drop-at", "0.5", "--no-progress", "--no-plot"]


def test_checkpoint_of_the_old_train_py_resumes_exactly(tmp_path, capsys):
    """A checkpoint written at step 2 by train.py before it became slimfast.tools.training continues
    as that code continued it: every logged value, every checkpoint tensor, every RNG state."""
    expected = json.loads((OLD_CHECKPOINT / "expected.json").read_text())
    run = tmp_path / "run"
    shutil.copytree(OLD_CHECKPOINT / "run", run)
    assert T.main(_old_checkpoint_args(run)) == 0
    assert f"resuming {run} at step 2" in capsys.readouterr().err  # not a fresh run that happens to agree
    with open(run / "log.csv", newline="") as f:
        rows = [{k: v for k, v in r.items() if k != "minutes"} for r in csv.DictReader(f)]
    meta = json.loads((run / "checkpoint.json").read_text())
    assert meta["step"] == expected["step"] == 4 and meta["format"] == T.CHECKPOINT_FORMAT
    # How many numbers each generator drew does not depend on the machine's float kernels.
    assert hashlib.sha256(json.dumps(meta["rng_ranks"]).encode()).hexdigest() == expected["rng_ranks_sha256"]
    assert [(r["step"], r["kind"], r["lr"]) for r in rows] == [(r["step"], r["kind"], r["lr"]) for r in expected["log"]]
    digest = {k: hashlib.sha256(tensor_bytes(v)).hexdigest()[:16] for k, v in sorted(checkpoint_tensors(run).items())}
    assert digest.keys() == expected["checkpoint_sha256_16"].keys()
    if golden_files.fingerprint() == expected["fingerprint"]:
        assert rows == expected["log"]
        assert digest == expected["checkpoint_sha256_16"]
    else:  # other float kernels: the same trajectory to a few digits
        for got, want in zip(rows, expected["log"]):
            for k in ("loss", "bpp", "psnr"):
                if want[k]:
                    assert float(got[k]) == pytest.approx(float(want[k]), rel=1e-3), (got, want)


def test_validation_on_whole_images_measures_every_pixel():
    from slimfast.models import build
    from slimfast.tools.training.validate import _crop_size, validate

    assert _crop_size((100, 150), 64, 16) == (64, 64)
    assert _crop_size((100, 150), 0, 16) == (96, 144)
    torch.manual_seed(0)
    model = build("fasinet-l", {"N": 8, "M": 16})
    model.update()
    image = (torch.rand(3, 100, 150) * 255).to(torch.uint8)
    whole, crop = validate(model, [image], "mse", 0.0, crop=0), validate(model, [image], "mse", 0.0, crop=64)
    assert whole["bpp"] > 0 and crop["bpp"] > 0 and whole["psnr"] != crop["psnr"]


def test_ema_is_validated_exported_and_resumed(straight_run, tiny_data, tmp_path):
    from safetensors.torch import load_file

    whole, parts = tmp_path / "ema", tmp_path / "ema-resumed"
    assert T.main(common(tiny_data, whole, "--ema", 0.5)) == 0
    assert T.main(common(tiny_data, parts, "--ema", 0.5, "--stop-at", 2)) == 0
    assert T.main(common(tiny_data, parts, "--ema", 0.5)) == 0
    assert trajectory(whole) == trajectory(parts)  # the average is resumed, not restarted
    tw, tp, raw = checkpoint_tensors(whole), checkpoint_tensors(parts), checkpoint_tensors(straight_run)
    assert any(k.startswith("ema.") for k in tw) and all(torch.equal(tw[k], tp[k]) for k in tw)
    # Training itself is untouched: the raw weights are the run's without --ema.
    assert all(torch.equal(tw[k], raw[k]) for k in raw if k.startswith("model."))
    final, plain = load_file(str(whole / "final.safetensors")), load_file(str(straight_run / "final.safetensors"))
    assert any(not torch.equal(final[k], plain[k]) for k in plain if k.endswith("weight"))  # the average ships
    a, b = trajectory(whole), trajectory(straight_run)
    assert [r for r in a if r[1] == "train"] == [r for r in b if r[1] == "train"]
    assert [r for r in a if r[1] == "val"] != [r for r in b if r[1] == "val"]  # validated on the average
    with pytest.raises(SystemExit, match="--ema must be between 0 and 1"):
        T.main(common(tiny_data, tmp_path / "bad", "--ema", 1.5))


def test_rd_balance_starts_as_lambda_d_plus_r_and_moves_to_the_slower_term():
    from slimfast.tools.training.balance import RDBalance

    w = torch.tensor([0.7, -0.3], requires_grad=True)
    lam_d, rate = (w[0] ** 2 + 1.0), (w[1] ** 2 + 0.4)
    balance = RDBalance()
    balance.loss(torch.stack([lam_d, rate])).backward()
    plain = torch.autograd.grad(w[0] ** 2 + 1.0 + w[1] ** 2 + 0.4, w)[0]
    assert torch.allclose(w.grad, plain / 2)  # at the start: half the gradient of lambda*D + R
    start = torch.tensor([1.49, 0.49])
    assert balance.stats(start)["balance_d"] == pytest.approx(1.0)
    assert balance.stats(torch.tensor([1.49, 0.245]))["balance_d"] == pytest.approx(0.5)  # 1/R: the rate weighs more
    for _ in range(20):  # the rate falls by 10% a step, the distortion by 1%: weigh the distortion up
        balance.update(torch.tensor([1.0, 1.0]), torch.tensor([0.99, 0.9]))
    assert balance.stats(start)["balance_d"] > 1.1
    again = RDBalance()
    again.load(balance.tensors())
    assert again.stats(start) == balance.stats(start) and again.t == 20
    w.grad = None
    around = RDBalance("famo-lambda")  # the terms themselves: at the start exactly lambda*D + R's gradient
    around.loss(torch.stack([w[0] ** 2 + 1.0, w[1] ** 2 + 0.4])).backward()
    assert torch.allclose(w.grad, plain)
    around.update(torch.tensor([1.0, 1.0]), torch.tensor([0.99, 0.9]))
    assert around.stats()["balance_d"] > 1.0


def test_rd_balance_run_resumes_exactly_and_checks_its_use(tiny_data, tmp_path):
    whole, parts = tmp_path / "famo", tmp_path / "famo-resumed"
    assert T.main(common(tiny_data, whole, "--rd-balance", "famo")) == 0
    assert T.main(common(tiny_data, parts, "--rd-balance", "famo", "--stop-at", 2)) == 0
    assert T.main(common(tiny_data, parts, "--rd-balance", "famo")) == 0
    assert trajectory(whole) == trajectory(parts)  # the logits and their Adam state are resumed
    tw = checkpoint_tensors(whole)
    assert int(tw["balance.t"][0]) == 6 and not torch.equal(tw["balance.xi"], tw["balance.xi0"])
    with pytest.raises(SystemExit, match="--rd-balance famo trains one width"):
        T.main(["--data", str(tiny_data), "--out", str(tmp_path / "slim"), "--arch", "slim-fasinet-l",
                "--lambdas", "0.02", "0.01", "--model-config", '{"N": 8, "M": 16, "widths": [16, 8]}',
                "--steps", "1", "--rd-balance", "famo", "--no-progress"])
