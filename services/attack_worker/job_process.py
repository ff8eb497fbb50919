"""Runs one job in a child process, so that user code cannot take the worker down.

Everything that imports or calls a task's `.py` files (loading, predicting,
training) happens in the child, its memory bounded by `--job-memory-mb` in one of two
ways (`device.memory_bound`): an address-space limit (`RLIMIT_AS`) that it sets on
itself, or, where jobs use a GPU (CUDA reserves virtual ranges far past any sensible
limit at its start), a watchdog in the parent that sums the resident memory of the
job's processes (the child and every process of its group) every `_POLL_S` and kills
the group once the sum passes the limit. Progress and the result travel back over a pipe as
protobuf bytes. A child that dies, hangs or breaks without a result ends the job
in a FAILED AttackResult saying what happened, so the worker keeps serving.

Before any of the task's code runs, the child leaves the worker's process group
for a session and group of its own (numbered by its pid), so that code signalling
"its own group" (`os.kill(0, ...)`, `os.killpg`) reaches the job alone; the parent
kills that group, the job's process and whatever it started, past the wall-time
limit, when the job is cancelled and when it ends. The child dies with its
launcher (the parent-death signal), and lets go of the pipe end that keeps the
launcher alive, so that a killed worker's launcher ends, and the job with it.

How a child ended decides whose fault it is (`privaudit.services.common.errors`):
- past the worker's `--job-timeout-s`: the task's (the message names the flag and value);
- MemoryError under the address-space limit: the task's, naming `--job-memory-mb` (in `job`);
- past the limit under the watchdog: the task's, naming `--job-memory-mb` and what it measured;
- SIGKILL that this worker did not send, while the kernel's out-of-memory killer ended a process
  of the worker's cgroup: the infrastructure's, retryable (the machine ran out of memory
  before the job reached its limit); without a cgroup count to tell, taken for the same;
- a death by the signal the task's code was seen sending its own process or group: the task's;
- any other death after the task's code ran: the task's; before it ran: ours (a bug);
- the job's launcher (`launcher`, the fork server the child was forked from) dying during the
  job: the task's once its code ran ("the task's code killed the worker's job launcher (its
  parent process)"), whatever the child sent; before that, or when the cgroup's out-of-memory
  kill count rose with a SIGKILL, the infrastructure's, retryable. A child that outlives its
  launcher (it cleared its parent-death signal) is killed through a pidfd taken when it
  started, so it cannot run on unwatched.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import resource
import signal
import sys
import threading
import time
from collections.abc import Callable
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

from privaudit.services.attack_worker import launcher
from privaudit.services.attack_worker.device import memory_bound
from privaudit.services.attack_worker.job_basics import JobCancelled, attack_name
from privaudit.services.attack_worker.settings import ADDRESS_SPACE, WATCHDOG, JobLimits, WorkerSettings
from privaudit.services.common import logs
from privaudit.services.common.errors import Failure, Overloaded, ServiceBug, TaskError, Unavailable
from privaudit.v1 import attack_worker_pb2, results_pb2

log = logging.getLogger(__name__)

# How often the parent checks for cancellation and the time limit while the child is quiet.
_POLL_S = 0.2

# One-byte tags of the messages the child sends.
_PROGRESS, _USER_FILE, _RESULT, _SHADOW, _BROKE = b"p", b"f", b"r", b"s", b"e"
_SHADOWS_MISSING = b"m"  # a score part's ShadowsMissing
_SIGNALS_LAUNCHER = b"k"  # the task's code is about to signal the launcher: "<file>\0<signal number>"
_SIGNALS_ITSELF = b"g"  # ... its own process or group: "<file>\0<signal number>\0<what it signals>"

JobOutcome = results_pb2.AttackResult | attack_worker_pb2.ShadowOutput | attack_worker_pb2.ShadowsMissing
ProgressSink = Callable[[results_pb2.JobProgress], None]
_PR_SET_PDEATHSIG = 1
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
# Where the kernel counts a cgroup's out-of-memory kills: cgroup v2, then v1 ("oom_kill N" lines);
# each relative to the cgroup's own folder, then to the mount's root (a container's namespace).
_OOM_COUNTERS = (("", "memory.events"), ("memory", "memory.oom_control"))


def run_in_child(request: attack_worker_pb2.RunAttackRequest, settings: WorkerSettings, emit: ProgressSink,
                 cancelled: threading.Event) -> JobOutcome:
    """Runs the job in a child process within `settings.limits` and returns its outcome; `emit`
    receives its progress. Raises JobCancelled (having killed the child) once `cancelled` is set."""
    receiver, sender = launcher.CONTEXT.Pipe(duplex=False)
    log_level = logging.getLogger().getEffectiveLevel()
    bound = memory_bound(settings)
    child = launcher.CONTEXT.Process(target=_child_main,
                                     args=(request.SerializeToString(), settings, bound == ADDRESS_SPACE,
                                           log_level, sender),
                                     name=f"job-{request.task_id}-{request.attack_index}", daemon=True)
    launcher.start_process(child)
    parent = launcher.current_pid()  # the launcher that forked it
    pidfd = _open_pidfd(child.pid)
    sender.close()
    watch = _Watch(request, settings, time.monotonic() + settings.limits.timeout_s, oom_kills(),
                   watch_memory=bound == WATCHDOG)
    try:
        outcome = watch.follow(child, receiver, emit, cancelled)
        # A child whose launcher died reads as unreadable a moment before the launcher has ended.
        grace = 1.0 if child.exitcode == launcher.UNREADABLE_EXIT else 0.0
        ended = launcher.exit_of(parent, grace) if parent is not None else None
        if ended is None:
            return outcome
        _end_orphan(pidfd)
        return watch.launcher_died(ended)
    finally:
        _kill_job(child)
        child.join()
        receiver.close()
        if pidfd is not None:
            os.close(pidfd)


def _open_pidfd(pid: int | None) -> int | None:
    """A handle on the job's process that no later process can take over; None where the
    system has none (not Linux 5.3+) or the process has ended already."""
    try:
        return os.pidfd_open(pid) if pid is not None else None
    except (AttributeError, OSError):
        return None


def _kill_job(child: Any) -> None:
    """Kills the job's process and every process it started that stayed in its group. The group
    bears the child's pid, which the kernel gives no new process while a member of the group
    lives; when none does, there is nothing to kill (and a process given that pid since would
    also have to lead a group of its own to be hit). A child that has not yet left the
    worker's group is killed by its pid."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    if child.is_alive():
        child.kill()


