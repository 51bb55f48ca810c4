"""Warm starts between architectures: every key map lives in the descriptions
(:attr:`slimfast.archs.grammar.Architecture.key_map`); these functions move the tensors.

* fasinet-h from fasinet-l: the analysis, IQR (and g_s where it fits) as they are;
* a slimmable FasiNet from its FasiNet: every tensor's leading block (:func:`load_leading_blocks`);
* a FasiNet-H from slim-fasinet-h's widest width (:func:`full_width_state`);
* :func:`sort_channels`: slim-fasinet-h's channels reordered so each width's block is its best.
"""
from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ..nn.slim import SlimConvTranspose2d

_TABLES = ("freqs", "lengths", "offsets", "_medians")


def _renamed(key: str, key_map) -> str:
    for pattern, repl in key_map:
        key = re.sub(pattern, repl, key)
    return key


def load_fasinet_l(model, state: dict[str, torch.Tensor], architecture: str) -> None:
    """FasiNet-H's analysis and IQR from trained FasiNet-L weights (and g_s where its shape fits).

    Needs ``N1 = N2 = N``, the same M and ``final_gdn = False``, so that g_a is FasiNet-L's
    layer for layer. The hyperprior and the entropy models start fresh.
    """
    if architecture != "fasinet-l":
        raise ValueError(f"fasinet-h warm-starts from fasinet-l weights, not {architecture}")
    own = model.state_dict()
    taken = 0
    for key, value in state.items():
        part = key.split(".", 1)[0]
        if part not in ("g_a", "iqr", "g_s"):
            continue
        target = own.get(key)
        if target is None or target.shape != value.shape:
            if part == "g_s":
                continue
            raise ValueError(f"fasinet-l's {key} {tuple(value.shape)} does not fit this FasiNet-H "
                             "(warm start needs N1 = N2 = N, the same M and final_gdn = False)")
        with torch.no_grad():
            target.copy_(value.to(target.dtype))
        taken += 1
    if any(k.startswith("g_a.") and k not in state for k in own):
        raise ValueError("this FasiNet-H's analysis has layers FasiNet-L lacks (final_gdn must be False)")
    if not taken:
        raise ValueError("no FasiNet-L tensor fits this FasiNet-H")


def load_leading_blocks(model, state: dict[str, torch.Tensor], architecture: str) -> None:
    """Warm start every width of a slimmable FasiNet from its FasiNet's trained weights.

    Each tensor takes the leading block of its counterpart (kernels must match), which is
    exactly what the widest sub-network uses, so at full width the model starts as that
    FasiNet. Frozen tables and integer copies are skipped: ``update()`` rebuilds them.
    """
    source = model.arch.unslimmed
    if architecture != source:
        raise ValueError(f"{model.architecture} warm-starts from {source} weights, not {architecture}")
    hint = "; K and final_gdn must match" if model.hyper else ""
    for key, target in model.state_dict().items():
        name = key.rsplit(".", 1)[-1]
        if name in _TABLES or name.startswith("int_"):
            continue
        src = _renamed(key, model.arch.key_map)
        if src not in state:
            raise ValueError(f"{source} weights lack {src} (for {key}){hint}")
        value = state[src]
        if (value.dim() != target.dim() or any(a > b for a, b in zip(target.shape, value.shape))
                or (target.dim() == 4 and target.shape[2:] != value.shape[2:])):
            raise ValueError(f"{src} has shape {tuple(value.shape)}, cannot fill {key} {tuple(target.shape)}")
        with torch.no_grad():
            target.copy_(value[tuple(slice(0, n) for n in target.shape)].to(target.dtype))


def full_width_state(model) -> tuple[dict, dict[str, torch.Tensor]]:
    """The FasiNet-H config and state dict that compute exactly slim-fasinet-h's widest width.

    Needs ``slim_hidden = False``. Each per-width module (the switchable GDNs, z's entropy
    model) contributes its full-width member; frozen tables and the integer hyper-synthesis
    come along (at full width they are what FasiNet-H's ``update()`` would build). Joint
    training leaves the widest width better than a FasiNet-H trained alone for as long, so it
    is a warm start too.
    """
    a = model.arch
    if a.slim_hidden:
        raise ValueError("full_width_state needs slim_hidden=False (a FasiNet-H has no per-width hidden channels)")
    full = a.widths.index(a.latent_channels)  # the first: widths run from the full one down
    state = {}
    for key, value in model.state_dict().items():
        m = re.search(r"\.gdns\.(\d+)\.|^z_entropy\.(\d+)\.", key)
        if m and int(m.group(1) or m.group(2)) != full:
            continue
        state[_renamed(key, a.key_map)] = value.detach().clone()
    config = {"N1": a.N1, "N2": a.N2, "M": a.M, "S": a.S, "distribution": a.distribution, "K": a.K,
              "final_gdn": a.final_gdn}
    return config, state


