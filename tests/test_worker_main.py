"""`python -m privaudit.services.attack_worker`: flags, environment fallbacks, lazy Paddle, a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from test_isolation import (
    KILLED_THE_LAUNCHER,
    KILLS_ITS_PARENT,
    NOT_SERVING,
    SERVING,
    wait_until_serving_again,
    watched_health,
    zombie_children,
)
from worker_fixtures import MODEL_CODE, baseline_request, identity_weights, write_audit_tree, write_model

from privaudit.services.attack_worker.__main__ import parse_flags, settings_from
from privaudit.services.common.errors import from_rpc_error
from privaudit.v1 import attack_worker_pb2, attack_worker_pb2_grpc, results_pb2

REPO = Path(__file__).resolve().parents[1]
WORKER_SERVICE = "privaudit.v1.AttackWorkerService"


def test_flags_fall_back_to_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("PRIVAUDIT_STORAGE_ROOT", str(tmp_path))
    monkeypatch.setenv("PRIVAUDIT_WORKER_THREADS", "3")
    monkeypatch.setenv("PRIVAUDIT_WORKER_LISTEN", "127.0.0.1:6000")
    args = parse_flags([])
    assert (args.storage_root, args.threads, args.listen) == (tmp_path, 3, "127.0.0.1:6000")
    assert parse_flags(["--threads", "2", "--storage-root", str(REPO)]).threads == 2


def test_defaults(monkeypatch):
    for name in ("PRIVAUDIT_STORAGE_ROOT", "PRIVAUDIT_WORKER_THREADS", "PRIVAUDIT_WORKER_LISTEN"):
        monkeypatch.delenv(name, raising=False)
    args = parse_flags([])
    assert (args.storage_root, args.threads, args.listen) == (Path("."), 1, "0.0.0.0:50052")


@pytest.mark.parametrize(("argv", "expected"), [
    (["--storage-root", "/no/such/folder"],
     "--storage-root / PRIVAUDIT_STORAGE_ROOT: '/no/such/folder' is not a folder"),
    (["--threads", "0"], "--threads / PRIVAUDIT_WORKER_THREADS: must be at least 1, got 0"),
    (["--job-memory-bound", "rss"], "argument --job-memory-bound: invalid choice: 'rss'"),
    (["--slots", "0"], "--slots / PRIVAUDIT_WORKER_SLOTS: must be at least 1, got 0"),
    (["--device", "cuda"], "--device / PRIVAUDIT_DEVICE: must be cpu, gpu or gpu:N (N a GPU's number), got 'cuda'"),
    (["--device", "gpu:"], "got 'gpu:'"),
    (["--device", "gpu:-1"], "got 'gpu:-1'"),
])
def test_bad_settings_fail_fast_naming_the_setting(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_flags(argv)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize(("value", "device"), [(None, None), ("cpu", "cpu"), ("GPU", "gpu"), ("gpu:3", "gpu:3")])
def test_the_device_flag_and_its_environment_fallback(value, device, monkeypatch):
    monkeypatch.delenv("PRIVAUDIT_DEVICE", raising=False)
    if value is not None:
        monkeypatch.setenv("PRIVAUDIT_DEVICE", value)
    args = parse_flags([])
    assert args.device == device
    assert settings_from(args, Path("/tmp")).device == device


def test_slots_and_the_memory_bound_reach_the_settings(monkeypatch):
    monkeypatch.setenv("PRIVAUDIT_JOB_MEMORY_BOUND", "watchdog")
    settings = settings_from(parse_flags(["--slots", "3"]), Path("/tmp"))
    assert (settings.slots, settings.limits.memory_bound) == (3, "watchdog")
    monkeypatch.delenv("PRIVAUDIT_JOB_MEMORY_BOUND")
    settings = settings_from(parse_flags(["--job-memory-bound", "address-space"]), Path("/tmp"))
    assert (settings.slots, settings.limits.memory_bound) == (1, "address-space")
    assert settings_from(parse_flags([]), Path("/tmp")).limits.memory_bound == "auto"


def test_a_gpu_this_paddle_cannot_use_stops_the_worker_at_start_saying_why(tmp_path):
    import paddle

    if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count() > 0:
        pytest.skip("this machine has a GPU Paddle can use")
    completed = subprocess.run([sys.executable, "-m", "privaudit.services.attack_worker", "--listen", "127.0.0.1:0",
                                "--storage-root", str(tmp_path), "--device", "gpu:0"],
                               cwd=REPO, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 1
    assert "--device / PRIVAUDIT_DEVICE: gpu:0 asked for, but" in completed.stderr


def test_the_entry_point_does_not_import_paddle_before_reading_flags():
    code = "import sys, privaudit.services.attack_worker.__main__; print('paddle' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.stdout.strip() == "False", completed.stderr


@contextmanager
def worker_process(tmp_path: Path, storage_root: Path, *flags: str, serving: bool = True,
                   ) -> Iterator[tuple[subprocess.Popen, str]]:
    """`python -m privaudit.services.attack_worker` serving `storage_root` on loopback, and its address,
    once it is SERVING (or, with serving=False, once bound); killed at the end if still running
    (its stderr is a pipe the caller may read once it ended)."""
    ready = tmp_path / "ready"
    env = {**os.environ, "PRIVAUDIT_WORKER_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "privaudit.services.attack_worker", "--listen", "127.0.0.1:0",
         "--ready-file", str(ready),
         "--storage-root", str(storage_root), *flags],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the worker never bound"
        address = ready.read_text().strip()
        if serving:
            with grpc.insecure_channel(address) as channel:
                request = health_pb2.HealthCheckRequest(service=WORKER_SERVICE)
                for answer in health_pb2_grpc.HealthStub(channel).Watch(request, timeout=120):
                    if answer.status == SERVING:
                        break
        yield process, address
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def test_a_worker_is_bound_at_once_and_serves_once_its_launcher_forks_jobs(tmp_path):
    """Issue 17: the address is known (an orchestrator can start) while the launcher imports
    Paddle; meanwhile health says NOT_SERVING, GetCapacity is refused as retryable, and a job
    sent anyway waits, queued, then runs."""
    tree = write_audit_tree(tmp_path / "root")
    with worker_process(tmp_path, tree.root, serving=False) as (process, address), \
            grpc.insecure_channel(address) as channel:
        stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)
        with watched_health(channel) as statuses:
            with pytest.raises(grpc.RpcError) as starting:
                stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10)
            responses = list(stub.RunAttack(baseline_request(tree), timeout=120))
            seen = wait_until_serving_again(statuses)
        assert starting.value.code() == grpc.StatusCode.UNAVAILABLE and from_rpc_error(starting.value).retryable
        assert seen == [NOT_SERVING, SERVING]
        assert responses[0].progress.stage == results_pb2.STAGE_QUEUED
        assert responses[0].progress.message == "waiting for this worker's job launcher to start"
        assert responses[-1].result.status == results_pb2.ATTACK_STATUS_SUCCEEDED, responses[-1].result.error
        assert stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10).device == "cpu"
        libraries = Path(f"/proc/{process.pid}/maps").read_text()  # the serving process moves bytes only
        assert "paddle" not in libraries and "/numpy/" not in libraries and "/sklearn/" not in libraries


def test_the_worker_process_serves_and_stops_on_sigterm(tmp_path):
    with worker_process(tmp_path, tmp_path) as (process, address):
        with grpc.insecure_channel(address) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="privaudit.v1.AttackWorkerService"), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert "serving privaudit.v1.AttackWorkerService" in process.stderr.read()


def test_a_worker_process_restarts_the_launcher_a_job_killed_and_serves_on(tmp_path):
    """Issue 15, defect 11, in the worker's own process: the health it serves goes NOT_SERVING
    and back, and the dead launcher is not left a zombie of the worker."""
    tree = write_audit_tree(tmp_path / "root")
    write_model(tree.root / "models" / "parricide", identity_weights(), code=f"{MODEL_CODE}\n{KILLS_ITS_PARENT}\n")
    with worker_process(tmp_path, tree.root) as (process, address), grpc.insecure_channel(address) as channel:
        stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)
        with watched_health(channel) as statuses:
            killed = list(stub.RunAttack(baseline_request(tree, target_model="models/parricide"), timeout=120))
            seen = wait_until_serving_again(statuses)
        assert f"{KILLED_THE_LAUNCHER}: models/parricide/model.py sent it signal 9" in killed[-1].result.error.message
        assert seen == [SERVING, NOT_SERVING, SERVING]
        assert zombie_children(process.pid) == []
        good = list(stub.RunAttack(baseline_request(tree), timeout=120))[-1].result
        assert good.status == results_pb2.ATTACK_STATUS_SUCCEEDED, good.error


SLEEPS_AT_IMPORT = "import time\ntime.sleep({seconds})"


def test_a_stopping_worker_drains_finishing_what_fits_in_the_grace_and_sending_back_the_rest(tmp_path):
    """SIGTERM: NOT_SERVING at once, new calls refused UNAVAILABLE (retryable, so the orchestrator
    places them elsewhere), a job that ends within --drain-grace-s finishes, one that would not is
    cancelled at the grace's end as UNAVAILABLE and retryable, and the process then exits 0."""
    tree = write_audit_tree(tmp_path / "root")
    for name, seconds in (("quick", 3), ("slow", 120)):
        write_model(tree.root / "models" / name, identity_weights(),
                    code=f"{MODEL_CODE}\n{SLEEPS_AT_IMPORT.format(seconds=seconds)}\n")
    grace = 8.0
    with worker_process(tmp_path, tree.root, "--slots", "2", "--drain-grace-s", str(grace)) as (process, address), \
            grpc.insecure_channel(address) as channel:
        stub = attack_worker_pb2_grpc.AttackWorkerServiceStub(channel)
        calls = {name: stub.RunAttack(baseline_request(tree, target_model=f"models/{name}", task_id=name), timeout=180)
                 for name in ("quick", "slow")}
        for call in calls.values():
            assert next(call).progress.stage == results_pb2.STAGE_LOAD
        process.send_signal(signal.SIGTERM)
        stopped = time.monotonic()

        health = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="privaudit.v1.AttackWorkerService")
        while health.Check(request, timeout=10).status != NOT_SERVING:
            assert time.monotonic() - stopped < 15, "the worker still reports SERVING"  # 5 s passed under load
            time.sleep(0.05)
        for refused in (lambda: stub.GetCapacity(attack_worker_pb2.GetCapacityRequest(), timeout=10),
                        lambda: list(stub.RunAttack(baseline_request(tree, task_id="late"), timeout=10))):
            with pytest.raises(grpc.RpcError) as caught:
                refused()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "stopping" in caught.value.details()
            assert from_rpc_error(caught.value).retryable

        quick = list(calls["quick"])[-1].result
        assert quick.status == results_pb2.ATTACK_STATUS_SUCCEEDED, quick.error
        with pytest.raises(grpc.RpcError) as sent_back:
            list(calls["slow"])
        assert time.monotonic() - stopped >= grace
        failure = from_rpc_error(sent_back.value)
        assert sent_back.value.code() == grpc.StatusCode.UNAVAILABLE
        assert (failure.fault, failure.retryable) == (results_pb2.FAULT_INFRASTRUCTURE, True)
        assert f"for {grace:g} s (--drain-grace-s)" in failure.message
        assert process.wait(timeout=60) == 0
    log = process.stderr.read()
    assert "task quick attack 0 BASELINE SUCCEEDED" in log
    assert "task slow attack 0 BASELINE SENT BACK (the worker stopped)" in log
