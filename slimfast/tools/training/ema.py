"""An exponential moving average of the weights (``slimfast train --ema DECAY``).

The average of the main parameters (not the entropy bottlenecks' quantiles, which their own
optimizer fits to the current weights) is updated after every step. Validation and the exported
weights use it; training continues from the raw weights. Checkpoints hold it, so a resumed
run averages on where it stopped.
"""
from __future__ import annotations

from contextlib import contextmanager

import torch


class WeightAverage:
    def __init__(self, params, decay: float):
        if not 0.0 < decay < 1.0:
            raise SystemExit(f"error: --ema must be between 0 and 1 (e.g. 0.999), not {decay}")
        self.params = list(params)
        self.decay = decay
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self) -> None:
        torch._foreach_lerp_(self.shadow, [p.detach() for p in self.params], 1.0 - self.decay)

    @contextmanager
    def swapped(self):
        """The model holds the average inside the block (validation, export), its own weights after."""
        with torch.no_grad():
            for p, s in zip(self.params, self.shadow):
                tmp = p.detach().clone()
                p.copy_(s)
                s.copy_(tmp)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, s in zip(self.params, self.shadow):
                    tmp = p.detach().clone()
                    p.copy_(s)
                    s.copy_(tmp)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {f"ema.{i}": s.detach().cpu().contiguous() for i, s in enumerate(self.shadow)}

    def load(self, tensors: dict[str, torch.Tensor]) -> bool:
        """The average from a checkpoint's ``ema.*`` tensors; False where it has none (it restarts
        from the current weights)."""
        found = [tensors.get(f"ema.{i}") for i in range(len(self.shadow))]
        if any(t is None for t in found):
            return False
        with torch.no_grad():
            for s, t in zip(self.shadow, found):
                s.copy_(t.to(s.device))
        return True
