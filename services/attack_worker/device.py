"""Which device a worker's jobs run Paddle on, and how a job's memory is bounded there.

`job_device` asks Paddle, so it runs where Paddle is imported anyway: in a process forked by the
job launcher (`launcher.ready`), never in the worker's serving process.
"""

from __future__ import annotations

from privaudit.services.attack_worker.settings import ADDRESS_SPACE, AUTO, WATCHDOG, WorkerSettings


class UnusableDevice(ValueError):
    """`--device` names a GPU that Paddle cannot use."""


def job_device(device: str | None) -> str:
    """The device jobs run on, as Paddle names it ("cpu", "gpu:N"), for a `--device` setting
    (None: Paddle's choice); UnusableDevice when it names a GPU that Paddle cannot use."""
    if device == "cpu":
        return device
    import paddle  # only where it is imported already: a job launcher's process

    if device is None:
        return paddle.device.get_device()
    if not paddle.device.is_compiled_with_cuda():
        raise UnusableDevice(f"{device} asked for, but this Paddle is built without CUDA; install paddlepaddle-gpu "
                             "or use --device cpu")
    number = int(device.partition(":")[2] or 0)
    count = paddle.device.cuda.device_count()
    if number >= count:
        raise UnusableDevice(f"{device} asked for, but Paddle sees {count} GPU(s) (numbered from 0; check "
                             "CUDA_VISIBLE_DEVICES and the pod's nvidia.com/gpu limit)")
    return f"gpu:{number}"


def memory_bound(settings: WorkerSettings) -> str:
    """How a job's `--job-memory-mb` is enforced: the `--job-memory-bound` setting, where `auto`
    is a watchdog on a GPU (an address-space limit breaks CUDA's start, which reserves large
    virtual ranges) and the address-space limit elsewhere. `settings.device` is the device as
    resolved at the worker's start (`job_device`'s answer, which the serving worker holds)."""
    if settings.limits.memory_bound != AUTO:
        return settings.limits.memory_bound
    return WATCHDOG if (settings.device or "").startswith("gpu") else ADDRESS_SPACE
