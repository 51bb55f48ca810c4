"""The held-out training images: never trained on, never validated on (no torch needed here)."""
from __future__ import annotations

from pathlib import Path

HELDOUT_LIST = Path(__file__).resolve().parents[2] / "data" / "heldout.txt"


def heldout_names(path: Path = HELDOUT_LIST) -> set[str]:
    """``folder/name`` of each held-out training image. They measure how the models generalize
    (``slimfast evaluate --heldout``); ``list_images`` leaves them out of training."""
    if not path.is_file():
        return set()
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}