def _end_orphan(pidfd: int | None) -> None:
    """Kills the job's process after its launcher died (it may have cleared its parent-death
    signal), and reaps it where the worker adopted it (the worker is PID 1 of a container)."""
    if pidfd is None:
        return
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except ProcessLookupError:
        return
    with contextlib.suppress(ChildProcessError):  # init's child (or a subreaper's), which reaps it
        os.waitid(os.P_PIDFD, pidfd, os.WEXITED)


class _Watch:
    """The parent's side of one child: relays its messages and turns its end into an outcome."""

    def __init__(self, request: attack_worker_pb2.RunAttackRequest, settings: WorkerSettings, deadline: float,
                 oom_kills_before: int | None, watch_memory: bool = False):
        self._request = request
        self._settings = settings
        self._deadline = deadline
        self._oom_kills_before = oom_kills_before
        self._watch_memory = watch_memory
        self._memory_checked = 0.0  # when the watchdog last measured the job's memory
        self._stage = results_pb2.STAGE_UNSPECIFIED
        self._user_file = ""  # the user code the child ran last, relative to the storage root
        self._launcher_signalled = ""  # which user file signalled the launcher, and when, in words
        self._signalled_itself: tuple[int, str] = (0, "")  # the signal its code sent its own group, in words

    def follow(self, child: Any, receiver: Connection, emit: ProgressSink, cancelled: threading.Event) -> JobOutcome:
        while True:
            if cancelled.is_set():
                _kill_job(child)
                raise JobCancelled("the job was cancelled")
            if time.monotonic() > self._deadline:
                _kill_job(child)
                limit = self._settings.limits.timeout_s
                return self._failed(TaskError.at("", (
                    f"the job ran past this worker's {limit:g} s time limit (--job-timeout-s {limit:g}) "
                    f"{self._doing()}; give it less work (fewer epochs or records) or raise the limit")))
            if self._watch_memory and time.monotonic() - self._memory_checked >= _POLL_S:
                self._memory_checked = time.monotonic()
                used = job_resident_bytes(child.pid)
                limit = self._settings.limits.memory_mb
                if used > limit * 2**20:
                    _kill_job(child)
                    return self._failed(TaskError.at("", (
                        f"the job's processes held {used / 2**20:.0f} MB of memory, past this worker's {limit} MB "
                        f"limit (--job-memory-mb {limit}, bound by the worker's watchdog of its resident "
                        f"memory), {self._doing()}; use smaller data or models, or raise the limit")))
            ready = wait([receiver, child.sentinel], timeout=_POLL_S)
            if receiver in ready:
                try:
                    message = receiver.recv_bytes()
                except EOFError:  # the child closed its end: it has ended
                    child.join()
                    return self._failed(self._died(child.exitcode))
                outcome = self._take(message, emit)
                if outcome is not None:
                    return outcome
            elif child.sentinel in ready:
                child.join()
                return self._failed(self._died(child.exitcode))

    def _take(self, message: bytes, emit: ProgressSink) -> JobOutcome | None:
        tag, body = message[:1], message[1:]
        if tag == _PROGRESS:
            progress = results_pb2.JobProgress.FromString(body)
            self._stage = progress.stage
            emit(progress)
        elif tag == _USER_FILE:
            self._user_file = body.decode()
        elif tag == _SIGNALS_LAUNCHER:
            filename, signum = body.decode().split("\0")
            self._launcher_signalled = f"{filename or 'its code'} sent it {_signal_words(int(signum))} {self._when()}"
        elif tag == _SIGNALS_ITSELF:
            filename, signum, target = body.decode().split("\0")
            self._signalled_itself = (int(signum), f"{filename or 'its code'} sent {target} "
                                                   f"{_signal_words(int(signum))} {self._when()}")
        elif tag == _RESULT:
            return results_pb2.AttackResult.FromString(body)
        elif tag == _SHADOW:
            return attack_worker_pb2.ShadowOutput.FromString(body)
        elif tag == _SHADOWS_MISSING:
            return attack_worker_pb2.ShadowsMissing.FromString(body)
        elif tag == _BROKE:
            raise ServiceBug(f"the job's process broke without a result ({body.decode()}); the worker's log has "
                             "the details")
        return None

    def _died(self, exitcode: int | None) -> Failure:
        """Why the child ended without a result (it was not killed by this worker: a kill for
        the time limit or a cancellation ends `follow` before the child's end is seen)."""
        signum, signalled = self._signalled_itself
        return death_failure(exitcode, self._settings.limits, self._doing(), bool(self._user_file),
                             self._oom_kills_before, oom_kills() if exitcode == -signal.SIGKILL else None,
                             signalled if signum and exitcode == -signum else "")

    def launcher_died(self, exitcode: int) -> results_pb2.AttackResult:
        """The job's outcome when its launcher ended (`exitcode`) while it ran."""
        return self._failed(launcher_death_failure(
            exitcode, self._settings.limits, self._doing(), bool(self._user_file), self._oom_kills_before,
            oom_kills() if exitcode == -signal.SIGKILL else None, self._launcher_signalled))

    def _doing(self) -> str:
        return f"{self._when()}, after running {self._user_file}" if self._user_file else self._when()

    def _when(self) -> str:
        stage = results_pb2.Stage.Name(self._stage).removeprefix("STAGE_").lower()
        return f"while in the {stage} stage" if self._stage else "while starting"

    def _failed(self, failure: Failure) -> results_pb2.AttackResult:
        return results_pb2.AttackResult(
            attack_index=self._request.attack_index, attack_name=attack_name(self._request.attack),
            status=results_pb2.ATTACK_STATUS_FAILED, error=failure.attack_error())


