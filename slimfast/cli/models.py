"""``slimfast models``: the installed models, their families, operating points and Kodak figures."""
from __future__ import annotations

import json

from .common import say

LEGEND = ("\n* default model (at its default width). bpp/PSNR: mean over Kodak, measured from real files.\n"
          "quality: the --quality values (0 to 100) that code with the point; a family with a hyperprior\n"
          "(fasinet-h, slim-fasinet-h) moves continuously through them, quality 75 being the default point\n"
          "as it was trained, other qualities coarser or finer steps of the point in range; --width W a\n"
          "slimmable width.\n"
          "v: the current weights version; older versions stay installed so their files decode "
          "(--model NAME@N uses one).")


def add_parser(sub) -> None:
    m = sub.add_parser("models", help="list bundled models",
                       description="List the bundled models, their families, widths and measured Kodak rate-distortion points.")
    m.add_argument("--json", action="store_true", help="machine-readable output (one object per model)")
    m.add_argument("--details", action="store_true", help="complexity per width: parameters, kMAC/pixel")
    m.set_defaults(func=run)


def run(args) -> int:
    from ..settings import Settings
    from ..zoo import list_models, versions_of

    path = Settings.from_env().model_path
    models = list_models(model_path=path)
    if args.json:
        say(json.dumps([{**m.public(), "installed_versions": versions_of(m.name, model_path=path)} for m in models],
                       indent=2))
        return 0
    if not models:
        say("no models installed")
        return 1
    _table(models, path)
    say(LEGEND)
    say(_precision_line(models))
    if args.details:
        from ..errors import require_torch

        require_torch("slimfast models --details (it builds the networks to count their operations)")
        from ..tools.complexity import report

        report(models)
    return 0


def _precision_line(models) -> str:
    """What precision the models run at on this machine (``auto``, the default, resolved), and why."""
    from ..engines import openvino
    from ..settings import Settings

    s = Settings.from_env()
    if "auto" not in (s.analysis, s.synthesis):
        return f"precision: analysis {s.analysis}, synthesis {s.synthesis} (SLIMFAST_ANALYSIS / SLIMFAST_SYNTHESIS)."
    allowed = [m.name for m in models if (m.card.get("bf16") or {}).get("synthesis")]
    reason = openvino.unavailable_reason()
    if reason:
        return f"precision (auto): fp32 here; bf16 {reason}."
    if not allowed:
        return "precision (auto): fp32; no model's card allows bf16 (python -m slimfast.tools.release --measure-bf16)."
    return (f"precision (auto): bf16 on OpenVINO for {len(allowed)} of {len(models)} models (their cards allow it; "
            "compress/decompress keep fp32 below 16 MP in all); --fp32 (or SLIMFAST_ANALYSIS / SLIMFAST_SYNTHESIS=fp32) "
            "for fp32.")


def _table(models, path) -> None:
    from ..codec import knob_for
    from ..zoo import family_members

    say(f"{'name':24s} {'v':>2s} {'family':18s} {'quality':>7s} {'width':>5s} {'bpp':>7s} {'PSNR':>6s}  params  steps")
    for m in models:
        members = [x.name for x in family_members(m, model_path=path)]
        knob = knob_for(m, path)
        q = _quality_text(members.index(m.name), len(members), knob) if not m.widths else "-"
        for p in (m.points or [{}]):
            if m.widths and p.get("width") in m.widths:
                q = _quality_text(sorted(m.widths).index(p["width"]), len(m.widths), knob)
            star = "*" if m.default and (not m.widths or p.get("width") == m.default_width) else " "
            bpp = f"{p['bpp']:.3f}" if p.get("bpp") is not None else "-"
            psnr = f"{p['psnr']:.2f}" if p.get("psnr") is not None else "-"
            width = p.get("width") or "-"
            say(f"{star}{m.name:23s} {m.version:>2s} {m.family:18s} {q:>7s} {width!s:>5s} {bpp:>7s} {psnr:>6s} "
                f"{m.params / 1e6:5.2f}M {m.train_steps:6d}")


def _quality_text(index: int, n: int, knob) -> str:
    from ..codec import quality_range

    low, high = quality_range(index, n, knob)
    return f"{low:.0f}-{high:.0f}"
