"""The Kubernetes deployment is wired together: manifests (as `kubectl kustomize` renders each
overlay) against each other and against the services, and the images' pins against the project's.

`make k8s-check` validates the same manifests against Kubernetes' schemas and checkov; this
checks what neither can: that the pieces name each other correctly, that every service serves
TLS and demands a token from Secrets nobody ships (make-secrets.sh or cert-manager make them),
and, with real processes, that services started with those settings reach each other.
"""

from __future__ import annotations

import ast
import base64
import importlib
import importlib.util
import math
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import grpc
import pytest
import yaml
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from service_processes import ServiceProcesses, when_serving

from privaudit.client import cli
from privaudit.services.common import task_spec
from privaudit.services.common.auth import read_tokens
from privaudit.services.common.channels import open_channel
from privaudit.services.common.config import SERVER_SECURITY_ENV
from privaudit.services.orchestrator.__main__ import parse_args
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, reporter_pb2, reporter_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
# Every overlay, so that a new one is checked too (each must be secure).
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
CLUSTER_DOMAIN = "svc.cluster.local"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
FIRST_PARTY = {"services", "client", "privaudit"}

Obj = dict[str, Any]


# ---- reading the manifests -------------------------------------------------------------------


def render(overlay: str, folder: Path = K8S / "overlays") -> list[Obj]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed: it renders the kustomize overlays these tests read")
    built = subprocess.run(["kubectl", "kustomize", str(folder / overlay)], capture_output=True, text=True, check=True)
    return [obj for obj in yaml.safe_load_all(built.stdout) if obj]


def examples() -> list[Obj]:
    """The objects of the examples applied with `kubectl apply -f` (audit Job, data loader)."""
    return [obj for path in sorted((K8S / "examples").glob("*.yaml")) for obj in yaml.safe_load_all(path.read_text())
            if obj]


