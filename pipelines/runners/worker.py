"""A worker process of local multi-process runs: Beam's sdk_worker_main, which prints a failing bundle's
traceback (~90 lines) to stderr besides logging it; here it is printed only when the worker logs errors
(`root2hdf5 run -v`). Without -v the driver prints the cause on one line.

With `--serve REQUESTS REPORTS` this is the fork server of pipelines.runners.forks instead: it imports
everything a worker needs once, then forks one worker per request (a line of JSON: the worker's environment)
and reports `forked PID` at once and `exited PID CODE` when the worker ends. It ends when the driver closes
the requests pipe.
"""
from __future__ import annotations

import atexit
import json
import logging
import os
import select
import signal
import sys
import traceback

# Importing Beam logs a warning (Google Cloud clients) through the root logger, which gets a stderr handler
# for it, and then every INFO line of the harness ("Logging handler created.") reached the user's terminal.
# The harness sends its logs to the driver, which prints what the user asked for.
logging.getLogger().addHandler(logging.NullHandler())

from apache_beam.runners.worker import sdk_worker, sdk_worker_main  # noqa: E402

COMMAND = f"{sys.executable} -m root2hdf5.pipelines.runners.worker"


def _print(*args, **kwargs):
    quiet = not logging.getLogger(sdk_worker.__name__).isEnabledFor(logging.ERROR)
    if quiet and kwargs.get("file") is sys.stderr and args and str(args[0]).startswith("Traceback"):
        return
    print(*args, **kwargs)


def _preload() -> None:
    """What a worker imports besides Beam's harness: the libraries and every transform of the graph."""
    import awkward  # noqa: F401
    import h5py  # noqa: F401
    import uproot  # noqa: F401
    from apache_beam.runners.worker import bundle_processor, operations  # noqa: F401

    import root2hdf5.pipelines.graph  # noqa: F401


def _work(env: dict, close: tuple[int, ...], sigint) -> None:
    """In the forked child: become the worker Beam asked for, and never return into the server's loop."""
    code = 1
    try:
        for fd in close:
            os.close(fd)
        signal.signal(signal.SIGINT, sigint)
        os.environ.clear()
        os.environ.update(env)
        from root2hdf5.transforms.core import stage_times

        stage_times.forked()
        sdk_worker_main.main(sys.argv)
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 1
    except BaseException:  # noqa: BLE001 - as an interpreter would: the traceback, then exit 1
        traceback.print_exc()
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _report(fd: int, line: str) -> None:
    os.write(fd, (line + "\n").encode())


def _pidfds() -> bool:
    """Whether a child's end can be waited for with select (Linux 5.3+); otherwise it is polled."""
    try:
        os.close(os.pidfd_open(os.getpid()))
        return True
    except (AttributeError, OSError):
        return False


def serve(requests: int, reports: int) -> None:
    sigint = signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C: it kills us
    _preload()
    pidfds = _pidfds()
    children: dict[int, int] = {}  # pidfd (pid when polled) -> pid
    pending = b""
    while True:
        ready, _, _ = select.select([requests, *children] if pidfds else [requests], [], [],
                                   None if pidfds else 0.05)
        if requests in ready:
            data = os.read(requests, 1 << 20)
            if not data:  # the driver is done (or gone): its workers have ended or end with its connections
                return
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                pid = os.fork()
                if pid == 0:
                    _work(json.loads(line), (requests, reports, *children) if pidfds else (requests, reports),
                          sigint)
                children[os.pidfd_open(pid) if pidfds else pid] = pid
                _report(reports, f"forked {pid}")
        for key, pid in list(children.items()):
            if pidfds and key not in ready:
                continue
            done, status = os.waitpid(pid, 0 if pidfds else os.WNOHANG)
            if done:
                del children[key]
                if pidfds:
                    os.close(key)
                _report(reports, f"exited {pid} {os.waitstatus_to_exitcode(status)}")


if __name__ == "__main__":
    sdk_worker.print = _print  # the module's own name shadows the builtin it calls
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        sdk_worker_main.main(sys.argv)
