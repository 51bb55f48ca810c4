"""The settings of one training run (``slimfast train``'s flags)."""
from __future__ import annotations

from dataclasses import dataclass, field

from .data import DEFAULT_DATA


@dataclass
class TrainConfig:
    architecture: str | None = None  # None: fasinet-l, or the architecture of --init
    model_config: dict = field(default_factory=dict)
    data: list[str] = field(default_factory=lambda: [str(DEFAULT_DATA)])
    out: str = "runs/fasinet-l"
    lmbda: float = 0.013            # MSE on the 0..255 scale: loss = lmbda * 255^2 * MSE + bpp
    lmbdas: list[float] | None = None  # slimmable models: one per width (widest first)
    width_loss: str = "sum"        # slimmable joint loss: sum_i L_i (SlimCAE) | log: sum_i log L_i
    metric: str = "mse"            # mse | ms-ssim (loss = lmbda * (1 - MS-SSIM) + bpp)
    steps: int = 20000
    minutes: float = 0.0           # > 0: stop after this much wall time instead
    stop_at: int = 0               # > 0: checkpoint and exit at this step (the schedule still uses --steps)
    batch_size: int = 8            # per process (DDP: the effective batch is world_size times this)
    patch_size: int = 128
    lr: float = 1e-3
    aux_lr: float = 1e-3
    lr_drop_at: float = 0.9        # drop the learning rate 10x for the last 10% of the budget
    clip_grad: float = 1.0
    seed: int = 0
    threads: int = 0
    device: str = "auto"           # auto | cpu | cuda
    checkpoint_minutes: float = 3.0
    checkpoint_every: int = 0      # > 0: also checkpoint every this many steps
    snapshot_minutes: float = 0.0  # > 0: keep weights every this many minutes (learning curves)
    log_every: int = 100           # a CSV train row (means over the interval) every this many steps
    val_every: int = 1000
    val_fraction: float = 0.05
    val_images: int = 24
    val_crop: int = 256
    init: str | None = None        # warm start from weights (safetensors)
    bf16: bool = False
    channels_last: bool = False
    sort_channels: bool = False    # slim-fasinet-h warm starts: front each width's best channels
    qat_hs8: bool = False          # train through the 8-bit hyper-synthesis' rounding (training.qat)
    rd_balance: str = "none"       # famo: weigh lambda*D and R adaptively (training.balance)
    ema: float = 0.0               # > 0: validate and export an average of the weights (training.ema)
    deterministic: bool = False
    progress: bool = True
    plot: bool = True
    debug_state_hash: str | None = None  # tests: each rank writes a hash of its final state here


# Settings that may change between a run's invocations without a warning (budget, output).
RESUMABLE_CHANGES = ("stop_at", "progress", "plot", "debug_state_hash", "steps", "minutes")
