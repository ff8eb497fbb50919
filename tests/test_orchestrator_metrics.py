"""The orchestrator's Prometheus metrics: scraped from a real orchestrator process during an audit
(queue depth, running jobs, workers, slots and audits by state) and after it (job durations);
the duration's clock on its own (a retry starts it again)."""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families
from worker_fixtures import MODEL_CODE, identity_weights, write_audit_tree, write_model

from privaudit.client import AuditClient
from privaudit.services.orchestrator import metrics
from privaudit.services.orchestrator.__main__ import parse_args
from privaudit.services.orchestrator.metrics import OrchestratorMetrics
from privaudit.services.orchestrator.scheduler import Job
from privaudit.services.orchestrator.store import TaskStore
from privaudit.v1 import attack_worker_pb2, results_pb2

SLEEP_S = 3.0  # each job's model sleeps this long at import


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample the endpoint serves: (name, sorted labels) -> value."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


@pytest.mark.e2e
def test_a_real_orchestrators_metrics_during_and_after_an_audit(processes, tmp_path):
    tree = write_audit_tree(tmp_path / "root")
    write_model(tree.root / "models" / "slow", identity_weights(),
                code=f"{MODEL_CODE}\nimport time\ntime.sleep({SLEEP_S})\n")
    attack = ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args:\n"
              f"    test_datasets: [{tree.members}, {tree.non_members}]\n"
              "    target_model: models/slow\n")
    worker = processes.start("attack_worker", "--storage-root", str(tree.root))
    reporter = processes.start("reporter")
    port = free_port()
    orchestrator = processes.start("orchestrator", "--workers", worker, "--reporter", reporter,
                                   "--metrics-port", str(port), "--probe-interval", "0.5")
    outcome = {}

    def audit() -> None:
        with AuditClient(orchestrator) as client:
            outcome["done"] = client.run(attack * 2, "json").done

    auditing = threading.Thread(target=audit)
    auditing.start()
    deadline = time.monotonic() + 60
    while True:  # one job on the worker's only slot, the other waiting for it, the audit's progress stored
        samples = scrape(port)
        if value(samples, "privaudit_jobs_running") == value(samples, "privaudit_jobs_waiting") == 1 and \
                value(samples, "privaudit_audits", state="running") == 1:
            break
        assert time.monotonic() < deadline and auditing.is_alive(), samples
        time.sleep(0.1)
    assert value(samples, "privaudit_workers", state="healthy") == 1
    assert value(samples, "privaudit_workers", state="unreachable") == 0
    assert value(samples, "privaudit_worker_slots", use="taken") == 1
    assert value(samples, "privaudit_worker_slots", use="free") == 0
    assert value(samples, "privaudit_audits", state="queued") == 0

    auditing.join(120)
    assert outcome["done"] is not None and not outcome["done"].error, outcome
    samples = scrape(port)
    assert value(samples, "privaudit_jobs_running") == value(samples, "privaudit_jobs_waiting") == 0
    assert value(samples, "privaudit_audits", state="succeeded") == 1
    assert value(samples, "privaudit_audits", state="running") == 0
    finished = {"attack": "BASELINE", "part": "whole", "status": "succeeded"}
    assert value(samples, "privaudit_job_duration_seconds_count", **finished) == 2
    assert value(samples, "privaudit_job_duration_seconds_sum", **finished) >= 2 * SLEEP_S
    # Each job took more than a second and less than a minute: the buckets count them so.
    assert value(samples, "privaudit_job_duration_seconds_bucket", le="1.0", **finished) == 0
    assert value(samples, "privaudit_job_duration_seconds_bucket", le="60.0", **finished) == 2


def job(part=None) -> Job:
    return Job("task-1", 0, "LIRA", None, 7, part)


def test_a_jobs_clock_runs_from_its_attempts_first_progress_and_a_retry_starts_it_again(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])
    pool = SimpleNamespace(workers={})
    measured = OrchestratorMetrics(pool, TaskStore(None))
    seen = []
    progress = measured.progress_sink(lambda job, p: seen.append(p.stage))
    result = measured.result_sink(lambda job, outcome: seen.append("result"))
    shadow = job(attack_worker_pb2.ShadowPart(shadow_index=3))

    progress(shadow, results_pb2.JobProgress(stage=results_pb2.STAGE_LOAD))
    now[0] = 130.0
    progress(shadow, results_pb2.JobProgress(stage=results_pb2.STAGE_TRAIN_SHADOW))  # the clock runs on
    now[0] = 150.0
    progress(shadow, results_pb2.JobProgress(stage=results_pb2.STAGE_QUEUED, message="retrying: ..."))
    now[0] = 160.0
    progress(shadow, results_pb2.JobProgress(stage=results_pb2.STAGE_LOAD))  # the retry's attempt starts
    now[0] = 175.0
    result(shadow, attack_worker_pb2.ShadowOutput(shadow_index=3))
    result(job(), results_pb2.AttackResult(status=results_pb2.ATTACK_STATUS_FAILED))  # no progress: no clock

    assert seen == [results_pb2.STAGE_LOAD, results_pb2.STAGE_TRAIN_SHADOW, results_pb2.STAGE_QUEUED,
                    results_pb2.STAGE_LOAD, "result", "result"]
    labels = {"attack": "LIRA", "part": "shadow", "status": "succeeded"}
    assert measured.registry.get_sample_value("privaudit_job_duration_seconds_count", labels) == 1
    assert measured.registry.get_sample_value("privaudit_job_duration_seconds_sum", labels) == 15.0
    assert measured.registry.get_sample_value("privaudit_job_duration_seconds_count",
                                              {"attack": "LIRA", "part": "whole", "status": "failed"}) is None


@pytest.mark.parametrize(("flag", "expected"), [("0", 0), ("9464", 9464)])
def test_the_metrics_port_flag_and_its_environment_fallback(flag, expected, monkeypatch):
    monkeypatch.setenv("PRIVAUDIT_METRICS_PORT", flag)
    _, config, _ = parse_args(["--workers", "localhost:1"])
    assert config.metrics_port == expected


def test_a_metrics_port_out_of_range_is_refused_naming_the_flag(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--workers", "localhost:1", "--metrics-port", "70000"])
    assert "--metrics-port / PRIVAUDIT_METRICS_PORT" in capsys.readouterr().err


def test_the_clocks_of_jobs_that_never_end_are_dropped_once_stale(monkeypatch):
    """A cancelled job gets no result: its clock must not be kept for ever."""
    now = [0.0]
    monkeypatch.setattr(metrics.time, "monotonic", lambda: now[0])
    measured = OrchestratorMetrics(SimpleNamespace(workers={}), TaskStore(None))
    progress = measured.progress_sink(lambda job, p: None)
    started = results_pb2.JobProgress(stage=results_pb2.STAGE_LOAD)
    for index in range(metrics._CLOCKS_BEFORE_PRUNING):
        progress(Job("cancelled", index, "LOSS", None, 7), started)
    now[0] = metrics.STALE_CLOCK_S + 1
    progress(job(), started)
    assert len(measured._started) == 1  # only the fresh one
