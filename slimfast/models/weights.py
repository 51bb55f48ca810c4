"""Model weights on disk: safetensors only (never pickle), with the model's identity inside.

A weights file holds the state dict plus string metadata: ``architecture``, ``config`` (JSON),
``name`` and ``version``. Floating-point parameters may be stored as fp16, and large convolution
weights as int8 with a scale per slice (:mod:`slimfast.format.storage`); integer tables and the
integer hyper-synthesis keep their exact values (with int8 storage, the latter's 13-bit
weights are bit-packed losslessly, and the float copy of the same layers is not stored but
rebuilt from them on loading). Loading rebuilds the same float32 weights on
every machine. :func:`file_digest` is the SHA-256 that
containers carry so a file is never decoded with other weights.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from . import CompressionModel, build

# Buffers that coding relies on bit-exactly keep their dtype whatever ``half`` says.
_EXACT_SUFFIXES = ("freqs", "lengths", "offsets", "_medians", "scale_table")


def _is_exact(name: str, t: torch.Tensor) -> bool:
    leaf = name.rsplit(".", 1)[-1]
    return not t.is_floating_point() or leaf.endswith(_EXACT_SUFFIXES) or leaf.startswith("int_")


STORAGES = ("fp32", "fp16", "int8")


def save_model(model: CompressionModel, path: str | Path, name: str = "", version: str = "1",
               half: bool = True, storage: str | None = None) -> None:
    """Save ``model``'s state. ``storage``: fp32, fp16 (default; ``half=False`` means fp32) or
    int8 (convolution weights packed per slice, the other floats fp16)."""
    from safetensors.torch import save_file

    from ..format import storage as packing

    storage = storage or ("fp16" if half else "fp32")
    if storage not in STORAGES:
        raise ValueError(f"storage must be one of {STORAGES}, not {storage!r}")
    derived = _derivable_weights(model) if storage == "int8" else set()
    state = {}
    for k, v in model.state_dict().items():
        if k in derived:
            continue
        v = v.detach().cpu().contiguous()
        if v.dtype == torch.float32 and not _is_exact(k, v):
            if storage == "int8" and packing.packable(v.numpy()):
                q, scale = packing.pack(v.numpy())
                state[k], state[k + packing.SCALE_SUFFIX] = torch.from_numpy(q), torch.from_numpy(scale)
                continue
            if storage != "fp32":
                v = v.half()
        elif storage == "int8" and packing.intn_packable(k, v.numpy()):
            packed, header = packing.pack_intn(v.numpy())
            state[k + packing.INTN_SUFFIX], state[k + packing.INTN_SHAPE_SUFFIX] = map(torch.from_numpy, (packed, header))
            continue
        elif (narrow := packing.narrow_table(k, v.numpy())) is not None:
            v = torch.from_numpy(narrow)
        state[k] = v
    meta = {"architecture": model.architecture, "config": json.dumps(model.config, sort_keys=True),
            "name": name, "version": str(version), "format": "slimfast-weights-1", "storage": storage}
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    tmp.replace(path)


def _derivable_weights(model: CompressionModel) -> set[str]:
    """Float weights an int8 file leaves out since loading rebuilds them from the frozen
    integer copy of the same layers (the hyper-synthesis: about 0.6 MB of a FasiNet-H file;
    ``IntegerCopyMixin.weights_stored_once``). Files saved before this (slimfast <= 0.7.1)
    still hold them; both load the same way."""
    from ..nn.layers import IntegerCopyMixin

    return {f"{name}.{key}" if name else key for name, m in model.named_modules()
            if isinstance(m, IntegerCopyMixin) for key in m.weights_stored_once()}


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in a weights file: fp16 widened and int8-packed tensors rebuilt as float32."""
    from safetensors.torch import load_file

    from ..format.storage import INTN_SUFFIX, SCALE_SUFFIX, unpack_state

    state = load_file(str(path))
    if any(k.endswith((SCALE_SUFFIX, INTN_SUFFIX)) or v.dtype == torch.uint16 for k, v in state.items()):
        # numpy does the rebuilding so that the runtime's weights are the very same floats
        state = {k: torch.from_numpy(v) for k, v in unpack_state({k: t.numpy() for k, t in state.items()}).items()}
    return {k: (v.float() if v.dtype == torch.float16 else v) for k, v in state.items()}


def load_model(path: str | Path) -> CompressionModel:
    """Build the architecture named in the file and load its weights (as float32) for eval."""
    meta = read_metadata(path)
    model = build(meta["architecture"], json.loads(meta.get("config", "{}")))
    model.load_state_dict(load_state(path))
    return model.eval()


def load_for_training(path: str | Path, architecture: str | None = None,
                      config: dict | None = None) -> CompressionModel:
    """Weights to warm-start ``architecture`` from, in train mode.

    Same architecture: the model as saved. A slimmable model whose widest width is a plain
    architecture (``full_width_state``: fasinet-h from slim-fasinet-h) gives that width, with
    its own config. Otherwise the target model must know how to take the other's weights
    (``load_unslimmed``, e.g. slim-fasinet-l from fasinet-l).
    """
    meta = read_metadata(path)
    if architecture is None or architecture == meta.get("architecture"):
        return load_model(path).train()
    source = build(meta["architecture"], json.loads(meta.get("config", "{}")))
    if getattr(source, "unslimmed_architecture", None) == architecture:
        source.load_state_dict(load_state(path))
        full_config, state = source.full_width_state()
        if config and any(full_config.get(k) != v for k, v in config.items()):
            raise ValueError(f"{architecture} from {meta['architecture']} weights takes their config "
                             f"{json.dumps(full_config, sort_keys=True)}, not {json.dumps(config, sort_keys=True)}")
        model = build(architecture, full_config)
        model.load_state_dict(state)
        return model.train()
    model = build(architecture, config or {})
    if not hasattr(model, "load_unslimmed"):
        raise ValueError(f"cannot warm-start {architecture} from {meta.get('architecture')} weights")
    model.load_unslimmed(load_state(path), meta.get("architecture", ""))
    return model.train()


def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