def death_failure(exitcode: int | None, limits: JobLimits, doing: str, ran_user_code: bool,
                  oom_kills_before: int | None, oom_kills_after: int | None, signalled: str = "") -> Failure:
    """What the end of a child that this worker did not kill means, from its exit code, whether
    the task's code had run (`doing` says where it was) and the cgroup's out-of-memory kill count
    around the job (None: unknown); `signalled` says which file sent the signal that ended it to
    its own process or group, and when, when the task's code was seen doing so."""
    if signalled:
        return TaskError.at("", f"the task's code ended its own job: {signalled}; a task's code must not "
                                "signal processes")
    if exitcode == -signal.SIGKILL:
        if oom_kills_before is None or oom_kills_after is None:
            return Overloaded(f"the job's process was killed (SIGKILL), not by this worker, {doing}: most likely "
                              "by the kernel's out-of-memory killer, the machine having run out of memory before "
                              f"the job reached its {limits.memory_mb} MB limit (--job-memory-mb)")
        if oom_kills_after > oom_kills_before:
            return Overloaded(f"the kernel's out-of-memory killer ended the job's process {doing}: the worker's "
                              f"machine or container ran out of memory before the job reached its "
                              f"{limits.memory_mb} MB limit (--job-memory-mb); give the worker more memory or "
                              "lower the limit so that a job fails alone")
    how = launcher.how_it_ended(exitcode)
    if exitcode == -signal.SIGKILL:
        how += " from outside the worker (not the out-of-memory killer)"
    if not ran_user_code:
        return ServiceBug(f"the job's process {how} without a result, {doing}; the worker's log may have the details")
    hint = (f"; it may have run out of its {limits.memory_mb} MB memory limit (--job-memory-mb)"
            if exitcode == -signal.SIGABRT else "")
    return TaskError.at("", f"the job's process {how} without a result, {doing}{hint}")


