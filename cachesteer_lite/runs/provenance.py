"""What a stored result needs to be reproducible: library versions, hardware and the time of the run."""

from __future__ import annotations

import os
import platform
from datetime import datetime, timezone
from importlib import metadata

import torch

_PACKAGES = (
    "cachesteer-lite",
    "torch",
    "transformers",
    "tokenizers",
    "accelerate",
    "safetensors",
    "numpy",
    "sentence-transformers",
)


def versions() -> dict[str, str | None]:
    """Installed versions of the packages that decide the numbers (None when absent)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for package in _PACKAGES:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    return found


def hardware(device: torch.device | str | None = None) -> dict[str, str | int | None]:
    """The machine the run used: CPU, cores, torch threads, the device computed on and the GPU if any."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else ("cuda" if gpu else "cpu"),
        "gpu": gpu,
    }


def run_record(device: torch.device | str | None = None) -> dict:
    """Versions, hardware and the UTC time, to store beside every result."""
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "versions": versions(),
        "hardware": hardware(device),
    }