@pytest.fixture(scope="module", params=OVERLAYS)
def objects(request) -> list[Obj]:
    """Every object of one overlay, plus those of the examples."""
    return render(request.param) + examples()


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
    --help lists (privaudit.services.common.config.flag documents each as '(env NAME; ...)')."""
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


def worker_autoscaler(objects: list[Obj]) -> tuple[Obj, Obj, int]:
    """The one autoscaler of the workers (a KEDA ScaledObject or a HorizontalPodAutoscaler), the
    Deployment it scales and its least replica count; two would fight over the count."""
    scalers = [obj for obj in of_kind(objects, "ScaledObject") + of_kind(objects, "HorizontalPodAutoscaler")
               if obj["metadata"]["name"] == "privaudit-attack-worker"]
    assert len(scalers) == 1, f"the workers need exactly one autoscaler, found {[s['kind'] for s in scalers]}"
    (scaler,) = scalers
    target = scaler["spec"]["scaleTargetRef"]
    worker = named(objects, target.get("kind", "Deployment"), target["name"])
    least = scaler["spec"]["minReplicaCount" if scaler["kind"] == "ScaledObject" else "minReplicas"]
    return scaler, worker, least


def test_worker_budget_and_autoscaler_govern_the_workers(objects):
    budget = named(objects, "PodDisruptionBudget", "privaudit-attack-worker")
    pods = selected_pods(objects, budget, budget["spec"]["selector"]["matchLabels"])
    assert [pod["spec"]["containers"][0]["name"] for pod in pods] == ["attack-worker"]
    _, worker, least = worker_autoscaler(objects)
    assert worker["metadata"]["name"] == "privaudit-attack-worker"
    assert "replicas" not in worker["spec"], "the autoscaler owns the worker count; `kubectl apply` would reset it"
    assert budget["spec"]["minAvailable"] < least, "the budget would block every drain"


def exported_metrics() -> set[str]:
    """The names of the metrics the orchestrator serves (services/orchestrator/metrics.py)."""
    from prometheus_client import generate_latest

    from privaudit.services.orchestrator.metrics import OrchestratorMetrics
    from privaudit.services.orchestrator.store import TaskStore

    store = TaskStore(None)
    try:
        text = generate_latest(OrchestratorMetrics(SimpleNamespace(workers={}), store).registry).decode()
    finally:
        store.close()
    return set(re.findall(r"^# TYPE (\w+) ", text, re.MULTILINE))


def test_every_overlay_scales_the_workers_with_keda_on_the_jobs_the_orchestrator_exports(objects):
    scaler, _, _ = worker_autoscaler(objects)
    assert scaler["kind"] == "ScaledObject", "workers scale on CPU use, not on the queue"
    (trigger,) = scaler["spec"]["triggers"]
    assert trigger["type"] == "prometheus"
    queried = set(re.findall(r"privaudit_\w+", trigger["metadata"]["query"]))
    assert queried == {"privaudit_jobs_waiting", "privaudit_jobs_running"}
    assert queried <= exported_metrics(), f"the query names metrics the orchestrator does not export: {queried}"
    # One worker per `threshold` jobs: as many as a worker runs at once.
    slots = int(environment(objects, container(objects, "privaudit-attack-worker"))["PRIVAUDIT_WORKER_SLOTS"])
    assert float(trigger["metadata"]["threshold"]) == slots
    assert trigger.get("metricType", "AverageValue") == "AverageValue", "the count must be divided among workers"


def test_prometheus_can_scrape_the_orchestrators_metrics_port(objects):
    deployment = named(objects, "Deployment", "privaudit-orchestrator")
    box = container(objects, "privaudit-orchestrator")
    port = int(environment(objects, box)["PRIVAUDIT_METRICS_PORT"])
    assert container_ports(box)["metrics"] == port
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert (annotations["prometheus.io/scrape"], int(annotations["prometheus.io/port"]),
            annotations["prometheus.io/path"]) == ("true", port, "/metrics")
    service = named(objects, "Service", "privaudit-orchestrator")
    assert "metrics" in [p.get("targetPort") for p in service["spec"]["ports"]]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    admitted = [(peer, rule["ports"]) for rule in rules(of_kind(objects, "NetworkPolicy"), labels, "ingress")
                for peer in rule["from"] if port in [allowed["port"] for allowed in rule["ports"]]]
    assert admitted, f"no network policy admits scrapes of port {port}"
    for peer, ports in admitted:
        assert [allowed["port"] for allowed in ports] == [port], "the scrapers' rule admits more than the metrics"
        assert peer.keys() == {"namespaceSelector"} and peer["namespaceSelector"]["matchLabels"], peer


def test_workers_share_a_read_write_cache_volume_and_read_data_read_only(objects):
    worker = named(objects, "Deployment", "privaudit-attack-worker")["spec"]["template"]["spec"]
    env = environment(objects, worker["containers"][0])
    assert env["PRIVAUDIT_CACHE_SHARED"].lower() in ("1", "true", "yes")
    (cache,) = [mount for mount in worker["containers"][0]["volumeMounts"]
                if mount["mountPath"] == env["PRIVAUDIT_CACHE_DIR"]]
    assert not cache.get("readOnly"), "workers write the shared cache"
    (volume,) = [volume for volume in worker["volumes"] if volume["name"] == cache["name"]]
    assert not volume["persistentVolumeClaim"].get("readOnly")
    claim = named(objects, "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"], "every worker pod mounts the cache"
    assert worker["securityContext"].get("fsGroup") == worker["securityContext"]["runAsGroup"]
    data = [mount for mount in worker["containers"][0]["volumeMounts"]
            if mount["mountPath"] == env["PRIVAUDIT_STORAGE_ROOT"]]
    assert data != [cache] and all(mount.get("readOnly") for mount in data)
    # Both caches (model outputs and shadow outputs) fit the claim.
    assert 2 * int(env["PRIVAUDIT_CACHE_MAX_MB"]) * 2**20 < quantity_bytes(claim["spec"]["resources"]["requests"][
        "storage"])


def quantity_bytes(quantity: str) -> int:
    """A Kubernetes storage quantity in binary units ('100Gi', '512Mi') in bytes."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return int(quantity[:-2]) * units[quantity[-2:]]


def test_a_worker_gets_the_time_to_drain_before_it_is_killed(objects):
    """Running jobs may finish within the drain's grace (at least the job time limit), and the pod is
    given that and time to stop."""
    pod = named(objects, "Deployment", "privaudit-attack-worker")["spec"]["template"]["spec"]
    env = environment(objects, pod["containers"][0])
    grace = float(env["PRIVAUDIT_DRAIN_GRACE_S"])
    assert grace >= float(env["PRIVAUDIT_JOB_TIMEOUT_S"]), "a job within its time limit would be cut off"
    assert pod["terminationGracePeriodSeconds"] >= grace + 30, "the pod is killed before the drain ends"


