"""What a result needs to be reproduced: package versions, git commit, Python, hardware and thread counts."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("transferlab", "torch", "transformers", "datasets", "peft", "accelerate", "scikit-learn",
            "numpy", "tensorboard", "wandb")
def environment() -> dict[str, Any]:
    """Package versions, git commit, Python and hardware: what a result needs to be reproduced."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    env = {"python": sys.version.split()[0], "platform": platform.platform(), "packages": versions,
           "git_commit": git_commit(), "cpu_count": os.cpu_count(), "cwd": os.getcwd()}  # relative paths' base
    try:
        import torch

        env["torch_threads"] = torch.get_num_threads()
        from threadpoolctl import threadpool_info

        env["native_threads"] = {pool["internal_api"]: pool["num_threads"] for pool in threadpool_info()}
        if torch.cuda.is_available():
            env["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return env


def git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parents[3]
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None
