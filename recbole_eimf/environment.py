"""Where a run's arithmetic happened: what its numbers depend on besides code, settings and seed.

On a CPU the same seed and code give other numbers under another thread count or on another
processor: torch's kernels split sums by thread and pick their instructions by what the processor
offers (AVX2, AVX-512), so floats are added in another order. After one epoch of EIMF on ml-100k
the difference is in the fourth decimal; after 20 it was 4% of Recall@20 (docs/BENCHMARKS.md
section 18). Runs and tuning trials record this, so that a number can be reproduced where it was
made and a table that mixes places says so.
"""

from __future__ import annotations

import logging
import platform
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

import torch


def cpu_model() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _is_cuda(device: Any) -> bool:
    return getattr(device, "type", str(device)).startswith("cuda") and torch.cuda.is_available()


def device_name(device: Any) -> str:
    """The GPU's name, or ``CPU (<model name>)``."""
    if _is_cuda(device):
        return torch.cuda.get_device_name(device)
    return f"CPU ({cpu_model()})"


def run_environment(device: Any) -> Dict[str, Any]:
    """Versions, processor and thread count of this process, for a run record."""
    import recbole

    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "recbole": recbole.__version__,
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_threads": torch.get_num_threads(),
    }
    if _is_cuda(device):
        env["gpu"] = torch.cuda.get_device_name(device)
        env["cuda"] = torch.version.cuda
    return env


def describe_environment(env: Optional[Mapping[str, Any]]) -> str:
    """One line for logs and reports, e.g. ``torch 2.13.0+cpu, Intel Xeon (AVX512), 2 CPU threads``."""
    if not env:
        return "not recorded"
    where = env.get("gpu") or f"{env.get('cpu')} ({env.get('cpu_capability')}), {env.get('cpu_threads')} CPU thread(s)"
    return f"torch {env.get('torch')}, recbole {env.get('recbole')}, {where}"


def log_environment(log: logging.Logger, device: Any) -> Dict[str, Any]:
    """:func:`run_environment`, stated in ``log`` (a run's own log) as well."""
    env = run_environment(device)
    log.info(f"environment: {describe_environment(env)}")
    return env