# One function on purpose (~85 lines): the permutations must stay in step with the activations
# they are measured on; split apart, a reader could not check that each axis is permuted once.
@torch.no_grad()
def sort_channels(model, x: torch.Tensor) -> dict[str, float]:
    """Reorder every slimmed channel axis so that each width's leading block is its best one.

    A warm start from FasiNet-H hands width ``w`` the *first* ``w`` latent channels, but a
    trained FasiNet-H spreads its rate over all 192 in no order (fasinet-h-mse-q1 version 3 on
    training crops: its first 48 channels carry 21% of the bits of y, its top 48 carry 72%).
    This permutes, at full width, the latent y (by its bits on ``x``), z (by its bits) and the
    hidden channels of h_a, both h_s branches and the IQR (by RMS activation times the norm
    of the weights that read them). The full-width model computes the same function before
    and after (up to float summation order); the narrower entropy models of z are re-taken
    from the full one's leading block, as :meth:`load_unslimmed` does. Needs
    ``slim_hidden = False`` and ``final_gdn = False`` (g_a and g_s then have no slimmed
    hidden axis). Call ``update()`` before coding. Returns the share of y's bits in the
    narrowest width's channels, before and after.
    """
    if model.arch.slim_hidden or model.arch.final_gdn:
        raise ValueError("sort_channels needs slim_hidden=False and final_gdn=False")
    was_training = model.training
    model.eval()
    acts = _full_width_activations(model, x)
    model.train(was_training)
    y_bits = _bits(acts["y_lik"])
    narrow = min(model.widths)
    before = float(y_bits[:narrow].sum() / y_bits.sum())
    py = _order(y_bits)
    _permute_channels(model, acts, py, _order(_bits(acts["z_lik"])))
    return {"narrow_share_before": before,
            "narrow_share_after": float(y_bits[py][:narrow].sum() / y_bits.sum())}


def _full_width_activations(model, x: torch.Tensor) -> dict:
    """Every activation :func:`sort_channels` scores, at full width."""
    M, relu = model.latent_channels, torch.relu
    y = model.analysis(x, M)
    h1 = relu(model.h_a[0](torch.abs(y), M))
    h2 = relu(model.h_a[2](h1, 2 * M))
    z = model.h_a[5](F.pad(h2, (0, 1, 0, 1)), M)
    z_hat, z_lik = model.z_entropy[0](z)
    h, w = y.shape[2:]
    acts = {"h1": h1, "h2": h2, "z_lik": z_lik}
    for name in ("h_s_scale", "h_s_mean"):
        br = getattr(model, name)
        b1 = relu(br[0](z_hat, M // 2))
        b2 = relu(br[2](b1, M))
        acts[name] = (b1, b2, br[4](b2, M)[..., :h, :w])
    y_hat, acts["y_lik"] = model.conditional(y, acts["h_s_scale"][2], acts["h_s_mean"][2])
    acts["i1"] = relu(model.iqr.conv1(y_hat, M // 4))
    acts["i2"] = relu(model.iqr.conv2(acts["i1"], M // 2))
    return acts


def _bits(lik: torch.Tensor) -> torch.Tensor:
    return (-torch.log2(lik)).sum(dim=(0, 2, 3))


def _hidden_score(act: torch.Tensor, weight: torch.Tensor, in_dim: int) -> torch.Tensor:
    """RMS activation times the norm of the weights that read the channel."""
    dims = tuple(d for d in range(weight.dim()) if d != in_dim)
    return act.pow(2).mean(dim=(0, 2, 3)).sqrt() * weight.pow(2).sum(dim=dims).sqrt()


def _order(score: torch.Tensor) -> torch.Tensor:
    return torch.argsort(score, descending=True, stable=True)


def _permute_channels(model, acts: dict, py: torch.Tensor, pz: torch.Tensor) -> None:
    """Apply the orders: y by ``py``, z by ``pz``, each hidden axis by its score."""
    def perm(t, p, dim):
        t.copy_(t.index_select(dim, p))

    def out(conv, p):  # a convolution's output channels (dim 0; dim 1 for a transposed one)
        perm(conv.weight, p, 1 if isinstance(conv, SlimConvTranspose2d) else 0)
        perm(conv.bias, p, 0)

    def inp(conv, p):
        perm(conv.weight, p, 0 if isinstance(conv, SlimConvTranspose2d) else 1)

    p1 = _order(_hidden_score(acts["h1"], model.h_a[2].weight, 1))
    p2 = _order(_hidden_score(acts["h2"], model.h_a[5].weight, 1))
    pi1 = _order(_hidden_score(acts["i1"], model.iqr.conv2.weight, 1))
    pi2 = _order(_hidden_score(acts["i2"], model.iqr.conv3.weight, 1))
    out(model.g_a[4], py), inp(model.h_a[0], py), inp(model.iqr.conv1, py), out(model.iqr.conv3, py)
    inp(model.g_s[0], py)
    out(model.h_a[0], p1), inp(model.h_a[2], p1)
    out(model.h_a[2], p2), inp(model.h_a[5], p2)
    out(model.h_a[5], pz)
    out(model.iqr.conv1, pi1), inp(model.iqr.conv2, pi1)
    out(model.iqr.conv2, pi2), inp(model.iqr.conv3, pi2)
    for name in ("h_s_scale", "h_s_mean"):
        br, (b1, b2, _) = getattr(model, name), acts[name]
        ps1, ps2 = _order(_hidden_score(b1, br[2].weight, 0)), _order(_hidden_score(b2, br[4].weight, 1))
        inp(br[0], pz), out(br[0], ps1), inp(br[2], ps1), out(br[2], ps2), inp(br[4], ps2), out(br[4], py)
    full = dict(model.z_entropy[0].named_parameters())
    for t in full.values():
        perm(t.data, pz, 0)
    for eb in list(model.z_entropy)[1:]:
        for name, t in eb.named_parameters():
            t.data.copy_(full[name].data[:t.shape[0]])

