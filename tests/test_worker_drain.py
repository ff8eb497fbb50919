"""A worker stopped mid-job through a real orchestrator: the worker drains, sends the job back when
its grace ends, and the orchestrator runs it on the other worker; the audit succeeds."""

from __future__ import annotations

import signal
import threading
import time

import pytest
from service_processes import ServiceProcesses
from worker_fixtures import MODEL_CODE, identity_weights, write_audit_tree, write_model

from privaudit.client import AuditClient
from privaudit.v1 import results_pb2

pytestmark = pytest.mark.e2e

GRACE_S = 2.0
# The first attempt's code sleeps long past the drain's grace; a later attempt finds the marker.
FIRST_ATTEMPT_HANGS = '''
import os, time
_marker = os.path.join(os.path.dirname(__file__), "attempted")
if not os.path.exists(_marker):
    open(_marker, "w").close()
    time.sleep(120)
'''


@pytest.fixture
def processes(tmp_path):
    (tmp_path / "logs").mkdir()
    started = ServiceProcesses(tmp_path / "logs")
    yield started
    started.stop()


def test_a_draining_workers_job_runs_again_on_another_worker(processes, tmp_path):
    tree = write_audit_tree(tmp_path / "root")
    write_model(tree.root / "models" / "once", identity_weights(), code=MODEL_CODE + FIRST_ATTEMPT_HANGS)
    task = ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args:\n"
            f"    test_datasets: [{tree.members}, {tree.non_members}]\n    target_model: models/once\n")
    for _ in range(2):
        processes.start("attack_worker", "--storage-root", str(tree.root), "--drain-grace-s", str(GRACE_S),
                        timeout=120)
    workers = [(process, processes.folder / f"attack_worker-{index}.log")
               for index, (_, process) in enumerate(processes.started)]
    reporter = processes.start("reporter")
    addresses = ",".join((processes.folder / f"attack_worker-{index}.address").read_text().strip()
                         for index in range(2))
    orchestrator = processes.start("orchestrator", "--workers", addresses, "--reporter", reporter,
                                   "--probe-interval", "0.5")
    events = []
    outcome = {}

    def audit() -> None:
        with AuditClient(orchestrator) as client:
            outcome["audit"] = client.run(task, "json", on_event=events.append)

    auditing = threading.Thread(target=audit)
    auditing.start()
    deadline = time.monotonic() + 60
    while not (running := [process for process, log in workers if "job start: task" in log.read_text()]):
        assert time.monotonic() < deadline and auditing.is_alive(), "no worker started the job"
        time.sleep(0.1)
    (first,) = running
    first.send_signal(signal.SIGTERM)
    stopped = time.monotonic()
    auditing.join(120)

    audit = outcome["audit"]
    assert audit.done is not None and not audit.done.error, audit.done
    (result,) = audit.results
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    assert first.wait(timeout=60) == 0, "the drained worker did not stop cleanly"
    assert time.monotonic() - stopped >= GRACE_S
    retries = [e.progress.message for e in events if e.HasField("progress")
               and e.progress.message.startswith("retrying:")]
    assert any("this worker stopped before the job finished" in message and "--drain-grace-s" in message
               for message in retries), retries
    (other,) = [log for process, log in workers if process is not first]
    assert "task" in other.read_text() and "BASELINE SUCCEEDED" in other.read_text()
