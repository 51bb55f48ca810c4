"""Pickle-free checkpoints that resume a run exactly, and the weights a run exports.

``checkpoint.safetensors`` holds the model and both optimizers' tensors plus every rank's torch
(and CUDA) RNG state and, in its metadata, the JSON state (step, wall time, numpy/python RNG
state of every rank, optimizer hyper-parameters, running log averages, arguments):
one file, one atomic commit. ``checkpoint.json`` is a readable copy.
"""
from __future__ import annotations

import copy
import hashlib
import json
import random
from pathlib import Path

import numpy as np
import torch

from ...models.weights import save_model

CHECKPOINT_FORMAT = "slimfast-checkpoint-2"


def capture_rng(rng: np.random.Generator, device: torch.device | None = None) -> dict:
    """This process's RNG states: torch CPU (and CUDA), the sampler's numpy generator, python."""
    d = {"torch": torch.get_rng_state(), "numpy": rng.bit_generator.state,
         "python": list(random.getstate()[1])}
    if device is not None and device.type == "cuda":
        d["cuda"] = torch.cuda.get_rng_state(device)
    return d


def restore_rng(d: dict, device: torch.device | None = None) -> np.random.Generator:
    torch.set_rng_state(d["torch"].cpu())
    if d.get("cuda") is not None and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(d["cuda"].cpu(), device)
    if d.get("python") is not None:
        random.setstate((3, tuple(int(v) for v in d["python"]), None))
    rng = np.random.default_rng()
    rng.bit_generator.state = d["numpy"]
    return rng


def model_device(model) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().cpu().contiguous()
    return t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def state_hash(model, *optimizers) -> str:
    """SHA-256 over the model's state dict and the optimizers' state tensors (sorted names)."""
    h = hashlib.sha256()
    for k, v in sorted(model.state_dict().items()):
        h.update(k.encode())
        h.update(tensor_bytes(v))
    for o in optimizers:
        for pid, st in sorted(o.state_dict()["state"].items()):
            for k, v in sorted(st.items()):
                t = v if torch.is_tensor(v) else torch.tensor(v)
                h.update(f"{pid}.{k}".encode())
                h.update(tensor_bytes(t))
    return h.hexdigest()


def _optimizer_tensors(tensors: dict, optimizers: dict) -> dict:
    """Each optimizer's state tensors into ``tensors`` (``tag.pid.key``); returns the JSON part."""
    meta = {}
    for tag, o in optimizers.items():
        sd = o.state_dict()
        meta[tag] = {"param_groups": sd["param_groups"], "state_keys": {}}
        for pid, st in sd["state"].items():
            keys = []
            for k, v in st.items():
                t = v if torch.is_tensor(v) else torch.tensor(v)
                tensors[f"{tag}.{pid}.{k}"] = t.detach().cpu().contiguous()
                keys.append(k)
            meta[tag]["state_keys"][str(pid)] = keys
    return meta


def _rng_tensors(tensors: dict, rng_states: list[dict]) -> list[dict]:
    """Every rank's torch (CUDA) RNG state into ``tensors``; returns the JSON part per rank."""
    ranks = []
    for r, d in enumerate(rng_states):
        tensors[f"rng.torch.{r}"] = d["torch"].cpu().clone()
        if d.get("cuda") is not None:
            tensors[f"rng.cuda.{r}"] = d["cuda"].cpu().clone()
        ranks.append({"numpy": d["numpy"], "python": d["python"]})
    tensors["rng.torch"] = rng_states[0]["torch"].cpu().clone()  # format 1 readers
    return ranks


