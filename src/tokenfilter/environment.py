"""What a run ran on: enough to trace a difference between two runs of the same config.

Runs are bit-identical on one machine and software stack, not across machines (floating-point
kernels differ between CPU models and library builds), so every training summary records the
git commit, package versions, CPU and GPU model, torch build and thread count.
"""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGES = ("tokenfilter", "torch", "numpy", "transformers", "tokenizers", "safetensors", "snakemake", "pandas")


def git_commit() -> str | None:
    """The commit of the checkout the package runs from (``TOKENFILTER_COMMIT`` overrides: set it
    where the package is installed without its checkout)."""
    if os.environ.get("TOKENFILTER_COMMIT"):
        return os.environ["TOKENFILTER_COMMIT"]
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+modified" if dirty.stdout.strip() else "")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_environment() -> dict:
    import torch

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "git_commit": git_commit(),
        "python": platform.python_version(),
        "packages": versions,
        "torch_build": {"version": torch.__version__, "cuda": torch.version.cuda,
                        "mkldnn": torch.backends.mkldnn.is_available()},
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
