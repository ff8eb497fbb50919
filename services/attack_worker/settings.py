"""What every job of a worker shares: where the data is, the job limits and the caches.

Built from the worker's flags and handed, whole, to each job's process (so it is picklable and
free of Paddle) and from there to the job's runtime.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_DEVICE = re.compile(r"cpu|gpu(:[0-9]+)?")


def parse_device(text: str) -> str:
    """A `--device` value checked: `cpu`, `gpu` (Paddle's first GPU) or `gpu:N`; ValueError otherwise."""
    device = text.strip().lower()
    if not _DEVICE.fullmatch(device):
        raise ValueError(f"must be cpu, gpu or gpu:N (N a GPU's number), got {text!r}")
    return device


# How a job's memory limit is enforced (`--job-memory-bound`).
ADDRESS_SPACE, WATCHDOG, AUTO = "address-space", "watchdog", "auto"
MEMORY_BOUNDS = (AUTO, ADDRESS_SPACE, WATCHDOG)


@dataclass(frozen=True)
class JobLimits:
    """Limits of one job's child process: its memory and its wall time. `memory_bound` says how
    the memory limit holds: an address-space limit the child sets on itself, or a watchdog of
    the worker killing the job once its processes' resident memory passes it (`auto`: the
    watchdog where jobs run on a GPU; see `device.memory_bound`)."""

    memory_mb: int = 8192
    timeout_s: float = 3600.0
    memory_bound: str = AUTO


@dataclass(frozen=True)
class WorkerSettings:
    """A worker's settings. `cache_dir` holds trained shadow models' outputs and the target models'
    outputs (see `caches`); None keeps nothing beyond one job. Datasets of at most
    `dataset_memory_mb` (as float32 samples) are read into memory once per job; larger ones are
    read record by record whenever a batch needs them. `device` is where jobs run Paddle
    (`parse_device`'s forms); None: what Paddle finds (its first GPU, else the CPU). `slots` jobs
    run at once, each in a process of its own."""

    storage_root: str
    limits: JobLimits = field(default_factory=JobLimits)
    max_dataset_length: int | None = None
    dataset_memory_mb: int = 1024
    cache_dir: str | None = None
    cache_max_mb: int = 1024
    cache_shared: bool = False  # every worker of the pool sees cache_dir: shadow outputs go by reference
    device: str | None = None
    slots: int = 1
