"""User code runs in a child process per job: crashes, hangs, runaway memory, exits and import
errors in a task's `.py` fail that job with a clear message, classified by what happened, and
the worker keeps serving. Code that kills the job's launcher (its parent) fails its job saying
so, and the worker restarts the launcher, NOT_SERVING meanwhile, leaving no zombie. A job's
process has a process group of its own: code that signals "its group" ends its own job only,
and every process a job started ends with it."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from service_processes import ServiceProcesses
from worker_fixtures import (
    MODEL_CODE,
    baseline_request,
    identity_weights,
    served_worker,
    write_audit_tree,
    write_model,
)

from privaudit.services.attack_worker import job_process, launcher
from privaudit.services.attack_worker.server import SERVICE_NAME
from privaudit.services.attack_worker.settings import AUTO, WATCHDOG, JobLimits
from privaudit.services.common.channels import open_channel
from privaudit.services.common.errors import from_rpc_error
from privaudit.v1 import attack_worker_pb2_grpc, results_pb2

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
# Through libc, which no audit hook sees: a SIGKILL the worker cannot attribute, as the kernel's.
KILLS_ITSELF = "import ctypes, os, signal\nctypes.CDLL(None).kill(os.getpid(), signal.SIGKILL)"
KILLS_ITS_PARENT = "import os\nos.kill(os.getppid(), 9)"
# The same through libc, which no audit hook sees: the worker cannot tell which file did it.
KILLS_ITS_PARENT_THROUGH_LIBC = "import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)"
KILLED_THE_LAUNCHER = "the task's code killed the worker's job launcher (its parent process)"
SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return write_audit_tree(tmp_path_factory.mktemp("isolation") / "root")


@pytest.fixture(scope="module")
def worker(tree):
    with served_worker(tree.root, limits=LIMITS) as stub_and_channel:
        yield stub_and_channel


def result_of(stub, request) -> results_pb2.AttackResult:
    return list(stub.RunAttack(request, timeout=60))[-1].result


def written_pid(pid_file: Path, timeout_s: float = 30) -> int:
    """The pid a job's code writes to `pid_file`, once written (the file exists a moment before)."""
    deadline = time.monotonic() + timeout_s
    while not (pid_file.exists() and pid_file.read_text()):
        assert time.monotonic() < deadline, f"no pid in {pid_file} within {timeout_s:g} s"
        time.sleep(0.05)
    return int(pid_file.read_text())


def assert_still_serving(stub, channel, tree) -> None:
    """A good job succeeds (after a restart of the launcher, if one was due) and health says SERVING."""
    good = result_of(stub, baseline_request(tree))
    assert good.status == results_pb2.ATTACK_STATUS_SUCCEEDED, good.error
    assert good.target_model.train_acc == 0.75
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING


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
    pid = written_pid(pid_file)
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


# ---------------------------------------------------------------- the job launcher


def zombie_children(parent: int | None = None) -> list[int]:
    """The children of `parent` (this process) that have ended and not been reaped (Z in /proc)."""
    parent = os.getpid() if parent is None else parent
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, ValueError):
            continue
        if state == "Z" and int(ppid) == parent:
            found.append(int(stat.parent.name))
    return found


@contextmanager
def watched_health(channel) -> Iterator[list[int]]:
    """Every status the worker's health Watch stream sends while the block runs, in order."""
    statuses: list[int] = []
    call = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=SERVICE_NAME))

    def follow() -> None:
        with suppress(grpc.RpcError):  # cancelled at the end of the block
            statuses.extend(response.status for response in call)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        yield statuses
    finally:
        call.cancel()
        follower.join(timeout=5)


def wait_until_serving_again(statuses: list[int], timeout_s: float = 90) -> list[int]:
    """The statuses once the stream went NOT_SERVING and then SERVING, runs of one merged."""
    deadline = time.monotonic() + timeout_s
    while not (NOT_SERVING in statuses and statuses[-1] == SERVING) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [status for i, status in enumerate(statuses) if i == 0 or statuses[i - 1] != status]


