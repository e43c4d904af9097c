"""Ctrl-C and SIGTERM during a run: its worker processes killed, its output completed or undone, exit 130/143.

Beam's local runner does not stop on a KeyboardInterrupt once its worker processes are busy: the driver's
threads wait for workers that never answer, and the interpreter waits for those threads. So the driver does
not raise: the handler kills the run's workers (found by ROOT2HDF5_RUN=<run id> in their environment, which
they inherit from the driver; Linux /proc), lets the caller clean up, prints one line and ends the process.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
import uuid

from root2hdf5.pipelines.runners import forks

RUN_ENV = "ROOT2HDF5_RUN"
SIGNALS = (signal.SIGINT, signal.SIGTERM)
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


def tagged_processes(run_id: str) -> list[int]:
    """Processes of this machine (but this one) whose environment holds ROOT2HDF5_RUN=run_id."""
    needle, own = f"{RUN_ENV}={run_id}".encode(), os.getpid()
    try:
        pids = [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != own]
    except OSError:  # no /proc (macOS): nothing found, workers end when their connection to us breaks
        return []
    found = []
    for pid in pids:
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if needle in handle.read().split(b"\0"):
                    found.append(pid)
        except OSError:  # ended meanwhile, or not ours to read
            continue
    return found


def kill_tagged(run_id: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL the run's processes until none is left (a killed process's environment reads empty); returns
    those still there after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while (pids := tagged_processes(run_id)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)
    return pids


def _no_new_workers() -> None:
    """Beam starts each worker process under this lock: once we hold it, none starts after our sweep."""
    try:
        from apache_beam.runners.portability.fn_api_runner import worker_handlers
    except ImportError:
        return
    lock = getattr(worker_handlers, "SUBPROCESS_LOCK", None)
    if lock is not None:
        lock.acquire(timeout=2)


class Supervisor:
    """For the duration of a run: the run id in the environment, and SIGINT/SIGTERM handlers that stop it.

    `on_stop(signum)` runs after the workers are killed (it cleans up) and returns the line to print. Only in
    the main thread (elsewhere signals cannot be handled); a SIGINT that is ignored (a background job of a
    non-interactive shell) stays ignored."""

    def __init__(self, on_stop):
        self.on_stop = on_stop
        self.run_id = uuid.uuid4().hex
        self.previous: dict = {}
        self.stopping = False

    def __enter__(self):
        self.saved_env = os.environ.get(RUN_ENV)
        os.environ[RUN_ENV] = self.run_id
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self.previous[signum] = signal.signal(signum, self._stop)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)
        if self.saved_env is None:
            os.environ.pop(RUN_ENV, None)
        else:
            os.environ[RUN_ENV] = self.saved_env
        return False

    @contextlib.contextmanager
    def deferred(self):
        """Signals wait until the block is done (it makes state that on_stop must see whole)."""
        if not self.previous:
            yield
            return
        signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
        try:
            yield
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, SIGNALS)

    def _stop(self, signum, frame):
        if self.stopping:  # a second Ctrl-C while we clean up
            return
        self.stopping = True
        # the runner's threads report the workers we kill as failures: nobody needs to read that
        logging.disable(logging.CRITICAL)
        threading.excepthook = lambda args: None
        _no_new_workers()
        forks.kill_current()  # started before the run had its id (the command starts it first)
        left = kill_tagged(self.run_id)
        try:
            message = self.on_stop(signum)
        except BaseException as err:  # noqa: BLE001 - we are ending in any case; say what went wrong
            message = f"interrupted; the cleanup failed: {err}"
        if left:
            message += f" (worker processes {left} did not end)"
        print(f"root2hdf5: {message}", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        os._exit(EXIT_CODES[signum])
