"""The Kubernetes deployment is wired together: manifests (as `kubectl kustomize` renders each
overlay) against each other and against the services, and the images' pins against the project's.

`make k8s-check` validates the same manifests against Kubernetes' schemas and checkov; this
checks what neither can: that the pieces name each other correctly.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import math
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from services.common import task_spec

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
OVERLAYS = ["cpu", "gpu"]
CLUSTER_DOMAIN = "svc.cluster.local"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
FIRST_PARTY = {"services", "client", "privaudit"}

Obj = dict[str, Any]


# ---- reading the manifests -------------------------------------------------------------------


def render(overlay: str) -> list[Obj]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: it renders the kustomize overlays these tests read")
    built = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)],
                           capture_output=True, text=True, check=True)
    return [obj for obj in yaml.safe_load_all(built.stdout) if obj]


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request) -> list[Obj]:
    """Every object of one overlay, plus those of the examples (audit Job, data loader)."""
    examples = [obj for path in sorted((K8S / "examples").glob("*.yaml"))
                for obj in yaml.safe_load_all(path.read_text()) if obj]
    return render(request.param) + examples


def of_kind(objects: list[Obj], kind: str) -> list[Obj]:
    return [obj for obj in objects if obj["kind"] == kind]


def named(objects: list[Obj], kind: str, name: str) -> Obj:
    matches = [obj for obj in of_kind(objects, kind) if obj["metadata"]["name"] == name]
    assert len(matches) == 1, f"expected one {kind} {name}, found {len(matches)}"
    return matches[0]


def namespace(obj: Obj) -> str:
    return obj["metadata"].get("namespace", "default")


def workloads(objects: list[Obj]) -> Iterator[tuple[Obj, Obj]]:
    """(Deployment, Job or Pod, its pod template or itself) pairs."""
    for obj in objects:
        if obj["kind"] in ("Deployment", "Job"):
            yield obj, obj["spec"]["template"]
        elif obj["kind"] == "Pod":
            yield obj, obj


def container(objects: list[Obj], deployment: str) -> Obj:
    (only,) = named(objects, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return only


def environment(objects: list[Obj], box: Obj) -> dict[str, Any]:
    """A container's environment: literal values, ConfigMaps it loads whole, and `valueFrom`s."""
    env: dict[str, Any] = {}
    for source in box.get("envFrom", []):
        env.update(named(objects, "ConfigMap", source["configMapRef"]["name"])["data"])
    for variable in box.get("env", []):
        env[variable["name"]] = variable.get("value", variable.get("valueFrom"))
    return env


def container_ports(box: Obj) -> dict[str, int]:
    return {port.get("name", str(port["containerPort"])): port["containerPort"] for port in box.get("ports", [])}


def cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity ('2', '1.5', '250m') in cores."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def service_address(objects: list[Obj], address: str) -> tuple[Obj, int]:
    """The Service an in-cluster `<name>.<namespace>.svc.cluster.local:<port>` names, and the port."""
    host, port = address.rsplit(":", 1)
    name, space, domain = host.split(".", 2)
    assert domain == CLUSTER_DOMAIN, f"{address}: not a Service's cluster DNS name"
    service = named(objects, "Service", name)
    assert namespace(service) == space, f"{address}: the Service {name} is in namespace {namespace(service)}"
    assert int(port) in [p["port"] for p in service["spec"]["ports"]], f"{address}: {name} has no port {port}"
    return service, int(port)


def selected_pods(objects: list[Obj], selector_of: Obj, selector: dict[str, str]) -> list[Obj]:
    """The pod templates in the namespace of `selector_of` whose labels include `selector`."""
    assert selector, f"{selector_of['kind']} {selector_of['metadata']['name']} selects no pods"
    return [template for workload, template in workloads(objects)
            if namespace(workload) == namespace(selector_of)
            and selector.items() <= template["metadata"].get("labels", {}).items()]


def service_pods(objects: list[Obj], service: Obj) -> list[Obj]:
    return selected_pods(objects, service, service["spec"].get("selector") or {})