def test_a_gpu_worker_bounds_job_memory_without_an_address_space_limit():
    for overlay in OVERLAYS:
        objects = render(overlay)
        box = container(objects, "privaudit-attack-worker")
        env = environment(objects, box)
        if overlay != "gpu":
            assert "PRIVAUDIT_DEVICE" not in env and env.get("PRIVAUDIT_JOB_MEMORY_BOUND", "auto") == "auto"
            continue
        assert (env["PRIVAUDIT_DEVICE"], env["PRIVAUDIT_JOB_MEMORY_BOUND"]) == ("gpu", "watchdog")
        job_bytes = int(env.get("PRIVAUDIT_JOB_MEMORY_MB", 8192)) * 2**20
        assert quantity_bytes(box["resources"]["limits"]["memory"]) > job_bytes, "no room above the job's limit"


def check_custom() -> ModuleType:
    spec = importlib.util.spec_from_file_location("check_custom", K8S / "check_custom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_keda_schema_accepts_the_shipped_scaler_and_refuses_broken_ones():
    checker = check_custom()
    schemas = {kind: checker.strict(schema) for kind, schema in
               yaml.safe_load((K8S / "schemas" / "keda.sh-v1alpha1.yaml").read_text()).items()}
    (shipped,) = of_kind(render("gpu"), "ScaledObject")
    assert checker.problems_of(shipped, schemas) == []

    def broken(change) -> list[str]:
        copy = yaml.safe_load(yaml.safe_dump(shipped))
        change(copy["spec"])
        return checker.problems_of(copy, schemas)

    assert "Additional properties" in " ".join(broken(lambda spec: spec.update(maxReplicas=8)))
    assert "'threshold' is a required property" in " ".join(
        broken(lambda spec: spec["triggers"][0]["metadata"].pop("threshold")))
    assert "is not of type 'string'" in " ".join(
        broken(lambda spec: spec["triggers"][0]["metadata"].update(threshold=1)))
    assert broken(lambda spec: spec["triggers"][0]["metadata"].update(querry="x"))  # a misspelt key
    assert broken(lambda spec: spec["scaleTargetRef"].pop("name"))
    assert broken(lambda spec: spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"].update(
        stabilizationWindowSeconds="600"))


def test_every_probe_asks_the_health_service_over_tls_on_a_container_port(objects):
    """The kubelet's own gRPC probe speaks plaintext only: a service serving TLS needs the exec probe."""
    served = [box for _, pod in workloads(objects) for box in pod["spec"]["containers"] if box.get("ports")]
    assert served, "no container serves a port"
    for box in served:
        assert {"readinessProbe", "livenessProbe"} <= box.keys(), f"{box['name']}: readiness and liveness probes"
        for probe in PROBES:
            if probe in box:
                assert "grpc" not in box[probe], f"{box['name']}.{probe}: a gRPC probe cannot reach a TLS port"
                options = probe_options(box[probe])
                port = int(options["--address"].rsplit(":", 1)[1])
                assert port in container_ports(box).values(), f"{box['name']}.{probe}: port {port}"


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
    """Containers are named after their service: `attack-worker` runs `privaudit.services.attack_worker`."""
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


# ---- security: tokens, TLS and the Secrets they come from ---------------------------------------

SECURE = K8S / "components" / "secure"
PROBE_SCRIPT = SECURE / "health_probe.py"
# Security variables a service reads but the manifests leave unset on purpose, with the reason.
UNSET_ON_PURPOSE = {
    # Clients prove who they are with tokens; client certificates would burden every client.
    "orchestrator": {"PRIVAUDIT_TLS_CLIENT_CA"},
}
CLIENT_VARIABLES = {"PRIVAUDIT_CLIENT_TOKEN_FILE": "token", "PRIVAUDIT_CLIENT_TLS_CA": "ca.crt"}


def probe_options(probe: Obj) -> dict[str, str]:
    """The `--flag value` pairs of an exec probe that runs the health probe script."""
    command = probe["exec"]["command"]
    assert command[0] == "python" and Path(command[1]).name == PROBE_SCRIPT.name, f"not the health probe: {command}"
    flags = command[2:]
    assert len(flags) % 2 == 0 and all(flag.startswith("--") for flag in flags[::2]), command
    return dict(zip(flags[::2], flags[1::2], strict=True))


