"""`make k8s-check`'s check of the objects kubernetes-validate has no schema for.

    python deploy/k8s/check_custom.py RENDERED_DIR CORE_DIR

Reads every RENDERED_DIR/*.yaml, validates its cert-manager.io objects and KEDA's ScaledObjects
against the schemas in deploy/k8s/schemas/ (strictly: a field the schema does not name is an
error, as `kubectl apply` reports it), and writes the other objects to CORE_DIR/<same name> for
kubernetes-validate. An object of another API group outside Kubernetes' own fails here, so
none goes unchecked. Runs in the checkers' venv (PyYAML, jsonschema).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"
# Groups this script checks, each with its vendored schemas (kind -> schema) in SCHEMAS.
CUSTOM_GROUPS = {"cert-manager.io": "cert-manager.io-v1.yaml", "keda.sh": "keda.sh-v1alpha1.yaml"}
CORE_GROUP_SUFFIX = ".k8s.io"  # networking.k8s.io and the like; no dot at all is the core group
CORE_GROUPS = {"apps", "batch", "autoscaling", "policy"}


def strict(schema: Any) -> Any:
    """`schema` with `additionalProperties: false` wherever it names properties and says nothing
    about others."""
    if isinstance(schema, dict):
        schema = {key: strict(value) for key, value in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [strict(value) for value in schema]
    return schema


def group_of(obj: dict[str, Any]) -> str:
    api_version = obj.get("apiVersion", "")
    return api_version.split("/", 1)[0] if "/" in api_version else ""


def problems_of(obj: dict[str, Any], schemas: dict[str, Any]) -> list[str]:
    """What is wrong with custom object `obj`, each naming where."""
    kind, name = obj.get("kind"), (obj.get("metadata") or {}).get("name")
    label = f"{kind}/{name}"
    if kind not in schemas:
        return [f"{label}: no vendored schema for kind {kind} of {obj.get('apiVersion')}"]
    problems = [] if isinstance(name, str) and name else [f"{label}: metadata.name is missing"]
    validator = jsonschema.Draft202012Validator(schemas[kind])
    for error in sorted(validator.iter_errors(obj), key=lambda error: list(error.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path) or "(top)"
        problems.append(f"{label}: {where}: {error.message}")
    return problems


def main(rendered: Path, core: Path) -> int:
    schemas = {group: {kind: strict(schema) for kind, schema in yaml.safe_load((SCHEMAS / file).read_text()).items()}
               for group, file in CUSTOM_GROUPS.items()}
    core.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    checked = 0
    for path in sorted(rendered.glob("*.yaml")):
        kept = []
        for obj in yaml.safe_load_all(path.read_text()):
            if not obj:
                continue
            group = group_of(obj)
            if group in schemas:
                problems += [f"{path.name}: {problem}" for problem in problems_of(obj, schemas[group])]
                checked += 1
            elif group == "" or group in CORE_GROUPS or group.endswith(CORE_GROUP_SUFFIX):
                kept.append(obj)
            else:
                problems.append(f"{path.name}: {obj.get('kind')} of {obj.get('apiVersion')}: no schema checks this "
                                "group (add it to deploy/k8s/check_custom.py)")
        (core / path.name).write_text(yaml.safe_dump_all(kept, sort_keys=False))
    for problem in problems:
        print(f"k8s-check: {problem}", file=sys.stderr)
    if not problems:
        print(f"k8s-check: {checked} {' and '.join(CUSTOM_GROUPS)} objects valid against the schemas in "
              f"{SCHEMAS.name}/ (strict)")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2])))
