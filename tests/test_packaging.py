"""The distribution installs one import package, `privaudit` (issue 18: the names `client` and
`services` collided with users' own modules)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_only_the_privaudit_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("privaudit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert {top for top in tops if not top.endswith(".dist-info")} == {"privaudit"}
    for module in ("privaudit/client/cli.py", "privaudit/client/api.py", "privaudit/services/orchestrator/__main__.py",
                   "privaudit/services/attack_worker/launcher_preload.py", "privaudit/services/reporter/report.html.j2",
                   "privaudit/services/reporter/risk_policy.yaml", "privaudit/v1/task_pb2.py"):
        assert module in names, module
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "privaudit = privaudit.client.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_the_python_api_imports_from_the_namespace_outside_the_repository(tmp_path):
    """From another folder (so the repository's own folders are not on the path), the API is
    `privaudit.client` and the old top-level names are gone."""
    code = ("import importlib.util, privaudit.client\n"
            "from privaudit.client import AuditClient\n"
            "print(importlib.util.find_spec('client'), importlib.util.find_spec('services'))")
    shown = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.split() == ["None", "None"]
