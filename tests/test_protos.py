"""The committed generated code matches the protos, the protos pass `buf lint`, and they stay
compatible with the last released API (`buf breaking` against protos/releases/privaudit-v1.binpb,
an image cut with `cd protos && buf build -o releases/privaudit-v1.binpb` at each release)."""

import filecmp
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERATED = REPO / "protos" / "gen" / "python"


def test_generated_code_is_fresh(tmp_path):
    subprocess.run([sys.executable, str(REPO / "protos" / "generate.py"), "--out", str(tmp_path)], check=True)
    fresh = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    committed = sorted(p.relative_to(GENERATED) for p in GENERATED.rglob("*")
                       if p.is_file() and "__pycache__" not in p.parts)
    assert fresh == committed, "generated files differ in name: run `make proto` and commit"
    stale = [str(p) for p in fresh if not filecmp.cmp(tmp_path / p, GENERATED / p, shallow=False)]
    assert not stale, f"generated code is stale, run `make proto` and commit: {stale}"


def buf(*args: str) -> subprocess.CompletedProcess:
    executable = shutil.which("buf", path=str(Path(sys.executable).parent))
    if executable is None:
        pytest.fail("buf is not installed in this environment (pip package buf-bin, in requirements.txt)")
    return subprocess.run([executable, *args], cwd=REPO / "protos", capture_output=True, text=True)


def test_buf_lint():
    result = buf("lint")
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_breaking_change_since_the_last_release():
    result = buf("breaking", "--against", "releases/privaudit-v1.binpb")
    assert result.returncode == 0, "breaking API change:\n" + result.stdout + result.stderr
