"""What the job launcher imports before it forks any job: the job code (and with it Paddle,
scikit-learn and the attacks), then `gc.freeze()`. Freezing moves every object imported so far
out of the collector's reach, so a job's collections never write to those objects' headers:
the launcher's pages stay shared with its jobs instead of being copied into each one."""

import gc

import privaudit.services.attack_worker.job
import privaudit.services.attack_worker.job_process  # noqa: F401

gc.freeze()
