"""Registry of named pretrained models: weights plus model cards.

Each bundled model is two files in ``slimfast/weights/``: ``NAME.safetensors`` and its model
card ``NAME.json`` (family, architecture, version, SHA-256 of the weights, training data,
steps, lambda, and Kodak rate-distortion points measured from real files). A shipped
``(name, version)`` never changes: the card pins the weights' SHA-256 and loading refuses a
file that does not match.

Versions: a model's current version lives in ``NAME.safetensors`` / ``NAME.json``.

Retirement rule: the package bundles **one version of each model, the current one**, so that the
bundle stays within its size budget (about 25 MB; it travels with the repository to a lent GPU).
When a new version ships, the one it replaces is *retired*: its weights and card leave the folder
and ``retired.json``, an index, keeps what its files need (:data:`INDEX_KEYS`) with the slimfast
release (and git commit) that last bundled it; the full card stays in git history
(``git show LAST_COMMIT:slimfast/weights/CARD``, ``CARD`` being the entry's ``files[1]``).
A file made with a retired version fails with a one-line error naming that release; copying that
release's weights and card (``NAME.vN.safetensors`` / ``NAME.vN.json``, or ``NAME.*`` if it was
current there) into a folder on the model path makes them decode again, bit for bit: a shipped
``(name, version)`` never changes. A model leaves the bundle the same way, *discontinued* (its
current version retired with no successor; with its family's last model, the family goes too):
asking for it, or for its family, by name says which release had it. Private model folders may
keep several versions (``release --keep-previous`` keeps the replaced one as ``NAME.vN.*``):
:func:`find_by_id` searches every installed version, while :func:`list_models`, :func:`get` and
the quality ladder use the current one, and ``get("NAME@N")`` pins version N.

The model path: every lookup here takes ``model_path``, folders laid out like the bundled one and
searched after it (none by default). This module never reads the environment: the top-level API
(``slimfast.load``, ``slimfast.decompress``, ``slimfast.list_models``, the CLI) passes
``Settings.model_path`` (:mod:`slimfast.settings`), which ``SLIMFAST_MODEL_PATH`` sets.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import SlimfastError, UnreadableFileError, printable

BUNDLED_DIR = Path(__file__).resolve().parent / "weights"
RETIRED_FILE = "retired.json"  # in a model folder: the index of versions retired from it
# What a retired version's index entry keeps: enough to match a file's weights ID, name the release
# that decodes it, and draw its curve in the version comparison. ``lambdas`` stays because a
# slimmable recipe may continue from a retired model's per-width lambdas.
INDEX_KEYS = ("name", "family", "architecture", "version", "sha256", "lambdas", "points", "files",
              "last_release", "last_commit", "retired_by_version", "discontinued")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


@dataclass
class ModelInfo:
    name: str
    family: str
    architecture: str
    version: str
    default: bool
    widths: list[int] | None
    params: int
    train_steps: int
    points: list[dict] = field(default_factory=list)
    sha256: str = ""
    card: dict = field(default_factory=dict, repr=False)
    path: Path | None = field(default=None, repr=False)

    def public(self) -> dict:
        d = asdict(self)
        d.pop("card")
        d.pop("path")
        d["default_width"] = self.default_width
        cal = self.card.get("int8_synthesis")
        # None: not calibrated for `slimfast decompress --int8`; else its mean Kodak PSNR change
        # (None where the calibration ran without Kodak at hand)
        d["int8_synthesis"] = {"mean_psnr_change_db": cal.get("mean_psnr_change_db")} if cal else None
        # None: bf16 never measured (precision auto keeps fp32); else the sides auto may run in bf16
        b = self.card.get("bf16")
        d["bf16"] = {"synthesis": bool(b.get("synthesis")), "analysis": bool(b.get("analysis"))} if b else None
        return d

    @property
    def default_width(self) -> int | None:
        """The width used when none is asked for: the card's ``default_width``, else the widest."""
        if not self.widths:
            return None
        return int(self.card.get("default_width") or max(self.widths))

    @property
    def rank_key(self) -> float:
        """Orders the rate points of a family from the smallest files to the largest."""
        if self.card.get("lambda") is not None:
            return float(self.card["lambda"])
        bpps = [p["bpp"] for p in self.points if p.get("bpp") is not None]
        return min(bpps) if bpps else 0.0


