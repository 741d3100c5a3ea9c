"""The one device resolver: ``auto`` / ``cpu`` / ``cuda`` / ``cuda:N`` -> a :class:`torch.device`.

``auto`` is CUDA when present, CPU otherwise; a bare ``cuda`` is this process's GPU under torchrun
(``LOCAL_RANK`` modulo the visible devices). Asking for CUDA where there is none is a usage error.
"""

from __future__ import annotations

import os

import torch

from mmrec.errors import UsageError


def resolve_device(name: str | torch.device = "auto", *, what: str = "device") -> torch.device:
    """The device ``name`` asks for; ``what`` names the setting in the error (``"--device"``)."""
    if isinstance(name, torch.device):
        return name
    name = str(name)
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError(f"{what} {name} asked, but CUDA is not available here")
    if name == "cuda":
        name = f"cuda:{int(os.environ.get('LOCAL_RANK', 0)) % torch.cuda.device_count()}"
    try:
        return torch.device(name)
    except RuntimeError:
        raise UsageError(f"{what} must be auto, cpu, cuda or cuda:N, got {name!r}") from None
