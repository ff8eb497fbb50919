"""Which device a worker's jobs run Paddle on, and how a job's memory is bounded there."""

from __future__ import annotations

import paddle

from services.attack_worker.settings import ADDRESS_SPACE, AUTO, WATCHDOG, WorkerSettings


def job_device(device: str | None) -> str:
    """The device jobs run on, as Paddle names it ("cpu", "gpu:N"), for a `--device` setting
    (None: Paddle's choice); ValueError when it names a GPU that Paddle cannot use."""
    if device is None:
        return paddle.device.get_device()
    if device == "cpu":
        return device
    if not paddle.device.is_compiled_with_cuda():
        raise ValueError(f"{device} asked for, but this Paddle is built without CUDA; install paddlepaddle-gpu "
                         "or use --device cpu")
    number = int(device.partition(":")[2] or 0)
    count = paddle.device.cuda.device_count()
    if number >= count:
        raise ValueError(f"{device} asked for, but Paddle sees {count} GPU(s) (numbered from 0; check "
                         "CUDA_VISIBLE_DEVICES and the pod's nvidia.com/gpu limit)")
    return f"gpu:{number}"


def memory_bound(settings: WorkerSettings) -> str:
    """How a job's `--job-memory-mb` is enforced: the `--job-memory-bound` setting, where `auto`
    is a watchdog on a GPU (an address-space limit breaks CUDA's start, which reserves large
    virtual ranges) and the address-space limit elsewhere."""
    if settings.limits.memory_bound != AUTO:
        return settings.limits.memory_bound
    return WATCHDOG if job_device(settings.device).startswith("gpu") else ADDRESS_SPACE
