"""What a fresh interpreter has imported after importing some of our modules: how tests keep
processes light (the client, the reporter) without timing anything."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


def heavy_imports(modules: Sequence[str], heavy: Sequence[str]) -> list[str]:
    """Those of `heavy` that a new interpreter has in sys.modules after importing `modules`."""
    code = (f"import sys, {', '.join(modules)}; "
            f"print(' '.join(sorted(m for m in {tuple(heavy)!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).parents[1])
    return out.stdout.split()