ModelPath = Iterable  # of folders (str or Path): searched after the bundled one


def _search_dirs(model_path: ModelPath = ()) -> list[Path]:
    return [BUNDLED_DIR, *(Path(p) for p in model_path)]


# Every decode looks its model up among all installed versions; parsing each card again would
# cost milliseconds per file. Reading a card's bytes costs microseconds: a card is parsed again
# only when they change (stat-based keys can miss a same-size rewrite within one mtime tick).
_CARDS: dict[Path, tuple[bytes, ModelInfo]] = {}


def _info_from_card(card_path: Path) -> ModelInfo:
    raw = card_path.read_bytes()
    hit = _CARDS.get(card_path)
    if hit is not None and hit[0] == raw:
        return hit[1]
    info = _parse_card(card_path, raw)
    _CARDS[card_path] = (raw, info)
    return info


def _parse_card(card_path: Path, raw: bytes) -> ModelInfo:
    card = json.loads(raw)
    _check_sha256(card_path, card)
    widths = card.get("widths")
    return ModelInfo(
        name=card["name"], family=card["family"], architecture=card["architecture"],
        version=str(card["version"]), default=bool(card.get("default", False)),
        widths=list(widths) if widths else None, params=int(card.get("params", 0)),
        train_steps=int(card.get("train_steps", 0)), points=list(card.get("points", [])),
        sha256=card["sha256"].lower(), card=card, path=card_path.with_suffix(".safetensors"),
    )


class BadCardError(SlimfastError):
    """A model card that must not be used; ``name`` and ``version`` say which model it claims to be."""

    def __init__(self, message: str, name: str | None, version: str | None):
        super().__init__(message)
        self.name, self.version = name, version


def _check_sha256(card_path: Path, card: dict) -> None:
    """The card's pin on its weights is what makes tampered or swapped weights fail to load, and
    what files record as their weights ID: a card without it is refused, not trusted."""
    sha = card.get("sha256") if isinstance(card, dict) else None
    if not (isinstance(sha, str) and _SHA256.fullmatch(sha)):
        name = card.get("name") if isinstance(card, dict) else None
        version = card.get("version") if isinstance(card, dict) else None
        raise BadCardError(f"model card {printable(card_path, None, False)} has no valid sha256 of its weights "
                           "(64 hex digits), so its weights cannot be checked; republish it with slimfast.tools.release",
                           None if name is None else str(name), None if version is None else str(version))


def version_key(version: str) -> tuple:
    """Orders versions numerically where they are numbers ("10" after "9")."""
    return (0, int(version), "") if str(version).isdigit() else (1, 0, str(version))


def card_stem(name: str, version: str, current: bool = True) -> str:
    """File stem of a model's weights and card: ``NAME`` for the current version, ``NAME.vN`` for
    a version kept after a newer one shipped."""
    return name if current else f"{name}.v{version}"


def all_versions(*, model_path: ModelPath = ()) -> list[ModelInfo]:
    """Every installed (name, version), bundled ones first; a (name, version) found twice counts once."""
    return _scan(model_path)[0]


def _scan(model_path: ModelPath) -> tuple[list[ModelInfo], list[BadCardError]]:
    """The usable installed models, and the errors of the cards refused (see :func:`_refuse_bad_card`)."""
    seen: dict[tuple[str, str], ModelInfo] = {}
    bad: list[BadCardError] = []
    for d in _search_dirs(model_path):
        infos, refused = _cards_in(d)
        bad += refused
        for info in infos:
            seen.setdefault((info.name, info.version), info)
    return list(seen.values()), bad


def _cards_in(folder: Path) -> tuple[list[ModelInfo], list[BadCardError]]:
    """The models of one folder whose weights are beside their cards, and the cards refused."""
    infos: list[ModelInfo] = []
    bad: list[BadCardError] = []
    if not folder.is_dir():
        return infos, bad
    for card_path in sorted(folder.glob("*.json")):
        if card_path.name == RETIRED_FILE:
            continue
        try:
            info = _info_from_card(card_path)
        except BadCardError as exc:
            bad.append(exc)
            continue
        except (ValueError, KeyError, TypeError):  # not a card
            continue
        if info.path.exists():
            infos.append(info)
    return infos, bad