def read_variables(module: str, capsys) -> set[str]:
    """The PRIVAUDIT_* variables `python -m <module>` reads, from the environment fallbacks its
    --help lists (services.common.config.flag documents each as '(env NAME; ...)')."""
    with pytest.raises(SystemExit):
        importlib.import_module(f"{module}.__main__").main(["--help"])
    return set(re.findall(r"\(env\s+(PRIVAUDIT_\w+);", capsys.readouterr().out))


# ---- the manifests -----------------------------------------------------------------------------


def test_every_service_selects_pods_that_serve_its_ports(objects):
    for service in of_kind(objects, "Service"):
        pods = service_pods(objects, service)
        assert pods, f"Service {service['metadata']['name']} selects no pod template"
        for pod in pods:
            ports = {}
            for box in pod["spec"]["containers"]:
                ports.update(container_ports(box))
            for port in service["spec"]["ports"]:
                target = port.get("targetPort", port["port"])
                assert target in ports or target in ports.values(), (
                    f"Service {service['metadata']['name']}: targetPort {target} is no container port")


def test_worker_budget_and_autoscaler_govern_the_workers(objects):
    budget = named(objects, "PodDisruptionBudget", "privaudit-attack-worker")
    pods = selected_pods(objects, budget, budget["spec"]["selector"]["matchLabels"])
    assert [pod["spec"]["containers"][0]["name"] for pod in pods] == ["attack-worker"]
    target = named(objects, "HorizontalPodAutoscaler", "privaudit-attack-worker")["spec"]["scaleTargetRef"]
    worker = named(objects, target["kind"], target["name"])
    assert "replicas" not in worker["spec"], "the autoscaler owns the worker count; `kubectl apply` would reset it"
    assert budget["spec"]["minAvailable"] < named(objects, "HorizontalPodAutoscaler", "privaudit-attack-worker")[
        "spec"]["minReplicas"], "the budget would block every drain"


def test_every_probe_is_grpc_on_a_container_port(objects):
    served = [box for _, pod in workloads(objects) for box in pod["spec"]["containers"] if box.get("ports")]
    assert served, "no container serves a port"
    for box in served:
        assert {"readinessProbe", "livenessProbe"} <= box.keys(), f"{box['name']}: readiness and liveness probes"
        for probe in PROBES:
            if probe in box:
                assert box[probe]["grpc"]["port"] in container_ports(box).values(), f"{box['name']}.{probe}"


def test_every_service_listens_on_its_container_port(objects):
    for _, pod in workloads(objects):
        for box in pod["spec"]["containers"]:
            listens = [value for name, value in environment(objects, box).items() if name.endswith("_LISTEN")]
            for address in listens:
                assert int(address.rsplit(":", 1)[1]) in container_ports(box).values(), f"{box['name']}: {address}"


def test_orchestrator_finds_workers_through_the_headless_service(objects):
    env = environment(objects, container(objects, "privaudit-orchestrator"))
    service, port = service_address(objects, env["PRIVAUDIT_WORKER_DNS"])
    assert service["spec"].get("clusterIP") == "None", "the worker Service must be headless: one address per pod"
    assert [pod["spec"]["containers"][0]["name"] for pod in service_pods(objects, service)] == ["attack-worker"]
    assert port in container_ports(container(objects, "privaudit-attack-worker")).values()


def test_orchestrator_reaches_the_reporter_service(objects):
    env = environment(objects, container(objects, "privaudit-orchestrator"))
    service, _ = service_address(objects, env["PRIVAUDIT_REPORTER"])
    assert [pod["spec"]["containers"][0]["name"] for pod in service_pods(objects, service)] == ["reporter"]


def test_every_privaudit_variable_is_one_its_service_reads(objects, capsys):
    """Containers are named after their service: `attack-worker` runs `services.attack_worker`."""
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod.get("enableServiceLinks") is False, (
            f"{deployment['metadata']['name']}: service links would set PRIVAUDIT_<SERVICE>_* variables too")
        for box in pod["containers"]:
            module = f"services.{box['name'].replace('-', '_')}"
            set_here = {name for name in environment(objects, box) if name.startswith("PRIVAUDIT_")}
            unread = set_here - read_variables(module, capsys)
            assert not unread, f"{box['name']} sets {sorted(unread)}, which {module} does not read"