def kill_and_wait(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while launcher.exit_of(pid) is None and time.monotonic() < deadline:
        time.sleep(0.01)


@pytest.mark.parametrize(("code", "words"), [
    (KILLS_ITS_PARENT, ["models/parricide/model.py sent it signal 9 (SIGKILL) while in the load stage",
                        "the launcher died with signal 9 (SIGKILL)"]),
    (KILLS_ITS_PARENT_THROUGH_LIBC, ["the launcher died with signal 9 (SIGKILL)", "after running "]),
])
def test_code_that_kills_its_parent_fails_its_job_and_the_worker_restarts_its_launcher(worker, tree, code, words):
    """Issue 15, defect 11: the job said "exited with status 255", the dead launcher stayed a
    zombie and the worker's health said SERVING throughout."""
    stub, channel = worker
    write_model(tree.root / "models" / "parricide", identity_weights(), code=f"{MODEL_CODE}\n{code}\n")
    with watched_health(channel) as statuses:
        result = result_of(stub, baseline_request(tree, target_model="models/parricide"))
        seen = wait_until_serving_again(statuses)
    assert (result.error.code, result.error.fault, result.error.retryable) == ("INVALID_ARGUMENT", TASK, False)
    for word in [KILLED_THE_LAUNCHER, *words]:
        assert word in result.error.message
    assert "status 255" not in result.error.message
    assert seen == [SERVING, NOT_SERVING, SERVING]
    assert zombie_children() == []
    assert_still_serving(stub, channel, tree)


def test_a_launcher_killed_between_jobs_is_restarted_before_the_next_job(worker, tree):
    stub, channel = worker
    assert_still_serving(stub, channel, tree)  # the launcher runs
    dead = launcher.current_pid()
    with watched_health(channel) as statuses:
        kill_and_wait(dead)
        responses = list(stub.RunAttack(baseline_request(tree), timeout=120))
        seen = wait_until_serving_again(statuses)
    assert responses[-1].result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, responses[-1].result.error
    assert "waiting for this worker's job launcher to restart" in [r.progress.message for r in responses[:-1]]
    assert seen == [SERVING, NOT_SERVING, SERVING]
    assert launcher.current_pid() != dead and not Path(f"/proc/{dead}").exists()
    assert zombie_children() == []


def test_repeated_kills_each_fail_their_job_and_do_not_wedge_the_worker(worker, tree, caplog):
    """Back to back, as a task with several attacks would send them: each waits for the restart
    the one before caused, fails, and leaves one more restart behind; none backs off."""
    stub, channel = worker
    write_model(tree.root / "models" / "parricide", identity_weights(), code=f"{MODEL_CODE}\n{KILLS_ITS_PARENT}\n")
    assert_still_serving(stub, channel, tree)
    caplog.set_level(logging.INFO, logger=launcher.__name__)
    for _ in range(3):
        result = result_of(stub, baseline_request(tree, target_model="models/parricide"))
        assert KILLED_THE_LAUNCHER in result.error.message
        assert result.error.fault == TASK
    good = result_of(stub, baseline_request(tree))
    assert good.status == results_pb2.ATTACK_STATUS_SUCCEEDED, good.error
    assert caplog.text.count("the job launcher is back") == 3
    assert "failed" not in caplog.text
    assert zombie_children() == []


def test_a_job_that_outlives_its_launcher_is_killed(worker, tree):
    """Code that clears its parent-death signal first would otherwise run on, unwatched and
    past every time limit, once its launcher is gone."""
    stub, channel = worker
    pid_file = tree.root / "orphan.pid"
    code = ("import ctypes, os, time\nctypes.CDLL(None).prctl(1, 0)\n"
            f"open({str(pid_file)!r}, 'w').write(str(os.getpid()))\nos.kill(os.getppid(), 9)\n"
            "while True:\n    time.sleep(1)")
    write_model(tree.root / "models" / "orphan", identity_weights(), code=MODEL_CODE + "\n" + code + "\n")
    result = result_of(stub, baseline_request(tree, target_model="models/orphan"))
    assert f"{KILLED_THE_LAUNCHER}: models/orphan/model.py sent it signal 9" in result.error.message
    stat = Path(f"/proc/{pid_file.read_text()}/stat")
    deadline = time.monotonic() + 10
    while stat.exists() and time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX":  # ended; its new parent reaps it
                break
        except OSError:
            break
        time.sleep(0.05)
    else:
        assert not stat.exists(), "the job's process outlived its launcher"
    assert_still_serving(stub, channel, tree)


def test_a_launcher_that_cannot_be_restarted_backs_off_and_jobs_fail_as_unavailable(worker, tree, monkeypatch):
    stub, channel = worker
    attempts: list[float] = []
    real_restart = launcher.restart

    def flaky(timeout_s: float) -> None:
        attempts.append(time.monotonic())
        if len(attempts) <= 2:
            raise RuntimeError("no launcher today")
        real_restart(timeout_s)

    monkeypatch.setattr(launcher, "restart", flaky)
    monkeypatch.setattr(launcher, "RESTART_BACKOFF_S", (0.2, 0.4))
    assert_still_serving(stub, channel, tree)
    with watched_health(channel) as statuses:
        kill_and_wait(launcher.current_pid())
        with pytest.raises(grpc.RpcError) as refused:
            list(stub.RunAttack(baseline_request(tree), timeout=60))
        seen = wait_until_serving_again(statuses)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "could not be restarted (no launcher today)" in refused.value.details()
    failure = from_rpc_error(refused.value)
    assert (failure.fault, failure.retryable) == (results_pb2.FAULT_INFRASTRUCTURE, True)
    assert seen == [SERVING, NOT_SERVING, SERVING]
    assert len(attempts) == 3
    assert attempts[1] - attempts[0] >= 0.2 and attempts[2] - attempts[1] >= 0.4  # waits doubling to the cap
    assert zombie_children() == []
    assert_still_serving(stub, channel, tree)


# `seen`: the out-of-memory kill count before and after, and what the task's code was seen signalling.
@pytest.mark.parametrize(("exitcode", "ran_user_code", "seen", "expected", "words"), [
    # The task's code was seen signalling it: the task's, whatever the out-of-memory count did.
    (-signal.SIGKILL, True, (4, 5, "a.py sent it signal 9 (SIGKILL) while starting"),
     ("INVALID_ARGUMENT", TASK, False), [f"{KILLED_THE_LAUNCHER}: a.py sent it signal 9"]),
    # Unseen (through libc): the task's once its code ran.
    (-signal.SIGKILL, True, (0, 0), ("INVALID_ARGUMENT", TASK, False), [KILLED_THE_LAUNCHER, "signal 9 (SIGKILL)"]),
    (-signal.SIGTERM, True, (0, None), ("INVALID_ARGUMENT", TASK, False), [KILLED_THE_LAUNCHER, "signal 15"]),
    # No count to tell: the idle launcher is not what the out-of-memory killer picks.
    (-signal.SIGKILL, True, (None, None), ("INVALID_ARGUMENT", TASK, False), [KILLED_THE_LAUNCHER]),
    (-signal.SIGKILL, True, (4, 5), ("RESOURCE_EXHAUSTED", results_pb2.FAULT_INFRASTRUCTURE, True),
     ["out-of-memory killer ended the worker's job launcher", "1536 MB limit (--job-memory-mb)"]),
    # Nothing of the task's had run: someone else ended it; another worker may do.
    (-signal.SIGKILL, False, (0, 0), ("UNAVAILABLE", results_pb2.FAULT_INFRASTRUCTURE, True),
     ["job launcher died with signal 9 (SIGKILL) while starting, before the task's code ran"]),
    (1, False, (0, None), ("UNAVAILABLE", results_pb2.FAULT_INFRASTRUCTURE, True), ["exited with status 1"]),
])
def test_a_launcher_that_died_during_a_job_is_classified_by_what_ran_and_the_oom_kill_count(
        exitcode, ran_user_code, seen, expected, words):
    failure = job_process.launcher_death_failure(exitcode, LIMITS, "while starting", ran_user_code, *seen)
    assert (failure.code.name, failure.fault, failure.retryable) == expected
    for word in words:
        assert word in failure.message


# ---------------------------------------------------------------- the job's process group


@pytest.mark.parametrize(("code", "words"), [
    ("import os, signal\nos.kill(0, signal.SIGKILL)",
     "models/grouped/model.py sent its own process group signal 9 (SIGKILL) while in the load stage"),
    ("import os, signal\nos.killpg(os.getpgid(0), signal.SIGKILL)",
     "models/grouped/model.py sent its own process group signal 9 (SIGKILL) while in the load stage"),
    ("import os, signal\nos.kill(-os.getpgrp(), signal.SIGTERM)",
     "models/grouped/model.py sent its own process group signal 15 (SIGTERM) while in the load stage"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
     "models/grouped/model.py sent its own process signal 9 (SIGKILL) while in the load stage"),
], ids=["kill-0", "killpg", "kill-minus-group", "kill-itself"])
def test_code_that_signals_its_own_process_group_fails_its_job_alone(worker, tree, code, words):
    """The job's process used to share the worker's process group: `os.kill(0, SIGKILL)` ended the
    worker (here, in-process, the test run itself). Now it ends the job alone, as the task's fault
    whatever the out-of-memory kill count says, and the launcher is not restarted."""
    stub, channel = worker
    assert_still_serving(stub, channel, tree)
    launcher_before = launcher.current_pid()
    write_model(tree.root / "models" / "grouped", identity_weights(), code=f"{MODEL_CODE}\n{code}\n")
    with watched_health(channel) as statuses:
        result = result_of(stub, baseline_request(tree, target_model="models/grouped"))
        assert_still_serving(stub, channel, tree)
    assert (result.error.code, result.error.fault, result.error.retryable) == ("INVALID_ARGUMENT", TASK, False)
    assert f"the task's code ended its own job: {words}" in result.error.message
    assert NOT_SERVING not in statuses and launcher.current_pid() == launcher_before


def test_a_job_has_a_process_group_of_its_own_under_the_worker_and_dies_with_its_launcher(worker, tree):
    stub, _ = worker
    facts = tree.root / "facts.txt"
    code = ("import os\n"
            f"open({str(facts)!r}, 'w').write(' '.join(map(str, [os.getpid(), os.getpgid(0), os.getsid(0), "
            "os.getppid()])))\n")
    write_model(tree.root / "models" / "facts", identity_weights(), code=f"{MODEL_CODE}\n{code}\n")
    result = result_of(stub, baseline_request(tree, target_model="models/facts"))
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    pid, group, session, parent = map(int, facts.read_text().split())
    assert group == session == pid, "the job's process leads a session and a process group of its own"
    assert os.getpgid(0) != group
    assert parent == launcher.current_pid(), "forked by the launcher, so it still dies with it"


def sleeping_descendant(pid_file: Path, then: str) -> str:
    """Model code that starts a process sleeping for ten minutes, writes its pid, then runs `then`."""
    return ("import subprocess\n"
            "sleeper = subprocess.Popen(['sleep', '600'])\n"
            f"open({str(pid_file)!r}, 'w').write(str(sleeper.pid))\n{then}")


def ended(pid: int, timeout_s: float = 10) -> bool:
    """Whether process `pid` ends (or is a zombie) within `timeout_s`."""
    stat = Path(f"/proc/{pid}/stat")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] in "ZX":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("end", ["cancelled", "time limit", "finished"])
