"""The one exception type users need to catch."""


class SlimfastError(Exception):
    """Any failure caused by input data, files or arguments (bad image, corrupt stream, ...).

    Its message is one line, written for the person who ran the command.
    """


def require_torch(purpose: str) -> None:
    """A one-line error where ``purpose`` needs PyTorch and it is not installed (it is an extra)."""
    try:
        import torch  # noqa: F401  (it is needed next anyway)
    except ImportError:
        raise SlimfastError(f"{purpose} needs PyTorch: pip install torch==2.13.0 (the CPU build), "
                            "or pip install 'slimfast[torch]'") from None