def test_only_the_gpu_overlay_asks_for_a_gpu():
    for overlay in OVERLAYS:
        pod = named(render(overlay), "Deployment", "privaudit-attack-worker")["spec"]["template"]["spec"]
        resources = pod["containers"][0]["resources"]
        gpus = [resources[part].get("nvidia.com/gpu") for part in ("requests", "limits")]
        assert gpus == ([1, 1] if overlay == "gpu" else [None, None]), f"{overlay}: {gpus}"
        assert ("tolerations" in pod and "nodeSelector" in pod) == (overlay == "gpu"), overlay


def test_paddle_threads_follow_the_worker_cpu_request(objects):
    worker = container(objects, "privaudit-attack-worker")
    env = environment(objects, worker)
    requested = math.ceil(cpu_cores(worker["resources"]["requests"]["cpu"]))
    for name in ("OMP_NUM_THREADS", "PRIVAUDIT_WORKER_THREADS"):
        value = env[name]
        if isinstance(value, str):
            assert int(value) == requested, f"{name}={value}, but the worker requests {requested} CPUs"
        else:  # the Downward API: the request itself, in whole CPUs rounded up
            field = value["resourceFieldRef"]
            assert (field["resource"], str(field.get("divisor", "1"))) == ("requests.cpu", "1"), name
            assert field.get("containerName", worker["name"]) == worker["name"], name


def test_volumes_are_where_the_services_look(objects):
    worker = named(objects, "Deployment", "privaudit-attack-worker")["spec"]["template"]["spec"]
    (data,) = [mount for mount in worker["containers"][0]["volumeMounts"]
               if mount["mountPath"] == environment(objects, worker["containers"][0])["PRIVAUDIT_STORAGE_ROOT"]]
    assert data.get("readOnly"), "workers must mount the models and datasets read-only"
    (claim,) = [volume["persistentVolumeClaim"] for volume in worker["volumes"] if volume["name"] == data["name"]]
    assert "ReadWriteMany" in named(objects, "PersistentVolumeClaim", claim["claimName"])["spec"]["accessModes"]

    loader = named(objects, "Pod", "privaudit-data-loader")["spec"]
    assert [v["persistentVolumeClaim"]["claimName"] for v in loader["volumes"]] == [claim["claimName"]], (
        "the data loader must write to the volume the workers read")

    orchestrator = named(objects, "Deployment", "privaudit-orchestrator")["spec"]
    state_dir = environment(objects, orchestrator["template"]["spec"]["containers"][0])["PRIVAUDIT_STATE_DIR"]
    mounts = {mount["mountPath"]: mount["name"] for mount in orchestrator["template"]["spec"]["containers"][0]
              ["volumeMounts"]}
    volumes = {volume["name"]: volume for volume in orchestrator["template"]["spec"]["volumes"]}
    assert "persistentVolumeClaim" in volumes[mounts[state_dir]], "the task store must be on a volume claim"
    assert orchestrator["strategy"]["type"] == "Recreate", "two orchestrators must never share the task store"


def test_reporter_policy_is_the_shipped_one_where_the_reporter_reads_it(objects):
    reporter = named(objects, "Deployment", "privaudit-reporter")["spec"]["template"]["spec"]
    policy = Path(environment(objects, reporter["containers"][0])["PRIVAUDIT_REPORTER_POLICY"])
    (mount,) = [mount for mount in reporter["containers"][0]["volumeMounts"]
                if mount["mountPath"] == str(policy.parent)]
    (volume,) = [volume for volume in reporter["volumes"] if volume["name"] == mount["name"]]
    shipped = (REPO / "services" / "reporter" / "risk_policy.yaml").read_text()
    assert named(objects, "ConfigMap", volume["configMap"]["name"])["data"][policy.name] == shipped, (
        "deploy/k8s/base/config/risk_policy.yaml differs from services/reporter/risk_policy.yaml: copy it again")


