"""What a report says of the machine it was made on, and why a check could not run there."""
from __future__ import annotations

import platform

import torch

from .. import __version__


def environment() -> dict[str, str]:
    env = {"graphsafe": __version__, "torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        env["device"] = torch.cuda.get_device_name()
        env["cuda"] = str(torch.version.cuda)
    return env


def no_cuda_reason() -> str | None:
    """Why no check can run here (``None`` where CUDA is available): the text of ``Evidence.no_cuda``."""
    if torch.cuda.is_available():
        return None
    return f"torch.cuda.is_available() is False (torch {torch.__version__}, CUDA build {torch.version.cuda or 'none'})"
