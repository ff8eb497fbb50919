"""`python -m privaudit.services.attack_worker`: serve AttackWorkerService.

This process never imports Paddle: its job launcher does, in a process of its own started
first thing after the flags are read (`--threads` must be in OMP_NUM_THREADS before Paddle
starts its thread pools). The worker binds and writes its `--ready-file` at once, NOT_SERVING,
and reports SERVING once that launcher forks jobs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from privaudit.services.attack_worker.settings import MEMORY_BOUNDS, JobLimits, WorkerSettings, parse_device
from privaudit.services.common import logs
from privaudit.services.common.config import add_internal_token_flag, add_server_flags, flag, server_options
from privaudit.services.common.server import serve_until_signalled, write_ready_file

DEFAULT_MAX_DATASET_LENGTH = 1_000_000
# Matches the job time limit's default, so that a job within its limit finishes; the Kubernetes
# manifests give the pod this plus 60 s (terminationGracePeriodSeconds) to cancel, answer and stop.
DEFAULT_DRAIN_GRACE_S = 3600.0


def parse_flags(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The flags, and in `serving` the ServerOptions they give; exits on a bad flag."""
    parser = argparse.ArgumentParser(prog="python -m privaudit.services.attack_worker",
                                     description="Runs membership-inference attack jobs with Paddle.")
    add_server_flags(parser, "worker", 50052)
    flag(parser, "--storage-root", "PRIVAUDIT_STORAGE_ROOT", ".", type=Path,
         help="folder that the task's model and dataset paths are relative to")
    flag(parser, "--threads", "PRIVAUDIT_WORKER_THREADS", 1, type=int,
         help="CPU threads for Paddle (sets OMP_NUM_THREADS)")
    flag(parser, "--max-dataset-length", "PRIVAUDIT_MAX_DATASET_LENGTH", DEFAULT_MAX_DATASET_LENGTH, type=int,
         help="most records a task's dataset may have; a longer one fails its attack")
    flag(parser, "--dataset-memory-mb", "PRIVAUDIT_DATASET_MEMORY_MB", WorkerSettings.dataset_memory_mb, type=int,
         help="a job reads each dataset whose float32 samples fit in this many MB into memory once; "
              "larger ones are read record by record for every batch")
    flag(parser, "--cache-dir", "PRIVAUDIT_CACHE_DIR", None, type=Path,
         help="writable folder, which workers may share, keeping the target models' outputs and trained "
              "LIRA/RMIA shadow models' outputs for reuse by later jobs; unset: a private folder of this "
              "worker, removed when it stops")
    flag(parser, "--cache-max-mb", "PRIVAUDIT_CACHE_MAX_MB", WorkerSettings.cache_max_mb, type=int,
         help="most MB each of the two caches (model outputs, shadow outputs) keeps; the entries used "
              "least recently go first, and 0 keeps none")
    parser.add_argument("--cache-shared", action="store_true",
                        default=os.environ.get("PRIVAUDIT_CACHE_SHARED", "").lower() in ("1", "true", "yes"),
                        help="every worker of the pool sees this worker's --cache-dir (one shared folder), so "
                             "LIRA/RMIA shadow parts answer with a reference to their stored outputs instead of "
                             "the outputs (env PRIVAUDIT_CACHE_SHARED; 1, true or yes turn it on; default off: "
                             "outputs travel in the messages, up to the 64 MiB message limit)")
    flag(parser, "--job-memory-mb", "PRIVAUDIT_JOB_MEMORY_MB", JobLimits.memory_mb, type=int,
         help="memory limit of each job, whose process runs the task's code; a job past it fails as the task's "
              "fault. How it holds: see --job-memory-bound")
    flag(parser, "--job-memory-bound", "PRIVAUDIT_JOB_MEMORY_BOUND", JobLimits.memory_bound, choices=MEMORY_BOUNDS,
         help="how --job-memory-mb holds: address-space (an RLIMIT_AS on the job's process: exact, but it breaks "
              "CUDA's start), watchdog (the worker sums the resident memory of the job's processes every 0.2 s "
              "and kills them past the limit: a fast allocation can pass it briefly, and GPU memory is not "
              "counted, so leave the pod's memory limit some room above it), or auto: the watchdog when jobs "
              "run on a GPU, else address-space")
    flag(parser, "--job-timeout-s", "PRIVAUDIT_JOB_TIMEOUT_S", JobLimits.timeout_s, type=float,
         help="wall-time limit of each job, in seconds; a job past it is killed and fails")
    flag(parser, "--device", "PRIVAUDIT_DEVICE", None,
         help="where jobs run Paddle: cpu, gpu (the first GPU) or gpu:N; unset: the first GPU Paddle finds, "
              "else the CPU. A GPU that Paddle cannot use stops the worker at start")
    flag(parser, "--slots", "PRIVAUDIT_WORKER_SLOTS", WorkerSettings.slots, type=int,
         help="jobs run at once, each in a process of its own with its own --threads and --job-memory-mb "
              "(so the worker needs slots x threads cores and slots x job-memory-mb of memory); advertised to "
              "the orchestrator, which places that many jobs here. On a GPU the jobs share it: 1 unless the "
              "models are small")
    flag(parser, "--drain-grace-s", "PRIVAUDIT_DRAIN_GRACE_S", DEFAULT_DRAIN_GRACE_S, type=float,
         help="on SIGTERM the worker stops taking jobs (health NOT_SERVING, new calls UNAVAILABLE) and lets its "
              "running jobs finish for this many seconds, then cancels the rest, which the orchestrator runs "
              "elsewhere; keep it below the pod's terminationGracePeriodSeconds")
    add_internal_token_flag(parser, sends=False)
    args = parser.parse_args(argv)
    if not args.storage_root.is_dir():
        parser.error(f"--storage-root / PRIVAUDIT_STORAGE_ROOT: {str(args.storage_root)!r} is not a folder")
    for name, value in (("threads", args.threads), ("slots", args.slots)):
        if value < 1:
            parser.error(f"--{name} / PRIVAUDIT_WORKER_{name.upper()}: must be at least 1, got {value}")
    if args.cache_dir is not None and not (args.cache_dir.is_dir() and os.access(args.cache_dir, os.W_OK | os.X_OK)):
        parser.error(f"--cache-dir / PRIVAUDIT_CACHE_DIR: {str(args.cache_dir)!r} is not a writable folder; "
                     "create it, or leave the setting unset for a private cache")
    if args.cache_shared and args.cache_dir is None:
        parser.error("--cache-shared / PRIVAUDIT_CACHE_SHARED: needs --cache-dir, the folder the workers share")
    for name in ("dataset_memory_mb", "cache_max_mb"):
        if getattr(args, name) < 0:
            option = name.replace("_", "-")
            parser.error(f"--{option} / PRIVAUDIT_{name.upper()}: must be at least 0, got {getattr(args, name)}")
    if args.max_dataset_length < 1:
        parser.error(f"--max-dataset-length / PRIVAUDIT_MAX_DATASET_LENGTH: must be at least 1, "
                     f"got {args.max_dataset_length}")
    if args.job_memory_mb < 256:
        parser.error(f"--job-memory-mb / PRIVAUDIT_JOB_MEMORY_MB: must be at least 256 (Paddle alone maps "
                     f"about 700 MB), got {args.job_memory_mb}")
    if args.drain_grace_s < 0:
        parser.error(f"--drain-grace-s / PRIVAUDIT_DRAIN_GRACE_S: must be at least 0, got {args.drain_grace_s}")
    if args.job_timeout_s <= 0:
        parser.error(f"--job-timeout-s / PRIVAUDIT_JOB_TIMEOUT_S: must be positive, got {args.job_timeout_s}")
    if args.device is not None:
        try:
            args.device = parse_device(args.device)
        except ValueError as error:
            parser.error(f"--device / PRIVAUDIT_DEVICE: {error}")
    args.serving = server_options(parser, args)
    return args