def mounted_file(pod: Obj, box: Obj, path: str) -> tuple[str, str, str]:
    """Where file `path` of container `box` comes from: ('secret' or 'configMap', its name, its key)."""
    mounts = [mount for mount in box.get("volumeMounts", []) if path.startswith(mount["mountPath"].rstrip("/") + "/")]
    assert len(mounts) == 1, f"{box['name']}: {path} is on {len(mounts)} volume mounts, not one"
    (mount,) = mounts
    file = path[len(mount["mountPath"].rstrip("/")) + 1:]
    (volume,) = [volume for volume in pod["spec"]["volumes"] if volume["name"] == mount["name"]]
    for kind, name in (("secret", "secretName"), ("configMap", "name")):
        if kind in volume:
            items = {item["path"]: item["key"] for item in volume[kind].get("items", [])}
            assert not items or file in items, f"{box['name']}: {path}: the volume projects no such file"
            return kind, volume[kind][name], items.get(file, file)
    raise AssertionError(f"{box['name']}: {path} is on volume {volume['name']}, neither a Secret nor a ConfigMap")


def secret_file(pod: Obj, box: Obj, path: str) -> tuple[str, str]:
    """(Secret, key) that file `path` of container `box` is."""
    kind, name, key = mounted_file(pod, box, path)
    assert kind == "secret", f"{box['name']}: {path} comes from a {kind}, not a Secret"
    return name, key


def served_deployments(objects: list[Obj]) -> Iterator[tuple[Obj, Obj, dict[str, Any]]]:
    """(pod template, container, environment) of every Deployment's container."""
    for deployment in of_kind(objects, "Deployment"):
        pod = deployment["spec"]["template"]
        for box in pod["spec"]["containers"]:
            yield pod, box, environment(objects, box)


def security_variables(box: Obj, capsys) -> set[str]:
    """The security variables container `box`'s service reads (privaudit.services.common.config lists them all)."""
    return set(SERVER_SECURITY_ENV) & read_variables(f"services.{box['name'].replace('-', '_')}", capsys)


def test_every_service_serves_tls_and_demands_a_token(objects, capsys):
    """No overlay renders a service that serves plaintext or admits a caller without a token."""
    for pod, box, env in served_deployments(objects):
        reads = security_variables(box, capsys)
        assert {"PRIVAUDIT_TLS_CERT", "PRIVAUDIT_TLS_KEY"} <= reads, f"{box['name']}: reads no TLS variable"
        expected = reads - UNSET_ON_PURPOSE.get(box["name"], set())
        assert expected <= env.keys(), f"{box['name']} leaves {sorted(expected - env.keys())} unset"
        files = {name: secret_file(pod, box, env[name]) for name in expected if name.endswith(
            ("_CERT", "_KEY", "_CA", "_FILE"))}
        assert files, box["name"]
        (tls_secret,) = {files[name][0] for name in ("PRIVAUDIT_TLS_CERT", "PRIVAUDIT_TLS_KEY")}
        assert tls_secret == f"privaudit-{box['name']}-tls", f"{box['name']} serves the certificate of {tls_secret}"
        assert (files["PRIVAUDIT_TLS_CERT"][1], files["PRIVAUDIT_TLS_KEY"][1]) == ("tls.crt", "tls.key")
        tokens = [name for name in ("PRIVAUDIT_TOKEN_FILE", "PRIVAUDIT_INTERNAL_TOKEN_FILE") if name in files]
        assert tokens, f"{box['name']} checks no token"


def test_the_orchestrator_reaches_its_peers_with_their_token_and_ca(objects, capsys):
    pod, box, env = next(item for item in served_deployments(objects) if item[1]["name"] == "orchestrator")
    sent = secret_file(pod, box, env["PRIVAUDIT_INTERNAL_TOKEN_FILE"])
    assert sent != secret_file(pod, box, env["PRIVAUDIT_TOKEN_FILE"]), "the client tokens would reach the workers"
    cert, key = (secret_file(pod, box, env[f"PRIVAUDIT_PEER_TLS_{part}"]) for part in ("CERT", "KEY"))
    assert cert[0] == key[0] and (cert[1], key[1]) == ("tls.crt", "tls.key"), "the orchestrator's mTLS pair"
    assert secret_file(pod, box, env["PRIVAUDIT_PEER_TLS_CA"])[1] == "ca.crt"
    assert env["PRIVAUDIT_PEER_TLS_SERVER_NAME"], "workers are dialled by pod IP: the name must be given"
    peers = [item for item in served_deployments(objects) if item[1]["name"] != "orchestrator"]
    assert {box["name"] for _, box, _ in peers} == {"attack-worker", "reporter"}
    for peer_pod, peer, peer_env in peers:
        assert secret_file(peer_pod, peer, peer_env["PRIVAUDIT_INTERNAL_TOKEN_FILE"]) == sent, (
            f"{peer['name']} accepts another token than the orchestrator sends")
        assert secret_file(peer_pod, peer, peer_env["PRIVAUDIT_TLS_CLIENT_CA"])[1] == "ca.crt", peer["name"]


