"""README against the code it documents: the exit codes, and the documents it links."""

from __future__ import annotations

import re
from pathlib import Path

from privaudit.client import cli

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def test_every_exit_code_of_the_cli_is_in_the_readmes_table():
    codes = {name: value for name, value in vars(cli).items() if name.startswith("EXIT_") and isinstance(value, int)}
    table = {int(code) for code in re.findall(r"^\| `(\d+)` \|", README, flags=re.M)}
    missing = {name: value for name, value in codes.items() if value not in table}
    assert codes and not missing, f"README's exit-code table misses {missing}"


def test_the_user_documents_are_linked_and_exist():
    for document in ("docs/grpcurl.md", "docs/fidelity.md", "client/examples/node/README.md",
                     "deploy/k8s/README.md"):
        assert (REPO / document).exists(), document
    named = set(re.findall(r"`((?:docs|client|deploy)/[\w./-]+\.md)`", README))
    assert {"docs/grpcurl.md", "docs/fidelity.md", "deploy/k8s/README.md", "client/examples/node/README.md"} <= named
    assert not {path for path in named if not (REPO / path).exists()}, "README names documents that do not exist"