def test_every_process_a_job_started_ends_with_it(worker, tree, end):
    """The worker kills the job's process group, not its process alone: a process the task's code
    started (here `sleep 600`) used to run on after a cancellation or a time limit."""
    stub, channel = worker
    pid_file = tree.root / f"descendant-{end.replace(' ', '-')}.pid"
    then = "" if end == "finished" else "import time\ntime.sleep(600)"
    folder = f"models/spawns_{end.replace(' ', '_')}"
    write_model(tree.root / folder, identity_weights(), code=f"{MODEL_CODE}\n{sleeping_descendant(pid_file, then)}\n")
    call = stub.RunAttack(baseline_request(tree, target_model=folder), timeout=60)
    if end == "cancelled":
        assert next(call).progress.stage == results_pb2.STAGE_LOAD
        written_pid(pid_file)
        call.cancel()
        with pytest.raises(grpc.RpcError):
            list(call)
    else:
        result = list(call)[-1].result
        if end == "finished":
            assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
        else:
            assert "time limit (--job-timeout-s 6)" in result.error.message
    descendant = written_pid(pid_file)
    try:
        assert ended(descendant), f"the job's descendant {descendant} outlived the job ({end})"
    finally:
        with suppress(ProcessLookupError):
            os.kill(descendant, signal.SIGKILL)
    assert_still_serving(stub, channel, tree)


