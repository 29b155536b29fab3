"""Helpers shared by the benchmark scripts: hardware names and result files."""

from __future__ import annotations

import json
import os
import platform
import re
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def hardware_name(device: torch.device) -> str:
    """A short name for result files: 'cpu', 'h200', ..."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        match = re.search(r"(H100|H200|A100|L4|L40S|A10G|V100|T4)", name)
        return (match.group(1) if match else re.sub(r"\W+", "_", name)).lower()
    return "cpu"


def host_info(device: torch.device) -> dict[str, Any]:
    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return path