def launcher_death_failure(exitcode: int, limits: JobLimits, doing: str, ran_user_code: bool,
                           oom_kills_before: int | None, oom_kills_after: int | None,
                           signalled: str = "") -> Failure:
    """What the end of the job's launcher (`exitcode`) during the job means: the task's when its
    code signalled the launcher (`signalled` says which file, how and when); else the kernel's
    doing when the cgroup's out-of-memory kill count rose (None: unknown, then not taken for it:
    the idle launcher is not what the killer picks); else the task's once its code ran (a kill
    the job's process sent some other way); else the infrastructure's."""
    how = launcher.how_it_ended(exitcode)
    if signalled:
        return TaskError.at("", f"the task's code killed the worker's job launcher (its parent process): "
                                f"{signalled}, and the launcher {how}, ending the job; a task's code must not "
                                "signal other processes (the worker restarts its launcher)")
    if oom_kills_before is not None and oom_kills_after is not None and oom_kills_after > oom_kills_before:
        return Overloaded(f"the kernel's out-of-memory killer ended the worker's job launcher {doing} (it {how}), "
                          "and the job with it: the worker's machine or container ran out of memory before the "
                          f"job reached its {limits.memory_mb} MB limit (--job-memory-mb); the worker restarts "
                          "its launcher")
    if not ran_user_code:
        return Unavailable(f"the worker's job launcher {how} {doing}, before the task's code ran, and the job "
                           "with it; the worker restarts its launcher")
    return TaskError.at("", f"the task's code killed the worker's job launcher (its parent process) {doing}: "
                            f"the launcher {how}, ending the job; a task's code must not signal other processes "
                            "(the worker restarts its launcher)")