def test_a_job_still_dies_with_its_worker_out_of_the_workers_process_group(tree, tmp_path):
    """The die-with-parent chain holds: a killed worker's launcher exits, and the job's process,
    in a group of its own, dies with the launcher."""
    processes = ServiceProcesses(tmp_path)
    pid_file = tree.root / "bereaved.pid"
    code = f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\ntime.sleep(600)"
    write_model(tree.root / "models" / "bereaved", identity_weights(), code=f"{MODEL_CODE}\n{code}\n")
    try:
        address = processes.start("attack_worker", "--storage-root", str(tree.root))
        with open_channel(address) as channel:
            call = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel).RunAttack(
                baseline_request(tree, target_model="models/bereaved"), timeout=60)
            job = written_pid(pid_file)
            (_, worker_process), = processes.started
            worker_process.kill()
            worker_process.wait()
            call.cancel()
        assert ended(job), "the job's process outlived its worker"
    finally:
        processes.stop()


# ---------------------------------------------------------------- the memory watchdog (GPU workers)

WATCHED = JobLimits(memory_mb=1536, timeout_s=20, memory_bound=WATCHDOG)
HOARDS = "hoard = []\nwhile True:\n    hoard.append(bytearray(64 << 20))"
# The same in a process the job's code starts: it stays in the job's group, whose memory counts.
STARTS_A_HOARDER = ("import subprocess, sys, time\n"
                    f"subprocess.Popen([sys.executable, '-c', {HOARDS!r}])\n"
                    "time.sleep(60)")


