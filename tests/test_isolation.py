"""User code runs in a child process per job: crashes, hangs, runaway memory, exits and import
errors in a task's `.py` fail that job with a clear message, classified by what happened, and
the worker keeps serving."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from worker_fixtures import (
    MODEL_CODE,
    baseline_request,
    identity_weights,
    served_worker,
    write_audit_tree,
    write_model,
)

from privaudit.v1 import results_pb2
from services.attack_worker import job_process
from services.attack_worker.server import SERVICE_NAME
from services.attack_worker.settings import JobLimits

LIMITS = JobLimits(memory_mb=1536, timeout_s=6)
TASK = results_pb2.FAULT_TASK

# (what the model's code does at import, words the failure's message must hold); every one is
# the task's fault, INVALID_ARGUMENT, not worth retrying.
MISBEHAVIOUR = {
    "segfault": ("import ctypes\nctypes.string_at(0)", ["signal 11", "SIGSEGV", "models/bad/model.py"]),
    "os_exit": ("import os\nos._exit(3)", ["exited with status 3", "models/bad/model.py"]),
    "sys_exit": ("import sys\nsys.exit(4)", ["importing models/bad/model.py raised SystemExit: 4"]),
    "import_error": ("import no_such_module_here", ["models/bad/model.py", "ModuleNotFoundError"]),
    "runaway_memory": ("hoard = []\nwhile True:\n    hoard.append(bytearray(64 << 20))",
                       ["MemoryError", "1536 MB memory limit (--job-memory-mb 1536)"]),
    "sleeps_forever": ("import time\nwhile True:\n    time.sleep(1)",
                       ["ran past this worker's 6 s time limit (--job-timeout-s 6)", "models/bad/model.py"]),
}
KILLS_ITSELF = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_audit_tree(tmp_path_factory.mktemp("isolation") / "root")


@pytest.fixture(scope="module")
def worker(tree):
    with served_worker(tree.root, limits=LIMITS) as stub_and_channel:
        yield stub_and_channel


def result_of(stub, request) -> results_pb2.AttackResult:
    return list(stub.RunAttack(request, timeout=60))[-1].result


def assert_still_serving(stub, channel, tree) -> None:
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    good = result_of(stub, baseline_request(tree))
    assert good.status == results_pb2.ATTACK_STATUS_SUCCEEDED, good.error
    assert good.target_model.train_acc == 0.75


@pytest.mark.parametrize("case", sorted(MISBEHAVIOUR))
def test_misbehaving_user_code_fails_its_job_and_the_worker_keeps_serving(worker, tree, case):
    stub, channel = worker
    code, words = MISBEHAVIOUR[case]
    write_model(tree.root / "models" / "bad", identity_weights(), code=MODEL_CODE + "\n" + code + "\n")
    result = result_of(stub, baseline_request(tree, target_model="models/bad"))
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert (result.error.code, result.error.fault, result.error.retryable) == ("INVALID_ARGUMENT", TASK, False)
    for word in words:
        assert word in result.error.message
    assert_still_serving(stub, channel, tree)


def test_cancelling_the_rpc_kills_the_jobs_process(worker, tree):
    stub, channel = worker
    pid_file = tree.root / "job.pid"
    code = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)"
    write_model(tree.root / "models" / "sleepy", identity_weights(), code=MODEL_CODE + "\n" + code + "\n")
    call = stub.RunAttack(baseline_request(tree, target_model="models/sleepy"), timeout=60)
    assert next(call).progress.stage == results_pb2.STAGE_LOAD
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    call.cancel()
    with pytest.raises(grpc.RpcError):
        list(call)
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
    assert_still_serving(stub, channel, tree)


def test_a_code_file_symlinked_from_outside_the_root_is_refused_and_never_run(worker, tree):
    stub, _ = worker
    marker = tree.root.parent / "outside-code-ran"
    outside = tree.root.parent / "outside.py"
    outside.write_text(f"open({str(marker)!r}, 'w').write('ran')\n" + MODEL_CODE)
    folder = tree.root / "models" / "linked"
    folder.mkdir(parents=True)
    (folder / "model.py").symlink_to(outside)
    result = result_of(stub, baseline_request(tree, target_model="models/linked"))
    assert (result.error.code, result.error.field) == ("INVALID_ARGUMENT", "attacks[0].args.target_model")
    assert "leads outside the storage root" in result.error.message
    assert not marker.exists()
    assert os.path.realpath(folder / "model.py") == str(outside.resolve())


def counting_oom_kills(counts):
    """A stand-in for the cgroup's out-of-memory kill counter giving `counts` in turn."""
    readings = iter(counts)
    return lambda: next(readings)


