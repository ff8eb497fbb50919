"""What one job's process may use; the worker's defaults (kept free of Paddle, for the flags)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class JobLimits:
    """Limits of one job's child process: its address space and its wall time."""

    memory_mb: int = 8192
    timeout_s: float = 3600.0
