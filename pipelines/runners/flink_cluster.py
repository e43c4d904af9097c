"""A Flink session cluster on this machine: a JobManager and TaskManagers as separate JVM processes.

    root2hdf5 flink-cluster start DIR [--port 8081] [--taskmanagers 1] [--slots 2]
    root2hdf5 run CONFIG --runner FlinkRunner --flink_master localhost:8081 --environment_type LOOPBACK
    root2hdf5 flink-cluster stop DIR

The JVMs run Flink's standalone entry points from the same Maven classpath as the Flink job server
(flink-dist is not on Maven Central; `flink-runtime` is, and holds them). Without Flink's start scripts the
TaskManager's resources must be spelled out in the configuration. DIR receives the configuration, the logs
and the process ids. This is for trying the multi-process path and for tests; a production cluster is
started with Flink's own distribution and used with `--flink_master` the same way.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request

from root2hdf5.pipelines.runners.jobservers import java_command
from root2hdf5.transforms.core.errors import Root2Hdf5Error

JOBMANAGER = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def write_conf(directory: str, rest_port: int, rpc_port: int, slots: int) -> str:
    conf = {
        "jobmanager.rpc.address": "localhost", "jobmanager.rpc.port": rpc_port,
        "jobmanager.bind-host": "localhost", "rest.address": "localhost", "rest.bind-address": "localhost",
        "rest.port": rest_port, "taskmanager.bind-host": "localhost", "taskmanager.host": "localhost",
        "blob.server.port": free_port(), "taskmanager.rpc.port": "0",
        "jobmanager.memory.process.size": "1024m",
        # failed tasks (a lost worker, a transient read error) are retried, as on a production cluster
        "restart-strategy.type": "fixed-delay", "restart-strategy.fixed-delay.attempts": 3,
        "restart-strategy.fixed-delay.delay": "1 s",
        "taskmanager.numberOfTaskSlots": slots, "taskmanager.cpu.cores": slots,
        "taskmanager.memory.task.heap.size": "512m", "taskmanager.memory.task.off-heap.size": "0m",
        "taskmanager.memory.managed.size": "256m",
        "taskmanager.memory.network.min": "128m", "taskmanager.memory.network.max": "128m",
        "taskmanager.memory.framework.heap.size": "128m", "taskmanager.memory.framework.off-heap.size": "128m",
        "taskmanager.memory.jvm-metaspace.size": "256m",
        "taskmanager.memory.jvm-overhead.min": "128m", "taskmanager.memory.jvm-overhead.max": "128m",
    }
    conf_dir = os.path.join(directory, "conf")
    os.makedirs(conf_dir, exist_ok=True)
    with open(os.path.join(conf_dir, "flink-conf.yaml"), "w") as handle:
        handle.writelines(f"{key}: {value}\n" for key, value in conf.items())
    return conf_dir


def overview(rest_port: int) -> dict:
    with urllib.request.urlopen(f"http://localhost:{rest_port}/overview", timeout=2) as response:
        return json.load(response)


def start(directory: str, rest_port: int = 8081, taskmanagers: int = 1, slots: int = 2,
          timeout: float = 120) -> dict:
    """Start the cluster and wait until every TaskManager has registered; returns its description."""
    directory = os.path.abspath(directory)
    os.makedirs(directory, exist_ok=True)
    conf_dir = write_conf(directory, rest_port, free_port(), slots)
    java, argfile, _ = java_command("flink")
    pids = []
    for name, main in [("jobmanager", JOBMANAGER)] + [(f"taskmanager{i}", TASKMANAGER) for i in range(taskmanagers)]:
        log = open(os.path.join(directory, f"{name}.log"), "w")
        proc = subprocess.Popen([java, "-Xmx700m", argfile, main, "--configDir", conf_dir], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
        pids.append(proc.pid)
    with open(os.path.join(directory, "pids"), "w") as handle:
        handle.write(" ".join(map(str, pids)))
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            state = overview(rest_port)
            if state.get("taskmanagers", 0) >= taskmanagers:
                return {"rest_port": rest_port, "pids": pids, **state}
        except OSError:
            pass
        time.sleep(1)
    stop(directory)
    raise Root2Hdf5Error(f"the Flink cluster did not come up within {timeout:.0f} s; see the logs in {directory}")


def stop(directory: str) -> None:
    path = os.path.join(os.path.abspath(directory), "pids")
    if not os.path.exists(path):
        return
    with open(path) as handle:
        pids = [int(p) for p in handle.read().split()]
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    os.remove(path)