def models_in(folder: str | Path) -> list[ModelInfo]:
    """The models in one folder laid out like the bundled one (a past release's ``weights/``),
    without installing it: ``slimfast upgrade --weights-from`` decodes with them. Cards without a
    valid SHA-256 of their weights are left out, as everywhere."""
    return _cards_in(Path(folder))[0]


def _refuse_bad_card(name: str, version: str | None, model_path: ModelPath) -> None:
    """Raise the error of a refused card that claims ``name`` (at ``version``, if given): asking for
    that model must say why it is not used, not that it does not exist or silently take another."""
    for exc in _scan(model_path)[1]:
        if exc.name == name and version in (None, exc.version):
            raise exc


def list_models(*, model_path: ModelPath = ()) -> list[ModelInfo]:
    """Every model found, each name once at its newest installed version."""
    newest: dict[str, ModelInfo] = {}
    for info in all_versions(model_path=model_path):
        have = newest.get(info.name)
        if have is None or version_key(info.version) > version_key(have.version):
            newest[info.name] = info
    return list(newest.values())


def index_entry(card: dict) -> dict:
    """A retired version's index entry: from its full card (the ``retired.json`` of releases up to
    0.8.0, still found in older releases' folders on the model path) or from an entry already
    compact, which it returns unchanged."""
    entry = {k: card[k] for k in INDEX_KEYS if card.get(k) is not None}
    entry["version"] = str(card["version"])
    entry["points"] = [{k: p[k] for k in ("width", "bpp", "psnr") if p.get(k) is not None}
                       for p in card.get("points") or []]
    return entry


def retired_versions(*, model_path: ModelPath = ()) -> list[dict]:
    """The retired versions (``retired.json`` in each model folder, either form), bundled ones
    first, as index entries (:func:`index_entry`): ``name``, ``version``, ``sha256``, ``points`` and
    where it was last bundled (``last_release``, ``last_commit``)."""
    out = []
    for d in _search_dirs(model_path):
        f = d / RETIRED_FILE
        if f.is_file():
            try:
                entries = json.loads(f.read_text())
            except ValueError:
                continue
            out += [e for e in map(_index_entry_or_none, entries if isinstance(entries, list) else []) if e]
    return out


def _index_entry_or_none(raw) -> dict | None:
    """A malformed entry in someone's model folder must not break every decode: it is skipped."""
    try:
        return index_entry(raw) if isinstance(raw, dict) and isinstance(raw.get("name"), str) else None
    except (KeyError, TypeError, AttributeError):
        return None


def versions_of(name: str, *, model_path: ModelPath = ()) -> list[str]:
    """The installed versions of ``name``, oldest first."""
    return sorted((m.version for m in all_versions(model_path=model_path) if m.name == name), key=version_key)


def get(name: str | None = None, *, model_path: ModelPath = ()) -> ModelInfo:
    """A model by name (its newest version), ``"NAME@N"`` for version N, or ``None`` for the default."""
    base, _, version = (name or "").partition("@")
    version = version[1:] if version[:1] in ("v", "V") else version
    if name is not None:
        _refuse_bad_card(base, version or None, model_path)
    models = list_models(model_path=model_path)
    if not models:
        raise SlimfastError("no models installed: the package's slimfast/weights folder is empty")
    if name is None:
        defaults = [m for m in models if m.default] or models
        return defaults[0]
    for m in (all_versions(model_path=model_path) if version else models):
        if m.name == base and (not version or m.version == version):
            return m
    if version and any(m.name == base for m in models):
        raise SlimfastError(f"model {base!r} has no installed version {version}; "
                            f"installed: {', '.join(versions_of(base, model_path=model_path))}")
    available = ", ".join(m.name for m in models)
    retired = retired_versions(model_path=model_path)
    gone = [r for r in retired if r["name"] == base]
    if gone and not any(m.name == base for m in models):
        last = max(gone, key=lambda r: version_key(str(r.get("version", "0"))))
        kin = any(m.family == last.get("family") for m in models)
        raise SlimfastError(f"model {base!r} is no longer bundled (last in slimfast {last.get('last_release', '?')}; "
                            f"{_gone_files(kin)}); available: {available}")
    gone = [r for r in retired if r.get("family") == base]
    if gone and not version and not any(m.family == base for m in models):  # a family discontinued whole
        last = max((str(r.get("last_release", "?")) for r in gone), key=_release_key)
        raise SlimfastError(f"model family {base!r} is no longer bundled (last in slimfast {last}; "
                            f"{_gone_files(False)}); available: {available}")
    raise SlimfastError(f"unknown model {name!r}; available: {available}")


