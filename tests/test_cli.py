"""The `privaudit` command as operators use it: cluster up/down, run, list, status, watch, cancel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
PRIVAUDIT = [sys.executable, "-c", "import sys; from privaudit.client.cli import main; sys.exit(main())"]


def privaudit(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*PRIVAUDIT, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout)


def processes_of(state_dir: Path) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if str(state_dir) in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def test_cluster_up_run_inspect_down(tmp_path):
    state = tmp_path / "state"
    up = privaudit("cluster", "up", "--workers", "2", "--state-dir", str(state), "--storage-root", str(REPO))
    assert up.returncode == 0, up.stderr
    try:
        record = json.loads((state / "cluster.json").read_text())
        assert {"orchestrator", "reporter", "workers"} <= record.keys() and len(record["workers"]) == 2
        assert all(e["address"].startswith("127.0.0.1:") and e["pid"] for e in
                   [record["orchestrator"], record["reporter"], *record["workers"]])
        address = record["orchestrator"]["address"]

        run = privaudit("run", "example/tasks/mem_inf.yaml", "--orchestrator", address, "--format", "json",
                        "--output", str(tmp_path / "report.json"), "--scores", str(tmp_path / "scores.npz"),
                        "--quiet")
        assert run.returncode == 0, run.stderr
        task_id = json.loads((tmp_path / "report.json").read_text())["task_id"]
        scores = np.load(tmp_path / "scores.npz")
        # 3 attacks x (400 members + 400 non-members), each attack's evaluated rows balanced.
        assert len(scores["score"]) == 2400 and set(scores["attack"]) == {"BASELINE", "ML-LEAK", "LABEL-ONLY"}
        assert scores["evaluated"].sum() == 3 * 800

        listed = privaudit("list", "--orchestrator", address)
        line = next(line for line in listed.stdout.splitlines() if task_id in line)
        assert listed.returncode == 0 and "SUCCEEDED" in line and "risk HIGH" in line
        assert json.loads(privaudit("list", "--orchestrator", address, "--json").stdout)[0]["summary"][
            "overall_risk"] == "HIGH"

        status = privaudit("status", task_id, "--orchestrator", address)
        assert status.returncode == 0 and "overall risk: HIGH" in status.stdout and "3/3 LABEL-ONLY" in status.stdout
        data = json.loads(privaudit("status", task_id, "--orchestrator", address, "--json").stdout)
        assert data["state"] == "SUCCEEDED" and len(data["results"]) == 3
        assert data["results"][0]["metrics"]["num_members"] == 400 and isinstance(data["event_count"], int)
        assert data["results"][0]["roc"][0] == {"fpr": 0.0, "tpr": 0.0}

        watched = privaudit("watch", task_id, "--orchestrator", address, "--quiet")
        assert watched.returncode == 0 and "Summary:" not in watched.stdout  # the report was JSON
        assert json.loads(watched.stdout)["task_id"] == task_id
        as_text = privaudit("watch", task_id, "--orchestrator", address, "--quiet", "--format", "text")
        assert as_text.returncode == 0 and "Summary:" in as_text.stdout and task_id in as_text.stdout

        same = privaudit("compare", str(tmp_path / "report.json"), task_id, "--orchestrator", address,
                         "--fail-on-regression")
        assert same.returncode == 0, same.stderr
        assert "no regression beyond noise" in same.stdout and "within noise" in same.stdout

        rerun = privaudit("run", "example/tasks/mem_inf.yaml", "--orchestrator", address, "--quiet", "--format",
                          "json", "--baseline", str(tmp_path / "report.json"), "--fail-on-regression")
        assert rerun.returncode == 0, rerun.stderr
        assert json.loads(rerun.stdout)["comparison"]["regressed"] is False

        cancel = privaudit("cancel", task_id, "--orchestrator", address)
        assert cancel.returncode == 0 and "SUCCEEDED" in cancel.stdout  # finished audits stay as they were

        served = privaudit("attacks", "--orchestrator", address)
        assert served.returncode == 0
        assert "LIRA:" in served.stdout and "num_shadow" in served.stdout and "default 16" in served.stdout

        gated = privaudit("run", "example/tasks/mem_inf.yaml", "--orchestrator", address, "--quiet",
                          "--fail-on", "MIDDLE")
        assert gated.returncode == 3, gated.stderr
        assert "reaches --fail-on MIDDLE" in gated.stderr

        # A gate must not pass on an audit that measured nothing: every attack failed, exit 4.
        broken = tmp_path / "broken.yaml"
        broken.write_text("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args:\n"
                          "    test_datasets: [./example/datasets/digits_target_members, ./no/such/folder]\n"
                          "    target_model: ./example/models/digits_mlp\n")
        incomplete = privaudit("run", str(broken), "--orchestrator", address, "--quiet", "--fail-on", "LOW")
        assert incomplete.returncode == 4, incomplete.stderr
        assert "incomplete: 1 of 1 attacks failed" in incomplete.stderr

        missing = privaudit("status", "no-such-task", "--orchestrator", address)
        assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    finally:
        down = privaudit("cluster", "down", "--state-dir", str(state))
    assert down.returncode == 0, down.stderr
    assert "4 process(es) stopped" in down.stdout
    assert not processes_of(state)
    assert not (state / "cluster.json").exists()
    again = privaudit("cluster", "down", "--state-dir", str(state))
    assert again.returncode == 0 and "nothing was running" in again.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["status", "abc"], "--orchestrator: give the orchestrator's HOST:PORT"),
        (["run", "no/such/task.yaml"], "cannot read the task file"),
        (["cluster", "down", "--state-dir", "/nonexistent/state"], "no cluster is recorded in /nonexistent/state"),
    ],
)
def test_usage_errors_name_what_is_missing(args, message, monkeypatch):
    monkeypatch.delenv("PRIVAUDIT_ORCHESTRATOR", raising=False)
    completed = privaudit(*args, timeout=60)
    assert completed.returncode in (1, 2)
    assert message in completed.stderr


@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_and_run_list_every_problem_of_the_folders_before_anything_starts(tmp_path, command):
    """Issue 18: `run` checks what `validate` checks, before a service starts (a missing folder
    cost 77 s, then was reported as another error), and both list every problem at once."""
    assert privaudit("validate", "example/tasks/mem_inf.yaml").returncode == 0
    broken = tmp_path / "task.yaml"
    broken.write_text((REPO / "example/tasks/mem_inf.yaml").read_text()
                      .replace("digits_cnn", "digits_cnx").replace("digits_shadow_members", "digits_shadow_memberz"))
    started = time.monotonic()
    completed = privaudit(command, str(broken), "--storage-root", str(REPO), timeout=60)
    assert completed.returncode == 2, completed.stderr
    assert "attacks[1].args.shadow_model: 'example/models/digits_cnx' does not exist" in completed.stderr
    assert "shadow_dataset" in completed.stderr and "digits_shadow_memberz" in completed.stderr
    assert "Traceback" not in completed.stderr and "local cluster" not in completed.stderr
    assert time.monotonic() - started < 20  # an interpreter's start and the checks; no service started


def test_live_progress_on_a_terminal(tmp_path):
    """On a terminal, progress is drawn with bars (rich); captured through a pseudo-terminal."""
    import pty

    output = bytearray()

    def read(fd):
        data = os.read(fd, 65536)
        output.extend(data)
        return data

    code = pty.spawn([*PRIVAUDIT, "run", "example/tasks/mem_inf.yaml", "--output", str(tmp_path / "r.txt")],
                     read)
    text = output.decode(errors="replace")
    assert os.waitstatus_to_exitcode(code) == 0, text[-2000:]
    assert "3/3 LABEL-ONLY" in text and "risk HIGH" in text and "━" in text
    # Issue 18: what the local cluster does while it starts, and an overall bar.
    assert "local cluster: starting 1 worker(s)" in text and "every service serving" in text
    assert "all attacks" in text and "3/3 finished" in text


@pytest.mark.parametrize(("content", "message"), [
    (b"[" * 50_000, "the task file nests deeper than 10 levels (a task needs 4) at line 1, column 11"),
    ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args: {test_datasets: [d/caf\u00e9, d/out], "
     "target_model: m}\n".encode("latin-1"), "is not UTF-8 text: byte 0xe9 at offset 83"),
    (b"#" * (5 * 1024 * 1024), "is more than 4,193,280 bytes, the most a task may be"),
    (b'- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args: {test_datasets: [d/in, d/out], '
     b'target_model: "m/a\\0b"}\n', "attacks[0].args.target_model: 'm/a\\x00b' holds a control character (U+0000)"),
])
@pytest.mark.parametrize("command", [["validate"], ["run", "--orchestrator", "127.0.0.1:9"]])
def test_a_task_file_the_schema_refuses_exits_2_saying_why_without_a_traceback(tmp_path, content, message, command):
    task = tmp_path / "task.yaml"
    task.write_bytes(content)
    completed = privaudit(command[0], str(task), *command[1:], timeout=60)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "privaudit: invalid task:" in completed.stderr and message in completed.stderr, completed.stderr[-2000:]
    assert "Traceback" not in completed.stderr


def test_run_submits_before_the_workers_serve_and_a_worker_that_cannot_start_ends_it_saying_why(tmp_path):
    """Issue 17: `privaudit run` starts every service at once and submits as soon as the orchestrator
    can queue; the workers join as they serve. One that exits before it serves (here: a GPU that no
    Paddle here can use) must not leave the audit waiting: the run fails naming it and its log."""
    from privaudit.client import AuditClient, LocalCluster
    from privaudit.client.local_cluster import ClusterError

    task = ("- type: MEMBERSHIP_INFERENCE_ATTACK\n  name: BASELINE\n  args:\n    test_datasets: "
            "[./example/datasets/digits_target_members, ./example/datasets/digits_target_non_members]\n"
            "    target_model: ./example/models/digits_mlp\n")
    with LocalCluster(workers=2, storage_root=REPO, wait_for_workers=False) as cluster, \
            AuditClient(cluster.address) as auditor:
        submitted = cluster.service("orchestrator").serving_at
        workers = [p for p in cluster.processes if p.name.startswith("worker-")]
        outcome = auditor.run(task)
    assert [r.attack_name for r in outcome.results] == ["BASELINE"] and outcome.rendered
    assert any(w.serving_at > submitted for w in workers), "the workers served after the audit was submitted"

    failing = LocalCluster(workers=1, storage_root=REPO, wait_for_workers=False, state_dir=tmp_path / "state",
                           worker_flags=["--device", "gpu:99"])
    with pytest.raises(ClusterError) as failed, failing as cluster, AuditClient(cluster.address) as auditor:
        auditor.run(task)
    assert "worker-0 exited with status 1 while starting" in str(failed.value)
    assert "--device / PRIVAUDIT_DEVICE: gpu:99 asked for, but" in str(failed.value)
    assert not processes_of(tmp_path / "state")


def test_a_cancelled_run_leaves_a_partial_report_not_an_empty_file(tmp_path):
    """Issue 18: a cancelled `run --output` left a 0-byte file; now the attacks that had finished,
    the report marked partial."""
    from privaudit.client import LocalCluster

    task = tmp_path / "slow.yaml"
    task.write_text((REPO / "example/tasks/mem_inf_sota.yaml").read_text())  # LOSS at once, LIRA's 16 shadows later
    output = tmp_path / "report.json"
    with LocalCluster(workers=1, slots=2, storage_root=REPO) as cluster:
        running = subprocess.Popen([*PRIVAUDIT, "run", str(task), "--orchestrator", cluster.address, "--format",
                                    "json", "--output", str(output)], cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            listed = json.loads(privaudit("list", "--orchestrator", cluster.address, "--json").stdout)
            if listed and listed[0]["state"] == "RUNNING":
                break
            time.sleep(0.5)
        cancelled = privaudit("cancel", listed[0]["task_id"], "--orchestrator", cluster.address)
        assert cancelled.returncode == 0 and "CANCELLED" in cancelled.stdout
        _, stderr = running.communicate(timeout=120)
    assert running.returncode == 1 and "was cancelled" in stderr, stderr
    report = json.loads(output.read_text())
    assert report["partial"] is True and "was cancelled" in report["partial_reason"]
    assert [a["name"] for a in report["attacks"]] == ["LOSS", "LIRA", "RMIA"]
    unfinished = [a for a in report["attacks"] if a["status"] == "failed"]
    assert unfinished and all(a["error"]["message"].startswith("did not finish: ") for a in unfinished)
