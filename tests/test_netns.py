"""Multi-host: each service in its own network namespace, like one pod per host.

The "pods" (client, orchestrator, reporter, two workers) are network namespaces
joined by veth links to a bridge in a "switch" namespace, on a private subnet that
exists only inside them. Names resolve through each namespace's hosts file
(/etc/netns/NAME/hosts, which `ip netns exec` mounts over /etc/hosts). Mid-job, a
worker's link is cut at the switch: no packet is refused, they just stop, so the
orchestrator only learns of it from failed health probes. The job must move to
the other worker and the audit complete. The orchestrator finds the workers
through one name that resolves to both, as a headless Service's does.

Needs root and iproute2; skipped with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
PREFIX = f"pa{os.getpid() % 100000}"
SWITCH = f"{PREFIX}-sw"
SUBNET = "10.213.7"
PODS = {"client": 10, "orchestrator": 11, "reporter": 12, "worker-0": 21, "worker-1": 22}
PORTS = {"orchestrator": 50051, "worker": 50052, "reporter": 50053}
TASK = """
- type: MEMBERSHIP_INFERENCE_ATTACK
  name: LABEL-ONLY
  args:
    target_datasets: [./example/datasets/digits_target_members, ./example/datasets/digits_target_non_members]
    target_model: ./example/models/digits_mlp
    shadow_model: ./example/models/digits_mlp
    shadow_datasets: [./example/datasets/digits_shadow_members, ./example/datasets/digits_shadow_non_members]
    shadow_epoch: 600
    batch_size: 64
    r: 1
""" * 2


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def namespace(pod: str) -> str:
    return f"{PREFIX}-{pod}"


def link(pod: str) -> str:
    """The switch-side end of a pod's veth link (interface names are at most 15 characters)."""
    return f"b{PREFIX[2:]}{PODS[pod]}"


def build_network() -> None:
    ip("netns", "add", SWITCH)
    ip("-n", SWITCH, "link", "add", "br0", "type", "bridge")
    ip("-n", SWITCH, "link", "set", "br0", "up")
    # `workers` names both workers, as a headless Service's DNS name does.
    hosts = "127.0.0.1 localhost\n" + "".join(
        f"{SUBNET}.{n} {pod}{' workers' if pod.startswith('worker') else ''}\n" for pod, n in PODS.items())
    for pod, number in PODS.items():
        ns, inside = namespace(pod), f"v{PREFIX[2:]}{number}"
        ip("netns", "add", ns)
        ip("link", "add", inside, "type", "veth", "peer", "name", link(pod))
        ip("link", "set", inside, "netns", ns)
        ip("link", "set", link(pod), "netns", SWITCH)
        ip("-n", SWITCH, "link", "set", link(pod), "master", "br0", "up")
        ip("-n", ns, "addr", "add", f"{SUBNET}.{number}/24", "dev", inside)
        ip("-n", ns, "link", "set", inside, "up")
        ip("-n", ns, "link", "set", "lo", "up")
        etc = Path("/etc/netns") / ns
        etc.mkdir(parents=True, exist_ok=True)
        (etc / "hosts").write_text(hosts)


def tear_down_network() -> None:
    for ns in [*(namespace(p) for p in PODS), SWITCH]:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        shutil.rmtree(Path("/etc/netns") / ns, ignore_errors=True)


@pytest.fixture
def network():
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2 (`ip`)")
    try:
        build_network()
    except subprocess.CalledProcessError as error:
        tear_down_network()
        pytest.skip(f"cannot build network namespaces here: {error.stderr.decode().strip()}")
    try:
        yield
    finally:
        tear_down_network()


def start(pod: str, tmp: Path, *command: str) -> subprocess.Popen:
    log = (tmp / f"{pod}.log").open("wb")
    environment = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'protos' / 'gen' / 'python'}",
                   "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(["ip", "netns", "exec", namespace(pod), sys.executable, *command], cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, env=environment)


def wait_ready(files: list[Path], processes: list[subprocess.Popen], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not all(f.exists() for f in files):
        assert all(p.poll() is None for p in processes), "a service exited while starting"
        assert time.monotonic() < deadline, "services did not start"
        time.sleep(0.1)


def test_cut_worker_link_mid_job_moves_the_job(network, tmp_path):
    services = []
    try:
        for pod in ("reporter", "worker-0", "worker-1"):
            module, port = (("privaudit.services.reporter", PORTS["reporter"]) if pod == "reporter"
                            else ("privaudit.services.attack_worker", PORTS["worker"]))
            extra = ["--storage-root", str(REPO)] if pod != "reporter" else []
            services.append(start(pod, tmp_path, "-m", module, "--listen", f"0.0.0.0:{port}",
                                  "--ready-file", str(tmp_path / f"{pod}.ready"), *extra))
        services.append(start(
            "orchestrator", tmp_path, "-m", "privaudit.services.orchestrator",
            "--listen", f"0.0.0.0:{PORTS['orchestrator']}",
            "--ready-file", str(tmp_path / "orchestrator.ready"), "--reporter", f"reporter:{PORTS['reporter']}",
            "--worker-dns", f"workers:{PORTS['worker']}", "--probe-interval", "1"))
        wait_ready([tmp_path / f"{pod}.ready" for pod in ("reporter", "worker-0", "worker-1", "orchestrator")],
                   services)

        (tmp_path / "task.yaml").write_text(TASK)
        report = tmp_path / "report.json"
        client = start("client", tmp_path, "main.py", str(tmp_path / "task.yaml"), "--orchestrator",
                       f"orchestrator:{PORTS['orchestrator']}", "--format", "json", "--output", str(report))
        worker_log = tmp_path / "worker-0.log"
        deadline = time.monotonic() + 60
        while b"job start" not in worker_log.read_bytes():
            assert time.monotonic() < deadline and client.poll() is None, "worker-0 never got a job"
            time.sleep(0.1)
        time.sleep(1.0)  # well into the job
        ip("-n", SWITCH, "link", "set", link("worker-0"), "down")
        cut = time.monotonic()
        assert client.wait(240) == 0, (tmp_path / "client.log").read_text()
        recovered = time.monotonic() - cut
    finally:
        for process in services:
            process.terminate()
        for process in services:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()

    result = json.loads(report.read_text())
    assert [a["status"] for a in result["attacks"]] == ["succeeded", "succeeded"]
    orchestrator_log = (tmp_path / "orchestrator.log").read_text()
    assert f"worker added: {SUBNET}.21" in orchestrator_log and f"worker added: {SUBNET}.22" in orchestrator_log
    assert "stopped answering" in orchestrator_log, orchestrator_log[-2000:]
    print(f"\nworker link cut mid-job: audit complete {recovered:.1f}s after the cut")