def test_probes_present_the_pods_own_certificate(objects):
    script = PROBE_SCRIPT.read_text()
    for pod, box, env in served_deployments(objects):
        for probe in PROBES:
            if probe not in box:
                continue
            options = probe_options(box[probe])
            presented = (options["--tls-cert"], options["--tls-key"])
            assert presented == (env["PRIVAUDIT_TLS_CERT"], env["PRIVAUDIT_TLS_KEY"]), f"{box['name']}.{probe}"
            assert secret_file(pod, box, options["--tls-ca"]) == (secret_file(pod, box, options["--tls-cert"])[0],
                                                                   "ca.crt"), f"{box['name']}.{probe}: the CA"
            assert options.get("--tls-server-name"), f"{box['name']}.{probe}: 127.0.0.1 is in no certificate"
            kind, name, key = mounted_file(pod, box, box[probe]["exec"]["command"][1])
            assert kind == "configMap" and named(objects, "ConfigMap", name)["data"][key] == script, (
                f"{box['name']}.{probe} runs another script than {PROBE_SCRIPT.relative_to(REPO)}")


def test_example_job_presents_a_token_and_trusts_the_ca(objects, capsys):
    job = named(objects, "Job", "privaudit-audit")
    pod = job["spec"]["template"]
    (box,) = pod["spec"]["containers"]
    env = environment(objects, box)
    for variable, key in CLIENT_VARIABLES.items():
        assert variable in env, f"the Job does not set {variable}"
        assert secret_file(pod, box, env[variable]) == ("privaudit-client", key), variable
    with pytest.raises(SystemExit):
        cli.main(["run", "--help"])
    assert CLIENT_VARIABLES.keys() <= set(re.findall(r"\(env\s+(PRIVAUDIT_\w+);", capsys.readouterr().out))


# A token or key in hex or base64 (names, which have dashes, are shorter runs).
SECRET_LOOKING = re.compile(r"[A-Za-z0-9+/]{32,}={0,2}")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


@pytest.mark.parametrize("rendered", [*OVERLAYS, "cert-manager example"])
def test_nothing_secret_is_shipped(rendered):
    """No Secret, no key or certificate, no token-like string: the operator makes them (README)."""
    objects = render("cert-manager", K8S / "examples") if rendered == "cert-manager example" else render(rendered)
    objects += examples()
    assert not of_kind(objects, "Secret"), "a Secret in the manifests would be applied over the operator's own"
    for obj in objects:
        for text in strings(obj):
            assert "-----BEGIN" not in text, f"{obj['kind']} {obj['metadata']['name']} holds PEM material"
            assert not SECRET_LOOKING.search(text), f"{obj['kind']} {obj['metadata']['name']}: {text[:80]!r}"
    for _, pod in workloads(objects):
        for box in pod["spec"]["containers"]:
            assert not [source for source in box.get("envFrom", []) if "secretRef" in source], box["name"]
            assert not [variable for variable in box.get("env", [])
                        if "secretKeyRef" in variable.get("valueFrom", {})], f"{box['name']}: secrets as files only"


def certificates() -> tuple[list[Obj], dict[str, Obj]]:
    """The cert-manager example's objects, and its Certificates by the Secret each writes."""
    objects = render("cert-manager", K8S / "examples")
    return objects, {cert["spec"]["secretName"]: cert for cert in of_kind(objects, "Certificate")}


