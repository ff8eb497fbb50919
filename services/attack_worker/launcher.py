"""The job launcher: the fork server every job's process is forked from, and keeping it running.

multiprocessing's `forkserver` imports the worker's job code (and Paddle) once, and each job's
process is forked from it (`job_process`), so a job does not pay Paddle's start-up. A task's
code runs in the launcher's child, so it can kill the launcher, its parent: the job's process
dies with it (PR_SET_PDEATHSIG) and the dead launcher stays a zombie of the worker until
multiprocessing next starts a process.

Start-up: the worker starts the launcher first thing (`start`), so that its preload (Paddle,
seconds) runs while the worker's own process starts, and serves once `ready` has seen a
process forked by it run and name the jobs' device: the serving process never imports Paddle.

`LauncherKeeper` notices a dead launcher (before each job, and after every job, so also when a
job's process died with it), reports the worker NOT_SERVING while it restarts the launcher
(so orchestrators, which read the worker's health, send it no jobs), reaps the dead one,
starts a new one, and reports SERVING once the new one has forked a process that ran.

Restart policy: a task that kills the launcher again and again costs one restart per job
(a few seconds each) and fails each job; nothing backs off, because each restart worked. A
restart that fails (the new launcher does not fork a working process within
`READY_TIMEOUT_S`) is retried after 1 s, then 2 s, 4 s, ... at most `RESTART_BACKOFF_S[1]`
apart, for as long as the worker runs: it stays NOT_SERVING meanwhile, logs each failure, and
a job that reaches it fails at once as UNAVAILABLE (infrastructure, retryable) saying why.
The worker never exits over it: its health keeps answering, so it is skipped, not lost.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing import forkserver
from multiprocessing.connection import Connection

from privaudit.services.attack_worker.device import UnusableDevice, job_device
from privaudit.services.attack_worker.job_basics import JobCancelled
from privaudit.services.common.errors import Unavailable

log = logging.getLogger(__name__)

CONTEXT = multiprocessing.get_context("forkserver")
CONTEXT.set_forkserver_preload(["privaudit.services.attack_worker.launcher_preload"])
# How long a new launcher may take to fork a process that runs (it imports Paddle first).
READY_TIMEOUT_S = 120.0
# The first and the longest wait between restarts that failed.
RESTART_BACKOFF_S = (1.0, 60.0)
# How often a job waiting for a restart checks whether it was cancelled.
_POLL_S = 0.2
# What multiprocessing reports for a process whose end it could not read (its launcher died).
UNREADABLE_EXIT = 255
# Held while a process starts (see `start_process`).
_STARTING = threading.Lock()


def start() -> None:
    """Starts the launcher, which imports the job code (and Paddle) in its own process while the
    caller goes on starting; `ready` waits for it."""
    forkserver.ensure_running()


def ready(device: str | None, timeout_s: float = READY_TIMEOUT_S) -> str:
    """Starts the launcher unless it runs, and returns once a process it forked has run: the
    device jobs run on for the `--device` setting `device`, as that process found it
    (`device.job_device`: Paddle is asked where it is imported already, so the worker's serving
    process never imports it). Raises UnusableDevice for a GPU Paddle cannot use, RuntimeError
    (having killed a launcher that forked no working process) when none answers in `timeout_s`."""
    forkserver.ensure_running()
    receiver, sender = CONTEXT.Pipe(duplex=False)
    probe = CONTEXT.Process(target=_answer_device, args=(device, sender), name="launcher-probe", daemon=True)
    answer: tuple[str, str] | None = None
    try:
        start_process(probe)
        sender.close()
        if receiver.poll(timeout_s):
            with contextlib.suppress(EOFError):  # it ended without answering
                answer = receiver.recv()
        probe.join(timeout_s)
    finally:
        receiver.close()
        if probe.pid is not None and probe.exitcode is None:
            probe.kill()
            probe.join()
    if answer is not None and answer[0] == "unusable":
        raise UnusableDevice(answer[1])
    if answer is None or probe.exitcode != 0:
        pid = current_pid()
        if pid is not None and exit_of(pid) is None:
            os.kill(pid, signal.SIGKILL)  # an unreaped child of ours: no other process can hold its id
        raise RuntimeError(f"a process forked by the job launcher {how_it_ended(probe.exitcode)} without answering"
                           if probe.exitcode is not None else
                           f"the job launcher did not fork a process that answered within {timeout_s:g} s")
    return answer[1]


def _answer_device(device: str | None, sender: Connection) -> None:
    """The probe's work: being forked and run is the test; it also tells which device jobs run on."""
    try:
        sender.send(("device", job_device(device)))
    except UnusableDevice as error:
        sender.send(("unusable", str(error)))


