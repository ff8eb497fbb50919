"""`python -m services.attack_worker`: serve AttackWorkerService.

Paddle is imported only after the flags are read, because `--threads` must be in
OMP_NUM_THREADS before Paddle starts its thread pools.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from services.common import logs
from services.common.config import add_server_flags, flag
from services.common.server import serve_until_signalled, start_server


def parse_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.attack_worker",
                                     description="Runs membership-inference attack jobs with Paddle.")
    add_server_flags(parser, "worker", 50052)
    flag(parser, "--storage-root", "PRIVAUDIT_STORAGE_ROOT", ".", type=Path,
         help="folder that the task's model and dataset paths are relative to")
    flag(parser, "--threads", "PRIVAUDIT_WORKER_THREADS", 1, type=int,
         help="CPU threads for Paddle (sets OMP_NUM_THREADS)")
    args = parser.parse_args(argv)
    if not args.storage_root.is_dir():
        parser.error(f"--storage-root / PRIVAUDIT_STORAGE_ROOT: {str(args.storage_root)!r} is not a folder")
    if args.threads < 1:
        parser.error(f"--threads / PRIVAUDIT_WORKER_THREADS: must be at least 1, got {args.threads}")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_flags(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    logs.setup("attack_worker", args.log_level)
    from services.attack_worker import server  # imports Paddle

    service = start_server(lambda grpc_server: server.register(grpc_server, args.storage_root),
                           [server.SERVICE_NAME], args.listen)
    serve_until_signalled(service, args.ready_file)


if __name__ == "__main__":
    main()