def test_cert_manager_issues_every_tls_secret_for_the_names_dialled(capsys):
    objects, issued = certificates()
    issuers = {issuer["metadata"]["name"]: issuer for issuer in of_kind(objects, "Issuer")}
    orchestrator_env = environment(objects, container(objects, "privaudit-orchestrator"))
    (job,) = of_kind(examples(), "Job")
    command = job["spec"]["template"]["spec"]["containers"][0]["command"]
    job_host = command[command.index("--orchestrator") + 1].rsplit(":", 1)[0]
    signers = set()
    for pod, box, env in served_deployments(objects):
        secret, _ = secret_file(pod, box, env["PRIVAUDIT_TLS_CERT"])
        assert secret in issued, f"no Certificate writes {secret}, which {box['name']} mounts"
        spec = issued[secret]["spec"]
        assert namespace(issued[secret]) == namespace(named(objects, "Deployment", f"privaudit-{box['name']}"))
        assert {"server auth", "client auth"} <= set(spec["usages"]), f"{secret}: serves and calls (mTLS)"
        needed = {probe_options(box[probe])["--tls-server-name"] for probe in PROBES if probe in box}
        if box["name"] == "orchestrator":
            needed.add(job_host)
        else:
            needed.add(orchestrator_env["PRIVAUDIT_PEER_TLS_SERVER_NAME"])
        assert needed <= set(spec["dnsNames"]), f"{secret} lacks {sorted(needed - set(spec['dnsNames']))}"
        signers.add(spec["issuerRef"]["name"])
    (signer,) = signers  # one CA: each service's ca.crt must verify the others
    authority = issued[issuers[signer]["spec"]["ca"]["secretName"]]["spec"]
    assert authority.get("isCA") and "selfSigned" in issuers[authority["issuerRef"]["name"]]["spec"]


# ---- the Secrets made by hand (make-secrets.sh) ----------------------------------------------------

CLIENTS = ["privaudit-client", "workstation"]


def make_secrets_with(arguments: list[str]) -> list[Obj]:
    """The Secrets `make-secrets.sh ARGUMENTS` prints."""
    if shutil.which("openssl") is None or shutil.which("kubectl") is None:
        pytest.skip("make-secrets.sh needs openssl and kubectl")
    made = subprocess.run(["bash", str(K8S / "make-secrets.sh"), *arguments], capture_output=True, text=True,
                          check=True)
    return [obj for obj in yaml.safe_load_all(made.stdout) if obj]


def make_secrets(folder: Path, *clients: str) -> list[Obj]:
    return make_secrets_with([str(folder), *clients])


@pytest.fixture(scope="module")
def hand_made(tmp_path_factory) -> tuple[Path, dict[str, dict[str, bytes]]]:
    """make-secrets.sh's folder, and its Secrets: name -> key -> content."""
    folder = tmp_path_factory.mktemp("secrets") / "material"
    secrets = {}
    for secret in make_secrets(folder, *CLIENTS):
        assert secret["kind"] == "Secret" and namespace(secret) == "privaudit", secret["metadata"]
        secrets[secret["metadata"]["name"]] = {key: base64.b64decode(value) for key, value in secret["data"].items()}
    return folder, secrets


def test_hand_made_secrets_are_those_the_services_mount(hand_made):
    _, secrets = hand_made
    for overlay in OVERLAYS:
        objects = render(overlay)
        for pod, box, _ in served_deployments(objects):
            for volume in pod["spec"]["volumes"]:
                if "secret" in volume:
                    name = volume["secret"]["secretName"]
                    assert name in secrets, f"{overlay}: {box['name']} mounts {name}, which make-secrets.sh lacks"
                    (mount,) = [m for m in box["volumeMounts"] if m["name"] == volume["name"]]
                    for variable, path in environment(objects, box).items():
                        if isinstance(path, str) and path.startswith(mount["mountPath"] + "/"):
                            assert path.rsplit("/", 1)[1] in secrets[name], f"{variable}: {name} has no such key"


def test_hand_made_certificates_match_cert_managers(hand_made):
    """The two ways to make the certificates give the same names and uses, under one CA."""
    _, secrets = hand_made
    _, issued = certificates()
    assert {name for name in secrets if name.endswith("-tls")} == issued.keys() - {"privaudit-ca"}
    for name, certificate in issued.items():
        if name == "privaudit-ca":
            continue
        made = x509.load_pem_x509_certificate(secrets[name]["tls.crt"])
        authority = x509.load_pem_x509_certificate(secrets[name]["ca.crt"])
        made.verify_directly_issued_by(authority)
        names = made.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert sorted(names.get_values_for_type(x509.DNSName)) == sorted(certificate["spec"]["dnsNames"]), name
        uses = set(made.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
        assert uses == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}, name
    assert len({secret["ca.crt"] for name, secret in secrets.items() if name.endswith("-tls")}) == 1, "one CA"