def start_process(process: multiprocessing.process.BaseProcess) -> None:
    """Starts `process` (forked by the launcher) and leaves reading how it ended to its own
    caller. `Process.start` reads the end of every process started before that has ended; with
    jobs running at once, one job's start would read another's end, which that job's watcher then
    reads as unreadable (255) and misjudges. So each started process is taken off the list that
    reading walks (private: no public way to it), under a lock so that no start walks it between."""
    with _STARTING:
        process.start()
        multiprocessing.process._children.discard(process)


def current_pid() -> int | None:
    """The launcher's process id; None before it was first started."""
    return forkserver._forkserver._forkserver_pid  # private: no public way to it


def exit_of(pid: int, wait_s: float = 0.0) -> int | None:
    """How the launcher `pid` ended, as a `Process.exitcode` (-N: killed by signal N), seen without
    reaping it; None while it runs. Waits up to `wait_s` for it to end (a job's process can see its
    launcher's sockets close a moment before the launcher has ended)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped already: ended, how is no longer known
            return UNREADABLE_EXIT
        if info is not None:
            return info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.01)


def how_it_ended(exitcode: int | None) -> str:
    """`Process.exitcode` in words: "died with signal 9 (SIGKILL)", "exited with status 3"."""
    if exitcode is not None and exitcode < 0:
        return f"died with signal {-exitcode} ({signal.Signals(-exitcode).name})"
    return f"exited with status {exitcode}"


def restart(timeout_s: float) -> None:
    """Replaces a dead launcher (multiprocessing reaps it) and returns once the new one has forked
    a process that ran; raises RuntimeError (having killed a launcher that did not) otherwise."""
    ready(None, timeout_s)


class LauncherKeeper:
    """Restarts the launcher when it has died, reporting the worker's health through
    `report_serving(False)` while it does and `report_serving(True)` once it is back."""

    def __init__(self, report_serving: Callable[[bool], None]):
        self._report_serving = report_serving
        self._changed = threading.Condition()
        self._restarting = False
        self._problem = ""  # why the last restart failed, while restarting

    @property
    def restarting(self) -> bool:
        return self._restarting

    def notice(self) -> bool:
        """Whether the launcher is dead or being restarted; starts restarting a dead one."""
        with self._changed:
            if self._restarting:
                return True
            pid = current_pid()
            if pid is None:
                return False
            exitcode = exit_of(pid)
            if exitcode is None:
                return False
            log.warning("the job launcher (process %d) %s: reporting NOT_SERVING and restarting it", pid,
                        how_it_ended(exitcode))
            self._restarting, self._problem = True, ""
            self._report_serving(False)
        threading.Thread(target=self._restart, name="launcher-restart", daemon=True).start()
        return True

    def wait_ready(self, cancelled: threading.Event, waiting: Callable[[], None]) -> None:
        """Returns once the launcher runs (calling `waiting` first if it must wait for a restart);
        raises Unavailable while restarts fail, JobCancelled once `cancelled` is set."""
        if not self.notice():
            return
        waiting()
        with self._changed:
            while self._restarting and not self._problem:
                if cancelled.is_set():
                    raise JobCancelled("cancelled while the job launcher restarted")
                self._changed.wait(_POLL_S)
            if self._restarting:
                raise Unavailable(f"this worker's job launcher could not be restarted ({self._problem}); the "
                                  "worker reports NOT_SERVING and keeps trying")

    def _restart(self) -> None:
        delay = RESTART_BACKOFF_S[0]
        while True:
            started = time.monotonic()
            try:
                restart(READY_TIMEOUT_S)
            except Exception as error:  # whatever breaks a restart, the next one is due
                log.error("restarting the job launcher failed (next try in %g s): %s", delay, error, exc_info=error)
                with self._changed:
                    self._problem = str(error)
                    self._changed.notify_all()
                time.sleep(delay)
                delay = min(2 * delay, RESTART_BACKOFF_S[1])
                continue
            with self._changed:
                self._restarting, self._problem = False, ""
                self._report_serving(True)
                self._changed.notify_all()
            log.info("the job launcher is back (process %s, %.1f s): reporting SERVING", current_pid(),
                     time.monotonic() - started)
            return