def _gone_files(family_bundled: bool) -> str:
    """What to do with the files of a model no longer bundled: without its family, upgrade needs -m."""
    return ("its files decode with that release, and slimfast upgrade FILE --weights-from FOLDER"
            + ("" if family_bundled else " -m MODEL") + " re-encodes them")


def _release_key(release: str) -> tuple:
    """Orders slimfast release numbers ("0.10.0" after "0.9.1"); anything else first."""
    parts = release.split(".")
    return (1, *map(int, parts)) if all(p.isdigit() for p in parts) else (0,)


def is_current(info: ModelInfo, *, model_path: ModelPath = ()) -> bool:
    """Whether ``info`` is the newest installed version of its name."""
    return any(m.name == info.name and m.version == info.version for m in list_models(model_path=model_path))


def family_members(info: ModelInfo, *, model_path: ModelPath = ()) -> list[ModelInfo]:
    """The rate points of ``info``'s family, smallest files first: the current versions, or for
    a pinned older version (``NAME@N``) the members of that same version, so that one ladder
    never mixes generations of weights."""
    current = list_models(model_path=model_path)
    if any(m.name == info.name and m.version == info.version for m in current):
        pool = [m for m in current if m.family == info.family]
    else:
        pool = [m for m in all_versions(model_path=model_path) if m.family == info.family and m.version == info.version]
    return sorted(pool, key=lambda m: m.rank_key)


def find_by_id(name: str, version: str, weights_id: bytes, *, model_path: ModelPath = ()) -> ModelInfo:
    """The installed model a file was made with, or a one-line error naming what it needs.

    ``name`` and ``version`` come from the file: messages show them escaped (:func:`printable`)."""
    hexid = weights_id.hex()
    for m in all_versions(model_path=model_path):
        if m.name == name and m.version == version and m.sha256.startswith(hexid):
            return m
    _refuse_bad_card(name, version, model_path)
    shown, shown_version = f"'{printable(name)}'", printable(version)
    for r in retired_versions(model_path=model_path):
        if r["name"] == name and str(r.get("version")) == version and str(r.get("sha256", "")).startswith(hexid):
            where = f"slimfast {r.get('last_release', '?')}"
            if r.get("last_commit"):
                where += f" (git {r['last_commit'][:12]})"
            if any(m.family == r.get("family") for m in list_models(model_path=model_path)):
                forward = "re-encode it with the current version: slimfast upgrade FILE --weights-from FOLDER"
            else:  # its whole family was discontinued: upgrade needs another one named
                forward = (f"re-encode it with another model (family '{printable(str(r.get('family')))}' is no "
                           f"longer bundled): slimfast upgrade FILE --weights-from FOLDER -m MODEL")
            raise UnreadableFileError(f"file needs model {shown} weights version {shown_version}, retired from this "
                                      f"release: decode it with {where}, or put that release's weights for it in a "
                                      f"folder listed in SLIMFAST_MODEL_PATH, or {forward}")
    have = versions_of(name, model_path=model_path)
    if have:
        raise UnreadableFileError(f"file needs model {shown} weights version {shown_version} (sha256 {hexid}...); "
                                  f"this installation has version(s) {', '.join(have)} of it (with that version's "
                                  f"weights, slimfast upgrade FILE --weights-from FOLDER re-encodes it)")
    raise UnreadableFileError(f"file needs model {shown} weights version {shown_version}, which is not installed")