def test_hand_made_tokens_are_one_per_client_and_kept_when_run_again(hand_made):
    folder, secrets = hand_made
    tokens_file = folder / "tokens"
    tokens_file.write_bytes(secrets["privaudit-client-tokens"]["tokens"])
    tokens = read_tokens(tokens_file)
    assert sorted(tokens) == sorted((folder / "clients" / f"{client}.token").read_text().strip() for client in CLIENTS)
    assert len(set(tokens)) == len(CLIENTS)
    internal = folder / "internal"
    internal.write_bytes(secrets["privaudit-internal-token"]["token"])
    assert read_tokens(internal)[0] not in tokens

    again = {secret["metadata"]["name"]: secret["data"] for secret in make_secrets(folder, "another")}
    grown = base64.b64decode(again["privaudit-client-tokens"]["tokens"]).decode()
    assert set(tokens) < set(grown.split()), "an existing client's token changed"
    assert base64.b64decode(again["privaudit-orchestrator-tls"]["ca.crt"]) == secrets["privaudit-orchestrator-tls"][
        "ca.crt"], "running it again made a new CA"


def test_with_cert_manager_only_the_token_secrets_are_made_by_hand(tmp_path):
    """--tokens-only leaves the TLS Secrets to cert-manager: the two token Secrets, no CA."""
    _, issued = certificates()
    made = make_secrets_with(["--tokens-only", str(tmp_path), "privaudit-client"])
    names = {secret["metadata"]["name"] for secret in made}
    assert names == {"privaudit-client-tokens", "privaudit-internal-token"}
    assert not names & issued.keys() and not list(tmp_path.glob("*.crt")) and not list(tmp_path.glob("*.key"))


# ---- failing closed ----------------------------------------------------------------------------------


@pytest.mark.parametrize("module, variable", [
    ("privaudit.services.orchestrator", "PRIVAUDIT_TOKEN_FILE"),
    ("privaudit.services.orchestrator", "PRIVAUDIT_INTERNAL_TOKEN_FILE"),
    ("privaudit.services.attack_worker", "PRIVAUDIT_INTERNAL_TOKEN_FILE"),
    ("privaudit.services.reporter", "PRIVAUDIT_INTERNAL_TOKEN_FILE"),
])
def test_a_token_secret_without_a_token_stops_the_service(module, variable, tmp_path, monkeypatch, capsys):
    """A Secret created empty, or with only a comment, does not open the service: it refuses to start."""
    main = importlib.import_module(f"{module}.__main__")
    monkeypatch.setattr(main, "start_server", lambda *_, **__: pytest.fail("served without a token"), raising=False)
    monkeypatch.setattr(main, "serve_until_signalled", lambda *_, **__: pytest.fail("served"), raising=False)
    arguments = {"privaudit.services.orchestrator": ["--workers", "127.0.0.1:1"],
                 "privaudit.services.attack_worker": ["--storage-root", str(tmp_path)]}.get(module, [])
    for content in ("", "# the token goes here\n\n"):
        (tmp_path / "token").write_text(content)
        monkeypatch.setenv(variable, str(tmp_path / "token"))
        with pytest.raises(SystemExit) as stopped:
            main.main(arguments)
        assert stopped.value.code == 2, content
        assert "holds no token" in capsys.readouterr().err, content


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


# ---- the services, started as the manifests say ---------------------------------------------------


def kubelet(objects: list[Obj], pod: Obj, box: Obj, secrets: dict[str, dict[str, bytes]], root: Path):
    """Writes container `box`'s Secret and ConfigMap volumes under `root`, as the kubelet mounts them;
    returns a function from a path in the container to the same file here."""
    mounted: dict[str, Path] = {}
    for mount in box.get("volumeMounts", []):
        (volume,) = [volume for volume in pod["spec"]["volumes"] if volume["name"] == mount["name"]]
        if "secret" in volume:
            files = secrets[volume["secret"]["secretName"]]
        elif "configMap" in volume:
            files = {key: value.encode() for key, value in
                     named(objects, "ConfigMap", volume["configMap"]["name"])["data"].items()}
        else:
            continue
        here = root / mount["mountPath"].lstrip("/")
        here.mkdir(parents=True, exist_ok=True)
        for key, content in files.items():
            (here / key).write_bytes(content)
        mounted[mount["mountPath"].rstrip("/") + "/"] = here

    def local(path: str) -> str:
        for inside, here in mounted.items():
            if path.startswith(inside):
                return str(here / path[len(inside):])
        return path

    return local


