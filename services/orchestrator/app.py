"""The orchestrator's parts wired together: task store, worker pool, scheduler, audit runner, server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIServer

from privaudit.services.common.channels import PLAINTEXT, ChannelSecurity, open_channel
from privaudit.services.common.server import DEFAULT_OPTIONS, ServerOptions, Service, start_server
from privaudit.services.orchestrator.audit import AuditRunner
from privaudit.services.orchestrator.entry_relay import EntryRelay
from privaudit.services.orchestrator.limits import TaskLimits
from privaudit.services.orchestrator.metrics import OrchestratorMetrics
from privaudit.services.orchestrator.scheduler import JobSettings, ProgressSink, ResultSink, Scheduler
from privaudit.services.orchestrator.server import SERVICE_NAME, OrchestratorServicer
from privaudit.services.orchestrator.store import TaskStore
from privaudit.services.orchestrator.worker_pool import WorkerPool
from privaudit.v1 import orchestrator_pb2_grpc, reporter_pb2, reporter_pb2_grpc

REPORTER_SERVICE = reporter_pb2.DESCRIPTOR.services_by_name["ReporterService"].full_name
STATE_FILE = "orchestrator.sqlite3"
ENTRIES_FOLDER = "entries"  # in the state folder: shadow entries relayed between workers (entry_relay)


@dataclass(frozen=True)
class OrchestratorConfig:
    reporter: str
    workers: list[str] = field(default_factory=list)
    worker_dns: str | None = None
    state_dir: Path | None = None  # None: state in memory only
    jobs: JobSettings = field(default_factory=JobSettings)
    probe_interval: float = 2.0
    limits: TaskLimits = field(default_factory=TaskLimits)
    peers: ChannelSecurity = PLAINTEXT  # how to reach the workers and the reporter
    report_wait: float = 600.0  # seconds an unreachable reporter is waited for before an audit fails
    metrics_port: int = 0  # where Prometheus metrics are served over HTTP (0: not served)


class Orchestrator:
    def __init__(self, config: OrchestratorConfig):
        self.store = TaskStore(config.state_dir / STATE_FILE if config.state_dir else None)
        self.limits = config.limits
        self.pool = WorkerPool(config.workers, config.worker_dns, refresh_seconds=config.probe_interval,
                               security=config.peers)
        self.reporter_channel = open_channel(config.reporter, retry_service=REPORTER_SERVICE, security=config.peers)
        self.metrics = OrchestratorMetrics(self.pool, self.store)
        self.metrics_port = config.metrics_port
        self.entries = EntryRelay(config.state_dir / ENTRIES_FOLDER if config.state_dir else None)

        def measured_scheduler(on_progress: ProgressSink, on_result: ResultSink) -> Scheduler:
            return Scheduler(self.pool, config.jobs, self.metrics.progress_sink(on_progress),
                             self.metrics.result_sink(on_result), self.entries)

        self.runner = AuditRunner(self.store, measured_scheduler,
                                  reporter_pb2_grpc.ReporterServiceStub(self.reporter_channel),
                                  report_wait=config.report_wait, reporter_address=config.reporter)
        self.scheduler = self.runner.scheduler
        self.metrics.waiting = lambda: self.scheduler.waiting
        self.service: Service | None = None
        self._metrics_server: WSGIServer | None = None

    def start(self, listen: str, options: ServerOptions = DEFAULT_OPTIONS) -> Service:
        """Finds the workers, resumes unfinished audits, then serves."""
        if self.metrics_port:
            self._metrics_server = self.metrics.serve(self.metrics_port)
        self.pool.start()
        self.runner.recover()
        self.scheduler.start()
        servicer = OrchestratorServicer(self.runner, self.limits)
        self.service = start_server(
            lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server),
            [SERVICE_NAME], listen, options=options)
        return self.service

    def close(self) -> None:
        """Releases what the serving left (call after the server stopped)."""
        self.scheduler.stop()
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        self.pool.close()
        self.reporter_channel.close()
        self.store.close()
        self.entries.close()

    def stop(self, grace: float = 5.0) -> None:
        self.scheduler.stop()
        if self.service:
            self.service.stop(grace)
        self.close()