@pytest.fixture(scope="module")
def watched_worker(tree):
    with served_worker(tree.root, limits=WATCHED) as stub_and_channel:
        yield stub_and_channel


@pytest.mark.parametrize("code", [HOARDS, STARTS_A_HOARDER], ids=["in the job", "in a process it started"])
def test_the_memory_watchdog_kills_a_job_past_its_limit_and_the_worker_keeps_serving(watched_worker, tree, code):
    """Where an address-space limit cannot be used (CUDA), the worker watches the resident memory of
    the job's processes and ends the job past --job-memory-mb as the task's fault."""
    stub, channel = watched_worker
    write_model(tree.root / "models" / "hoarder", identity_weights(), code=MODEL_CODE + "\n" + code + "\n")
    started = time.monotonic()
    result = result_of(stub, baseline_request(tree, target_model="models/hoarder"))
    assert time.monotonic() - started < WATCHED.timeout_s  # the watchdog ended it, not the time limit
    assert result.status == results_pb2.ATTACK_STATUS_FAILED
    assert (result.error.code, result.error.fault, result.error.retryable) == ("INVALID_ARGUMENT", TASK, False)
    assert "past this worker's 1536 MB limit (--job-memory-mb 1536, bound by the worker's watchdog" \
        in result.error.message
    assert "models/hoarder/model.py" in result.error.message
    held = float(result.error.message.split("held ")[1].split(" MB")[0])
    assert held > 1536
    assert_still_serving(stub, channel, tree)


@pytest.mark.parametrize(("limits", "expected"), [
    (LIMITS, 1536 << 20),
    (WATCHED, "unlimited"),
    (JobLimits(memory_mb=1536, memory_bound=AUTO), 1536 << 20),  # on this machine's CPU: the address space
], ids=["address-space", "watchdog", "auto on the CPU"])
def test_a_job_has_an_address_space_limit_unless_the_watchdog_bounds_it(tree, tmp_path, limits, expected):
    seen = tmp_path / "rlimit"
    code = (f"import resource\nsoft = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
            f"open({str(seen)!r}, 'w').write('unlimited' if soft == resource.RLIM_INFINITY else str(soft))")
    write_model(tree.root / "models" / "limits", identity_weights(), code=MODEL_CODE + "\n" + code + "\n")
    with served_worker(tree.root, limits=limits, device="cpu") as (stub, _):
        result = result_of(stub, baseline_request(tree, target_model="models/limits"))
    assert result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, result.error
    assert seen.read_text() == str(expected)


def test_the_watchdog_counts_the_memory_of_the_job_and_its_group_alone():
    """Against the kernel's own figure for one process, and a process of another group not counted."""
    own = job_process.job_resident_bytes(os.getpid())
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines())
    vm_rss = int(status["VmRSS"].split()[0]) * 1024
    assert abs(own - vm_rss) < 16 << 20 or os.getpgrp() == os.getpid()  # a group leader counts its group too
    ballast = subprocess.Popen([sys.executable, "-c", "import time\nx = bytearray(300 << 20)\ntime.sleep(30)"],
                               start_new_session=True)
    try:
        time.sleep(1.0)
        assert job_process.job_resident_bytes(ballast.pid) > 300 << 20
        assert job_process.job_resident_bytes(os.getpid()) < own + (100 << 20)
    finally:
        ballast.kill()
        ballast.wait()
