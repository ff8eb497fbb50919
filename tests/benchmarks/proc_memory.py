"""Processes and their memory as Linux's /proc shows them, for the benchmarks."""

from __future__ import annotations

from pathlib import Path


def parents() -> dict[int, int]:
    """Every live process's parent, by pid."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    return found


def descendants(root: int) -> list[int]:
    """The live processes below `root`, children first."""
    of = parents()
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in of.items() if parent in frontier]
        found += children
        frontier = children
    return found


def high_water_mb(pid: int) -> float:
    """A process's peak resident set (VmHWM), 0 once it is gone."""
    return _field_mb(f"/proc/{pid}/status", "VmHWM")


def pss_mb(pid: int) -> float:
    """A process's proportional set size: its own pages, and its share of those it shares."""
    return _field_mb(f"/proc/{pid}/smaps_rollup", "Pss:")


def _field_mb(path: str, name: str) -> float:
    try:
        text = Path(path).read_text()
    except OSError:
        return 0.0
    return int(next((line.split()[1] for line in text.splitlines() if line.startswith(name)), 0)) / 1024
