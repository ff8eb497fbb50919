"""`python -m services.orchestrator`: serves OrchestratorService."""

from __future__ import annotations

import argparse
import sys

from privaudit.v1 import orchestrator_pb2_grpc, reporter_pb2, reporter_pb2_grpc
from services.common import logs
from services.common.channels import open_channel
from services.common.config import add_server_flags, flag, split_addresses
from services.common.server import serve_until_signalled, start_server
from services.orchestrator.audit import AuditRunner
from services.orchestrator.jobs import JobSettings
from services.orchestrator.server import SERVICE_NAME, OrchestratorServicer
from services.orchestrator.worker_pool import WorkerPool

REPORTER_SERVICE = reporter_pb2.DESCRIPTOR.services_by_name["ReporterService"].full_name


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.orchestrator", description=__doc__)
    add_server_flags(parser, "orchestrator", 50051)
    flag(parser, "--workers", "PRIVAUDIT_WORKERS", "", help="attack workers, comma-separated host:port")
    flag(parser, "--reporter", "PRIVAUDIT_REPORTER", "localhost:50053", help="the reporter's host:port")
    flag(parser, "--max-attempts", "PRIVAUDIT_MAX_ATTEMPTS", 3, type=int,
         help="attempts per job when workers fail")
    flag(parser, "--job-timeout", "PRIVAUDIT_JOB_TIMEOUT", 3600.0, type=float,
         help="seconds a worker may take for one job before it is retried elsewhere")
    args = parser.parse_args(argv)
    if not split_addresses(args.workers):
        parser.error("--workers: give at least one attack worker as host:port (or set PRIVAUDIT_WORKERS)")
    if args.max_attempts < 1:
        parser.error("--max-attempts: must be at least 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    logs.setup("orchestrator", args.log_level)
    pool = WorkerPool.from_addresses(split_addresses(args.workers))
    reporter_channel = open_channel(args.reporter, retry_service=REPORTER_SERVICE)
    runner = AuditRunner(pool, reporter_pb2_grpc.ReporterServiceStub(reporter_channel),
                         JobSettings(args.max_attempts, args.job_timeout))
    service = start_server(
        lambda server: orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(
            OrchestratorServicer(runner), server),
        [SERVICE_NAME],
        args.listen,
    )
    serve_until_signalled(service, args.ready_file)
    pool.close()
    reporter_channel.close()


if __name__ == "__main__":
    main()
