"""`python -m services.attack_worker`: flags, environment fallbacks, lazy Paddle, a real process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.attack_worker.__main__ import parse_flags

REPO = Path(__file__).resolve().parents[1]


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
])
def test_bad_settings_fail_fast_naming_the_setting(argv, expected, capsys):
    with pytest.raises(SystemExit) as exited:
        parse_flags(argv)
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_the_entry_point_does_not_import_paddle_before_reading_flags():
    code = "import sys, services.attack_worker.__main__; print('paddle' in sys.modules)"
    completed = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.stdout.strip() == "False", completed.stderr


def test_the_worker_process_serves_and_stops_on_sigterm(tmp_path):
    ready = tmp_path / "ready"
    env = {**os.environ, "PRIVAUDIT_WORKER_THREADS": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "services.attack_worker", "--listen", "127.0.0.1:0", "--ready-file", str(ready),
         "--storage-root", str(tmp_path)],
        cwd=REPO, env=env, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.exists(), "the worker never became ready"
        with grpc.insecure_channel(ready.read_text().strip()) as channel:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="privaudit.v1.AttackWorkerService"), timeout=10)
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "serving privaudit.v1.AttackWorkerService" in process.stderr.read()