@pytest.mark.e2e
def test_services_started_as_the_manifests_say_talk_over_mtls_with_tokens(hand_made, tmp_path, monkeypatch, capsys):
    """The overlay's security settings and make-secrets.sh's Secrets, on real processes: the exec probes
    pass, the orchestrator reaches a worker dialled by IP and the reporter (mTLS, internal token), and the
    Job's client settings list audits, which fails without the token."""
    folder, secrets = hand_made
    secrets = {**secrets, "privaudit-client": {"token": (folder / "clients" / "privaudit-client.token").read_bytes(),
                                               "ca.crt": (folder / "ca.crt").read_bytes()}}
    objects = render(OVERLAYS[0]) + examples()
    pods = {box["name"]: (pod, box, env) for pod, box, env in served_deployments(objects)}
    local = {name: kubelet(objects, pod, box, secrets, tmp_path / name) for name, (pod, box, _) in pods.items()}
    env = {name: {variable: local[name](value) for variable, value in pods[name][2].items()
                  if variable in SERVER_SECURITY_ENV} for name in pods}

    processes = ServiceProcesses(tmp_path)
    try:
        addresses = {"reporter": processes.start("reporter", env=env["reporter"])}
        addresses["attack-worker"] = processes.start("attack_worker", "--storage-root", str(tmp_path),
                                                     env=env["attack-worker"], timeout=120)
        addresses["orchestrator"] = processes.start("orchestrator", "--workers", addresses["attack-worker"],
                                                    "--reporter", addresses["reporter"], "--probe-interval", "0.5",
                                                    env=env["orchestrator"])

        for name, (_, box, _) in pods.items():
            for probe in PROBES:
                if probe in box:
                    options = {flag: local[name](value) for flag, value in probe_options(box[probe]).items()}
                    options["--address"] = addresses[name]
                    command = [sys.executable, local[name](box[probe]["exec"]["command"][1]),
                               *[part for pair in options.items() for part in pair]]
                    probed = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=30)
                    assert probed.returncode == 0, f"{name}.{probe}: {probed.stderr}"
        bare = [sys.executable, str(PROBE_SCRIPT), "--address", addresses["attack-worker"],
                "--tls-ca", env["attack-worker"]["PRIVAUDIT_TLS_CLIENT_CA"],
                "--tls-server-name", "privaudit-attack-worker.privaudit.svc"]
        assert subprocess.run(bare, capture_output=True, cwd=tmp_path, timeout=30).returncode == 1, (
            "the worker answered a caller without a client certificate: mTLS is off")

        for variable, value in env["orchestrator"].items():
            monkeypatch.setenv(variable, value)
        _, config, _ = parse_args(["--workers", addresses["attack-worker"], "--reporter", addresses["reporter"]])
        with open_channel(addresses["attack-worker"], security=config.peers) as channel:
            capacity = when_serving(lambda: attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).GetCapacity(
                attack_worker_pb2.GetCapacityRequest(), timeout=10))
        assert capacity.slots >= 1
        with open_channel(addresses["reporter"], security=config.peers) as channel:
            try:
                list(reporter_pb2_grpc.ReporterServiceStub(channel).BuildReport(reporter_pb2.BuildReportRequest(),
                                                                                 timeout=10))
            except grpc.RpcError as error:
                assert error.code() not in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.UNAVAILABLE), error
        for variable in env["orchestrator"]:
            monkeypatch.delenv(variable)

        deadline = time.monotonic() + 30
        while f"worker {addresses['attack-worker']} is healthy" not in processes.log("orchestrator"):
            assert time.monotonic() < deadline, processes.log("orchestrator")
            time.sleep(0.2)

        job_pod = named(objects, "Job", "privaudit-audit")["spec"]["template"]
        (job_box,) = job_pod["spec"]["containers"]
        job_local = kubelet(objects, job_pod, job_box, secrets, tmp_path / "job")
        for variable in CLIENT_VARIABLES:
            monkeypatch.setenv(variable, job_local(environment(objects, job_box)[variable]))
        host = job_box["command"][job_box["command"].index("--orchestrator") + 1].rsplit(":", 1)[0]
        listing = ["list", "--orchestrator", addresses["orchestrator"], "--tls-server-name", host]
        assert cli.main(listing) == 0, capsys.readouterr().err
        monkeypatch.delenv("PRIVAUDIT_CLIENT_TOKEN_FILE")
        assert cli.main(listing) != 0
        assert "no bearer token" in capsys.readouterr().err
    finally:
        processes.stop()