def job_resident_bytes(pid: int) -> int:
    """The resident memory of the job's process `pid` and every other process in its process
    group (numbered by its pid once it has left the worker's): what the watchdog bounds. Pages
    that processes share count once per process, so the sum errs high, never low."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if entry.name != str(pid):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rindex(")") + 2:].split()[2]) != pid:  # field 5, the process group
                    continue
            total += int((entry / "statm").read_text().split()[1]) * _PAGE_BYTES
        except (OSError, ValueError, IndexError):  # ended meanwhile
            continue
    return total


def oom_kills() -> int | None:
    """How many processes of this process's cgroup the kernel's out-of-memory killer has ended,
    or None where no cgroup counts them (not Linux, no memory controller)."""
    try:
        memberships = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    paths = dict(line.split(":", 2)[1:] for line in memberships if line.count(":") >= 2)
    for controller, counter in _OOM_COUNTERS:
        mount = Path("/sys/fs/cgroup") / controller
        own = paths.get(controller, "/").lstrip("/")
        for folder in (mount / own, mount):
            try:
                lines = (folder / counter).read_text().splitlines()
            except OSError:
                continue
            for line in lines:
                key, _, value = line.partition(" ")
                if key == "oom_kill":
                    return int(value)
    return None


# ---------------------------------------------------------------- the child


def _child_main(request_bytes: bytes, settings: WorkerSettings, limit_address_space: bool, log_level: int,
                sender: Connection) -> None:
    """The child: leaves the worker's process group, limits its address space (unless the parent
    watches its memory instead), runs the job, sends its progress and outcome."""
    os.setsid()  # a session and process group of its own, before any of the task's code runs
    _let_the_launcher_go()
    logs.setup("attack_worker job", logging.getLevelName(log_level))
    if sys.platform.startswith("linux"):  # die with the fork server, which dies with the worker
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if limit_address_space:
        limit = settings.limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    root = Path(os.path.realpath(settings.storage_root))
    sys.addaudithook(_user_code_hook(root, sender))
    request = attack_worker_pb2.RunAttackRequest.FromString(request_bytes)
    from privaudit.services.attack_worker import (
        job,  # preloaded by the launcher; the worker's own process never imports it
    )

    try:
        outcome = job.run_job(request, settings,
                              lambda progress: sender.send_bytes(_PROGRESS + progress.SerializeToString()))
    except BaseException as exc:  # every way out must reach the parent
        logging.getLogger(__name__).exception("job broke without a result")
        sender.send_bytes(_BROKE + f"{type(exc).__name__}: {exc}".encode())
        return
    if isinstance(outcome, attack_worker_pb2.ShadowOutput):
        sender.send_bytes(_SHADOW + outcome.SerializeToString())
    elif isinstance(outcome, attack_worker_pb2.ShadowsMissing):
        sender.send_bytes(_SHADOWS_MISSING + outcome.SerializeToString())
    else:
        sender.send_bytes(_RESULT + outcome.SerializeToString())
    sender.close()


def _let_the_launcher_go() -> None:
    """Closes this process's copy of the pipe end whose closing tells the launcher that its
    worker is gone (multiprocessing hands it to every process the launcher forks, for their own
    children). Held here, a killed worker's launcher would live on as long as the job, and the
    job, which dies with its launcher, would run on unwatched."""
    alive = forkserver._forkserver._forkserver_alive_fd  # private: no public way to it
    if alive is not None:
        os.close(alive)
        forkserver._forkserver._forkserver_alive_fd = None


def _signal_words(signum: int) -> str:
    try:
        return f"signal {signum} ({signal.Signals(signum).name})"
    except ValueError:
        return f"signal {signum}"


def _user_code_hook(root: Path, sender: Connection) -> Any:
    """An audit hook telling the parent each storage-root file the child starts running, so that
    a crash can name the user code it followed, and which one signals the launcher (`os.kill` of
    the parent: the launcher dies a moment later, while the job's process may run further files)
    or the job's own process or group (`os.kill` of 0, its pid or minus its group, `os.killpg`)."""
    told: set[str] = set()

    def hook(event: str, args: tuple) -> None:
        if event == "os.kill" and len(args) == 2 and args[0] == os.getppid():
            sender.send_bytes(_SIGNALS_LAUNCHER + f"{_calling_user_file(root)}\0{int(args[1])}".encode())
            return
        if event in ("os.kill", "os.killpg") and len(args) == 2:
            target = _own_target(event, args[0])
            if target:
                sender.send_bytes(_SIGNALS_ITSELF + f"{_calling_user_file(root)}\0{int(args[1])}\0{target}".encode())
            return
        if event != "exec" or not args or not hasattr(args[0], "co_filename"):
            return
        filename = args[0].co_filename
        if filename not in told and filename.startswith(str(root) + os.sep):
            told.add(filename)
            sender.send_bytes(_USER_FILE + os.path.relpath(filename, root).encode())

    return hook


def _own_target(event: str, target: int) -> str:
    """What of the job's own an `os.kill` / `os.killpg` (`event`) of `target` signals, in words
    ("its own process group", "its own process"); "" for any other process or group."""
    group = os.getpgrp()
    if (event == "os.killpg" and target in (0, group)) or (event == "os.kill" and target in (0, -group)):
        return "its own process group"
    return "its own process" if event == "os.kill" and target == os.getpid() else ""


def _calling_user_file(root: Path) -> str:
    """The innermost storage-root file on the calling stack, relative to the root ("" if none)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(str(root) + os.sep):
            return os.path.relpath(frame.f_code.co_filename, root)
        frame = frame.f_back
    return ""