def save_checkpoint(run: Path, model, opt, aux_opt, state: dict, rng_states: list[dict] | None = None,
                    extra: dict | None = None) -> None:
    """Atomically write ``checkpoint.safetensors`` (+ a readable ``checkpoint.json``).

    ``state`` is JSON-able except ``state["rng"]``, the numpy generator of this process.
    ``rng_states`` (one :func:`capture_rng` dict per rank, rank order) defaults to this
    process's RNG states. ``extra``: more tensors to keep (names not starting ``model.``,
    ``opt.``, ``aux.`` or ``rng``), given back by :func:`load_checkpoint` in ``meta["extra"]``.
    """
    from safetensors.torch import save_file

    run = Path(run)
    if rng_states is None:
        rng_states = [capture_rng(state["rng"], model_device(model))]
    tensors = {f"model.{k}": v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    tensors.update(extra or {})
    meta_opt = _optimizer_tensors(tensors, {"opt": opt, "aux": aux_opt})
    ranks = _rng_tensors(tensors, rng_states)
    full = {k: v for k, v in state.items() if k != "rng"}
    full.update(format=CHECKPOINT_FORMAT, optimizers=meta_opt, world_size=len(rng_states), rng_ranks=ranks,
                numpy_rng=ranks[0]["numpy"], python_rng=ranks[0]["python"])
    text = json.dumps(full, default=_json_default)
    tmp = run / "checkpoint.safetensors.tmp"
    save_file(tensors, str(tmp), metadata={"checkpoint": text})
    tmp.replace(run / "checkpoint.safetensors")  # the commit point: one file holds everything
    (run / "checkpoint.json.tmp").write_text(json.dumps(json.loads(text), indent=1))
    (run / "checkpoint.json.tmp").replace(run / "checkpoint.json")


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))


def has_checkpoint(run: Path) -> bool:
    return (Path(run) / "checkpoint.safetensors").exists()


def load_checkpoint(run: Path, model, opt, aux_opt, rank: int = 0, device: torch.device | None = None) -> dict:
    """Restore model, optimizers and this rank's RNG states; returns the JSON state.

    ``meta["rng"]`` is the restored numpy generator, or ``None`` when the checkpoint holds no
    RNG state for ``rank`` (it was written by fewer processes: the caller must reseed).
    Reads format 1 checkpoints (JSON state in ``checkpoint.json`` only) too.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    run = Path(run)
    with safe_open(str(run / "checkpoint.safetensors"), framework="pt") as f:
        embedded = (f.metadata() or {}).get("checkpoint")
    meta = json.loads(embedded) if embedded else json.loads((run / "checkpoint.json").read_text())
    tensors = load_file(str(run / "checkpoint.safetensors"))
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    for tag, o in (("opt", opt), ("aux", aux_opt)):
        m = meta["optimizers"][tag]
        st = {int(pid): {k: tensors[f"{tag}.{pid}.{k}"] for k in keys} for pid, keys in m["state_keys"].items()}
        o.load_state_dict({"state": st, "param_groups": m["param_groups"]})
    meta["rng"] = _restore_rank_rng(meta, tensors, rank, device if device is not None else model_device(model))
    meta["extra"] = {k: v for k, v in tensors.items() if k.startswith(("ema.", "balance."))}
    return meta


def _restore_rank_rng(meta: dict, tensors: dict, rank: int, device: torch.device) -> np.random.Generator | None:
    if "rng_ranks" in meta:
        if rank >= len(meta["rng_ranks"]):
            return None
        d = dict(meta["rng_ranks"][rank], torch=tensors[f"rng.torch.{rank}"], cuda=tensors.get(f"rng.cuda.{rank}"))
        return restore_rng(d, device)
    if rank == 0:  # format 1: one process's state, flat
        return restore_rng({"torch": tensors["rng.torch"], "numpy": meta["numpy_rng"],
                            "python": meta["python_rng"]}, device)
    return None


def export_weights(model, path: Path, name: str) -> None:
    """The weights with frozen integer tables, on a copy: the training model stays as it is."""
    export = copy.deepcopy(model.module if hasattr(model, "module") else model).cpu().eval()
    export.update()
    save_model(export, path, name=name)


def save_snapshot(model, run: Path, step: int, minutes: float) -> None:
    """Weights as they are now, for a learning curve of this run (``snapshots/index.csv``)."""
    snap = run / "snapshots"
    snap.mkdir(exist_ok=True)
    export_weights(model, snap / f"step-{step:07d}.safetensors", name=f"{run.name}@{step}")
    with open(snap / "index.csv", "a") as f:
        f.write(f"{step},{minutes:.3f},step-{step:07d}.safetensors\n")