def rules(policies: list[Obj], labels: dict[str, str], direction: str) -> list[Obj]:
    """The ingress or egress rules of the NetworkPolicies that govern pods with `labels`."""
    return [rule for policy in policies
            if policy["spec"]["podSelector"].get("matchLabels", {}).items() <= labels.items()
            for rule in policy["spec"].get(direction, [])]


def test_only_the_orchestrator_reaches_workers_and_reporter(objects):
    policies = of_kind(objects, "NetworkPolicy")
    assert any(p["spec"]["podSelector"] == {} and not p["spec"].get("ingress") and not p["spec"].get("egress")
               and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"} for p in policies), "no default deny"
    orchestrator = named(objects, "Deployment", "privaudit-orchestrator")["spec"]["template"]["metadata"]["labels"]
    for target in ("privaudit-attack-worker", "privaudit-reporter"):
        labels = named(objects, "Deployment", target)["spec"]["template"]["metadata"]["labels"]
        (port,) = container_ports(container(objects, target)).values()
        ingress = rules(policies, labels, "ingress")
        assert ingress, f"nothing may reach {target}"
        for rule in ingress:
            for peer in rule["from"]:
                assert peer.keys() == {"podSelector"}, f"{target} admits more than the orchestrator: {peer}"
                assert peer["podSelector"]["matchLabels"].items() <= orchestrator.items(), f"{target}: {peer}"
            assert port in [allowed["port"] for allowed in rule["ports"]], f"{target}: port {port} is not admitted"
        assert any(peer["podSelector"]["matchLabels"].items() <= labels.items()
                   and port in [allowed["port"] for allowed in rule["ports"]]
                   for rule in rules(policies, orchestrator, "egress") for peer in rule["to"]
                   if "podSelector" in peer and "namespaceSelector" not in peer), (
            f"the orchestrator may not connect to {target} on port {port}")


def test_example_job_is_a_client_the_orchestrator_admits(objects):
    job = named(objects, "Job", "privaudit-audit")
    client_namespace = named(objects, "Namespace", namespace(job))
    admitted = [peer["namespaceSelector"]["matchLabels"]
                for rule in named(objects, "NetworkPolicy", "orchestrator")["spec"]["ingress"] for peer in rule["from"]]
    assert any(labels.items() <= client_namespace["metadata"]["labels"].items() for labels in admitted), (
        f"namespace {namespace(job)} carries none of the labels the orchestrator admits: {admitted}")

    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    assert command[:2] == ["privaudit", "run"]
    service, _ = service_address(objects, command[command.index("--orchestrator") + 1])
    assert service["metadata"]["name"] == "privaudit-orchestrator"
    task_file = Path(command[2])
    (mount,) = [m for m in job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
                if m["mountPath"] == str(task_file.parent)]
    (volume,) = [v for v in job["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    task = named(objects, "ConfigMap", volume["configMap"]["name"])["data"][task_file.name]
    assert task_spec.parse_yaml(task).attacks, "the example task holds no attack"


def test_images_are_the_project_version(objects):
    version = PYPROJECT["project"]["version"]
    for _, pod in workloads(objects):
        for box in pod["spec"]["containers"]:
            tag = box["image"].rsplit(":", 1)[1]
            assert tag in (version, f"{version}-gpu"), f"{box['name']} runs {box['image']}, not version {version}"


# ---- the images ---------------------------------------------------------------------------------


def pins(path: Path) -> dict[str, str]:
    """Canonical name -> version of a requirements file's `name==version` lines."""
    found = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (specifier,) = requirement.specifier
            assert specifier.operator == "==", f"{path.name}: {line} is not an exact pin"
            found[canonicalize_name(requirement.name)] = specifier.version
    return found


def lock_script() -> ModuleType:
    """deploy/images/lock_requirements.py, which knows each image's pyproject extra."""
    spec = importlib.util.spec_from_file_location("lock_requirements", REPO / "deploy/images/lock_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LOCK = lock_script()
IMAGE_SERVICES = list(LOCK.SERVICES)


@pytest.mark.parametrize("service", IMAGE_SERVICES)
def test_image_pins_agree_with_the_project(service):
    """Regenerate with `.venv/bin/python deploy/images/lock_requirements.py` when this fails."""
    image = pins(REPO / "services" / service / "requirements.txt")
    development = pins(REPO / "requirements.txt")
    for name in image.keys() & development.keys():
        assert image[name] == development[name], (
            f"{service}: {name} {image[name]}, but requirements.txt pins {development[name]}")
    for requirement in LOCK.direct_requirements(LOCK.SERVICES[service]):
        name = canonicalize_name(requirement.name)
        assert name in image, f"{service}: pyproject.toml needs {requirement}, its requirements.txt lacks it"
        assert image[name] in requirement.specifier, f"{service}: {name}=={image[name]} is not {requirement}"


@pytest.mark.parametrize("service", ["orchestrator", "reporter"])
def test_only_the_worker_image_carries_paddle(service):
    assert not {name for name in pins(REPO / "services" / service / "requirements.txt") if "paddle" in name}


def test_image_build_backend_is_the_projects():
    backend = pins(REPO / "deploy" / "images" / "build-requirements.txt")
    for line in PYPROJECT["build-system"]["requires"]:
        requirement = Requirement(line)
        assert backend[canonicalize_name(requirement.name)] in requirement.specifier, line


def dockerfile_lines(service: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = (REPO / "services" / service / "Dockerfile").read_text().replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def test_python_images_run_one_python_the_project_supports():
    tags = {re.sub(r"^FROM\s+python:(\S+).*", r"\1", line) for service in IMAGE_SERVICES
            for line in dockerfile_lines(service) if re.match(r"FROM\s+python:", line)}
    assert len(tags) == 1, f"the images' Python bases differ: {tags}"
    (version,) = re.findall(r"^\d+\.\d+\.\d+", tags.pop())
    assert version in SpecifierSet(PYPROJECT["project"]["requires-python"])


def copied_sources(service: str) -> list[str]:
    """What the service's Dockerfile copies from the build context (not from another stage)."""
    sources = []
    for line in dockerfile_lines(service):
        words = line.split()
        if words[0] == "COPY" and not any(word.startswith("--from") for word in words):
            sources += words[1:-1]
    return sources


def test_every_file_an_image_copies_is_in_the_build_context():
    """.dockerignore excludes everything (`*`) except the paths it lists with `!`."""
    patterns = [line for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert patterns[0] == "*", ".dockerignore must start by excluding everything"
    sent = [pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")]
    for service in IMAGE_SERVICES:
        for source in copied_sources(service):
            assert (REPO / source).exists(), f"{service}/Dockerfile copies {source}, which does not exist"
            assert any(source == path or source.startswith(path + "/") for path in sent), (
                f"{service}/Dockerfile copies {source}, which .dockerignore leaves out of the build context")


def third_party_imports(paths: list[Path]) -> set[str]:
    """The top-level modules the Python files at `paths` import, less the standard library's and ours."""
    names = set()
    for path in paths:
        for file in [path] if path.is_file() else path.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names |= {alias.name.split(".")[0] for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - FIRST_PARTY


@pytest.mark.parametrize("service", IMAGE_SERVICES)
def test_every_module_an_image_imports_is_installed_in_it(service):
    """The code an image copies imports only what its pins install (a missing one fails at run time)."""
    code = [REPO / source for source in copied_sources(service)
            if source.split("/")[0] in FIRST_PARTY and ((REPO / source).is_dir() or source.endswith(".py"))]
    installed = pins(REPO / "services" / service / "requirements.txt")
    providers = metadata.packages_distributions()
    missing = {module for module in third_party_imports(code)
               if not {canonicalize_name(name) for name in providers.get(module, [module])} & installed.keys()}
    assert not missing, (f"the {service} image's code imports {sorted(missing)}, which its requirements.txt does "
                         "not install: declare the dependency in pyproject.toml and regenerate the pins")
