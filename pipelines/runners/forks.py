"""Local worker processes forked from one warm interpreter, instead of each started anew.

With `--direct_running_mode=multi_processing` (the command's default) Beam's FnApiRunner starts every worker
as a new interpreter, through a shell, once the driver has built the graph: each then imports Beam's harness,
uproot, awkward, h5py and the project (~2 CPU-s each) before it reads a jet. Here one interpreter, the fork
server (pipelines/runners/worker.py --serve), starts with the command, imports all that while the driver
loads the config and plans on the other core, and forks each worker when the runner asks for one: the
workers start at once, share the server's pages, and run Beam's worker code with the environment Beam gives
them, as before. Without a server (another mode or runner, or the server gone) Beam starts its workers.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading

from root2hdf5.pipelines.runners.args import worker_processes

MODULE = "root2hdf5.pipelines.runners.worker"
log = logging.getLogger(__name__)

_current: ForkServer | None = None


class ForkServer:
    """The server process, and what it reported: the pids it forked and their exit codes."""

    def __init__(self):
        requests, self._requests = os.pipe()
        self._reports, reports = os.pipe()
        self.process = subprocess.Popen([sys.executable, "-m", MODULE, "--serve", str(requests), str(reports)],
                                        pass_fds=(requests, reports), stdin=subprocess.DEVNULL)
        os.close(requests)
        os.close(reports)
        self.pids: list[int] = []
        self._lock = threading.Lock()
        self._forked: queue.Queue[int | None] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._gone = False
        self._changed = threading.Condition()
        threading.Thread(target=self._read_reports, name="fork-server-reports", daemon=True).start()

    def _read_reports(self) -> None:
        with os.fdopen(self._reports, "r") as reports:
            for line in reports:
                kind, pid, *code = line.split()
                if kind == "forked":
                    self._forked.put(int(pid))
                else:
                    with self._changed:
                        self._exits[int(pid)] = int(code[0])
                        self._changed.notify_all()
        with self._changed:  # the server has ended: no report will come
            self._gone = True
            self._changed.notify_all()
        self._forked.put(None)

    def fork(self, env: dict[str, str]) -> int | None:
        """Start a worker with this environment: its pid, or None if the server has ended."""
        request = (json.dumps(env) + "\n").encode()
        with self._lock:
            if self._gone:
                return None
            try:
                while request:
                    request = request[os.write(self._requests, request):]
            except OSError:
                return None
            pid = self._forked.get()
            if pid is not None:
                self.pids.append(pid)
            return pid

    def wait(self, pid: int) -> int:
        """The worker's exit code (as a killed one's if the server ended before it could say)."""
        with self._changed:
            self._changed.wait_for(lambda: pid in self._exits or self._gone)
            return self._exits.get(pid, -signal.SIGKILL)

    def close(self) -> None:
        """End the server: at once if it forked nothing (a run that failed before its workers, while the
        server may still be importing), else once it has seen the end of the requests. A worker that has not
        ended by now (a failed run) is killed: none is left behind."""
        with contextlib.suppress(OSError):
            os.close(self._requests)
        try:
            self.process.wait(timeout=5 if self.pids else 0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _kill(self._running())

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self.process.kill()
        _kill(self._running())

    def _running(self) -> list[int]:
        """Workers not reported ended (an ended one's pid may belong to another process by now)."""
        with self._changed:
            return [pid for pid in self.pids if pid not in self._exits]


def _kill(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def warm(beam_args: list[str]):
    """For a local multi-process run: the fork server, from now until the block ends. Nested: the outer one."""
    global _current
    server = None
    # Linux only: elsewhere forking after numpy, h5py and gRPC have loaded is not safe (macOS), or impossible
    if _current is None and worker_processes(beam_args) and sys.platform.startswith("linux"):
        try:
            server = ForkServer()
        except OSError as err:  # cannot start a process: Beam will say so itself, or manage
            log.warning("workers start one by one: no fork server (%s)", err)
    if server is None:
        yield
        return
    _current = server
    try:
        yield
    finally:
        _current = None
        server.close()


def kill_current() -> None:
    """SIGKILL the fork server and every worker it forked (Ctrl-C, SIGTERM: see pipelines.supervise)."""
    if _current is not None:
        _current.kill()


def install() -> None:
    """Beam's handler of subprocess workers, with our worker command forked by the server when there is one."""
    from apache_beam.portability import python_urns
    from apache_beam.runners.portability.fn_api_runner import worker_handlers as wh

    registered, _ = wh.WorkerHandler._registered_environments[python_urns.SUBPROCESS_SDK]
    if getattr(registered, "_root2hdf5", False):
        return
    from root2hdf5.pipelines.runners.worker import COMMAND

    class ForkedWorkerHandler(wh.SubprocessSdkWorkerHandler):
        _root2hdf5 = True

        def start_worker(self):
            server = _current
            if server is None or server._gone or self._worker_command_line.decode() != COMMAND:
                return super().start_worker()
            self.worker = _forked_worker(server, self._worker_command_line, self.control_address,
                                         self.provision_info, self.worker_id)
            self.worker_thread = threading.Thread(name="run_worker", target=self.worker.run)
            self.worker_thread.start()

    wh.WorkerHandler.register_environment(python_urns.SUBPROCESS_SDK, bytes)(ForkedWorkerHandler)


def _forked_worker(server: ForkServer, *args):
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc, endpoints_pb2
    from apache_beam.runners.portability import local_job_service
    from apache_beam.runners.portability.fn_api_runner import worker_handlers
    from apache_beam.utils import thread_pool_executor
    from google.protobuf import json_format, text_format

    class ForkedSdkWorker(local_job_service.SubprocessSdkWorker):
        """Beam's SubprocessSdkWorker.run (apache-beam 2.77): the same logging server and environment, the
        process forked by the server instead of started by a shell."""

        def run(self):
            options = [("grpc.http2.max_pings_without_data", 0), ("grpc.http2.max_ping_strikes", 0)]
            logging_server = grpc.server(thread_pool_executor.shared_unbounded_instance(), options=options)
            logging_port = logging_server.add_insecure_port("[::]:0")
            logging_server.start()
            beam_fn_api_pb2_grpc.add_BeamFnLoggingServicer_to_server(local_job_service.BeamFnLoggingServicer(),
                                                                    logging_server)
            descriptor = lambda url: text_format.MessageToString(endpoints_pb2.ApiServiceDescriptor(url=url))  # noqa
            env = dict(os.environ, CONTROL_API_SERVICE_DESCRIPTOR=descriptor(self._control_address),
                       LOGGING_API_SERVICE_DESCRIPTOR=descriptor(f"localhost:{logging_port}"),
                       PIPELINE_OPTIONS=json_format.MessageToJson(self._provision_info.provision_info.pipeline_options))
            if self._worker_id:
                env["WORKER_ID"] = self._worker_id
            try:
                with worker_handlers.SUBPROCESS_LOCK:  # pipelines.supervise holds it while it kills workers
                    pid = server.fork(env)
                    if pid is None:  # the server has ended: Beam's way
                        process = subprocess.Popen(self._worker_command_line, shell=True, env=env)
                code = process.wait() if pid is None else server.wait(pid)
                if code:
                    raise RuntimeError(f"Worker subprocess exited with return code {code}")
            finally:
                logging_server.stop(0)

    return ForkedSdkWorker(*args)