def settings_from(args: argparse.Namespace, cache_dir: Path) -> WorkerSettings:
    """The worker's settings from its flags, with caches in `cache_dir`."""
    limits = JobLimits(args.job_memory_mb, args.job_timeout_s, args.job_memory_bound)
    return WorkerSettings(storage_root=str(args.storage_root), limits=limits,
                          max_dataset_length=args.max_dataset_length, dataset_memory_mb=args.dataset_memory_mb,
                          cache_dir=str(cache_dir), cache_max_mb=args.cache_max_mb, device=args.device,
                          slots=args.slots, cache_shared=args.cache_shared)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_flags(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    logs.setup("attack_worker", args.log_level)
    from privaudit.services.attack_worker import launcher

    launcher.start()  # first: its preload (Paddle, seconds) runs while this process starts serving
    from privaudit.services.attack_worker import server
    from privaudit.services.attack_worker.device import UnusableDevice

    with tempfile.TemporaryDirectory(prefix="privaudit-worker-cache-") as private:
        settings = settings_from(args, args.cache_dir or Path(private))
        # Bound and its address known at once (NOT_SERVING), so that an orchestrator can be
        # started meanwhile; SERVING once the launcher forks jobs.
        service, servicer = server.start(settings, args.listen, args.serving, wait_ready=False)
        if args.ready_file:
            write_ready_file(args.ready_file, service.address)
        try:
            servicer.become_ready()
        except UnusableDevice as error:
            service.stop(grace=0)
            sys.exit(f"--device / PRIVAUDIT_DEVICE: {error}")
        serve_until_signalled(service, None, on_stop=lambda: servicer.drain(args.drain_grace_s))


if __name__ == "__main__":
    main()