@pytest.mark.parametrize(("counts", "expected", "words"), [
    # The kernel's OOM killer ended a process of the cgroup while the job ran: the machine's
    # memory, not the job's limit, ran out; another worker may have room.
    ((4, 5), ("RESOURCE_EXHAUSTED", results_pb2.FAULT_INFRASTRUCTURE, True),
     ["the kernel's out-of-memory killer ended the job's process", "1536 MB limit (--job-memory-mb)"]),
    # No counter to tell (not Linux, no memory controller): SIGKILL is most likely the OOM killer.
    ((None, None), ("RESOURCE_EXHAUSTED", results_pb2.FAULT_INFRASTRUCTURE, True),
     ["killed (SIGKILL), not by this worker", "most likely by the kernel's out-of-memory killer"]),
    # The counter did not move: someone else's SIGKILL, after the task's code ran.
    ((4, 4), ("INVALID_ARGUMENT", TASK, False),
     ["signal 9 (SIGKILL) from outside the worker (not the out-of-memory killer)", "models/suicidal/model.py"]),
])
def test_a_sigkill_the_worker_did_not_send_is_classified_by_the_oom_kill_count(worker, tree, monkeypatch,
                                                                               counts, expected, words):
    stub, channel = worker
    monkeypatch.setattr(job_process, "oom_kills", counting_oom_kills(counts))
    write_model(tree.root / "models" / "suicidal", identity_weights(), code=MODEL_CODE + "\n" + KILLS_ITSELF + "\n")
    result = result_of(stub, baseline_request(tree, target_model="models/suicidal"))
    assert (result.error.code, result.error.fault, result.error.retryable) == expected
    for word in words:
        assert word in result.error.message
    monkeypatch.undo()
    assert_still_serving(stub, channel, tree)


@pytest.mark.parametrize(("exitcode", "ran_user_code", "expected", "words"), [
    (-signal.SIGSEGV, False, ("INTERNAL", results_pb2.FAULT_SERVICE), ["signal 11 (SIGSEGV)", "while starting"]),
    (1, False, ("INTERNAL", results_pb2.FAULT_SERVICE), ["exited with status 1"]),
    (-signal.SIGKILL, False, ("INTERNAL", results_pb2.FAULT_SERVICE), ["from outside the worker"]),
    (-signal.SIGABRT, True, ("INVALID_ARGUMENT", TASK),
     ["signal 6 (SIGABRT)", "1536 MB memory limit (--job-memory-mb)"]),
    (2, True, ("INVALID_ARGUMENT", TASK), ["exited with status 2", "while starting"]),
])
def test_a_child_that_dies_before_the_tasks_code_ran_is_our_fault_after_it_the_tasks(exitcode, ran_user_code,
                                                                                      expected, words):
    """No user code ran: nothing of the task's can have ended it, so it is a fault of ours (never
    retried); once user code ran, the task's. (SIGKILL with an unchanged OOM count, as here.)"""
    failure = job_process.death_failure(exitcode, LIMITS, "while starting", ran_user_code, 0, 0)
    assert (failure.code.name, failure.fault, failure.retryable) == (*expected, False)
    for word in words:
        assert word in failure.message
