"""Shape rules shared by the torch models and the torch-free runtime (no imports beyond the stdlib)."""
from __future__ import annotations


def tconv_padding(k: int, s: int) -> tuple[int, int]:
    """``(padding, output_padding)`` of a transposed conv whose output is exactly ``s`` x its input.

    The kernel stays centered: padding starts at ``(k - 1) // 2`` and moves until the output
    padding is a valid ``0 <= op < s``.
    """
    if s == 1:
        return (k - 1) // 2, 0
    p = (k - 1) // 2
    op = s + 2 * p - k
    while op < 0:
        p += 1
        op = s + 2 * p - k
    while op >= s:
        p -= 1
        op = s + 2 * p - k
    return p, op


def check_width(architecture: str, widths, latent_channels: int, width: int | None) -> int:
    """The width to code at: ``width`` if the model has it, the default (widest) for ``None``."""
    if width is None:
        return widths[0] if widths else latent_channels
    if widths is None:
        if width != latent_channels:
            raise ValueError(f"{architecture} is not slimmable: its only width is {latent_channels}")
        return width
    if width not in widths:
        raise ValueError(f"width {width} not available; choose one of {', '.join(map(str, widths))}")
    return width
