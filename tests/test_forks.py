"""Local workers forked from the fork server (pipelines/runners/forks.py): the same output as workers Beam
starts itself, Beam's start when the server is gone, exit codes, nothing left running; and the options read
without Beam."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from root2hdf5.pipelines.runners import args, forks
from tests.conftest import TWO_PROCESSES, events_config, run_config
from tests.test_pipeline import _digests


def test_worker_processes_read_from_the_arguments_as_beam_reads_them():
    from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions

    cases = [[], ["--runner=DirectRunner"], ["--runner", "FlinkRunner"], ["--runner=SparkRunner"],
             ["--direct_running_mode=multi_processing"], ["--direct_running_mode", "multi_threading"],
             ["--runner", "FnApiRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=3"],
             ["--runner=PortableRunner", "--direct_running_mode=multi_processing"],
             ["--direct_running_mode=in_memory", "--flink_master=x:1"]]
    for beam_args in cases:
        options = PipelineOptions(beam_args)
        local = options.view_as(StandardOptions).runner in (None, "DirectRunner", "direct", "FnApiRunner")
        processes = local and options.view_as(DirectOptions).direct_running_mode == "multi_processing"
        assert args.runs_locally(beam_args) == local, beam_args
        assert args.worker_processes(beam_args) == processes, beam_args


@pytest.fixture
def forked(monkeypatch):
    """Every worker the fork server starts, by pid."""
    pids = []
    fork = forks.ForkServer.fork

    def recording(self, env):
        pid = fork(self, env)
        pids.append(pid)
        return pid

    monkeypatch.setattr(forks.ForkServer, "fork", recording)
    return pids


def test_forked_workers_write_the_bytes_of_one_in_memory_worker(ntuples, default_run, tmp_path, forked):
    one, _, out = default_run  # the default config, run in memory
    assert forked == []  # no server without worker processes
    two = events_config(ntuples, tmp_path / "two")
    run_config(two, TWO_PROCESSES)
    assert len(forked) == 2 and all(forked)
    assert _digests(out) == _digests(two["output"]["dir"])
    for pid in forked:  # ended and reaped by the server, which has ended too
        assert not os.path.exists(f"/proc/{pid}")
    assert forks._current is None


def test_without_the_server_beam_starts_the_workers(ntuples, default_run, tmp_path, forked):
    _, _, out = default_run
    two = events_config(ntuples, tmp_path / "two")
    with forks.warm(TWO_PROCESSES):
        forks._current.process.kill()  # a server that died: its reports end, fork() says so
        forks._current.process.wait()
        run_config(two, TWO_PROCESSES)
    assert forked in ([], [None, None])  # asked (or not, once the end was seen), then Beam's own start
    assert _digests(out) == _digests(two["output"]["dir"])


def test_a_failing_worker_reports_its_exit_code():
    server = forks.ForkServer()
    try:
        ok = server.fork({**os.environ, "ROOT2HDF5_FAULTS": ""})  # no Beam control address: the harness fails
        assert ok is not None and server.wait(ok) == 1
    finally:
        server.close()
    assert server.process.returncode == 0
    assert server.fork({}) is None  # ended


def test_the_server_ends_with_the_driver():
    """A driver killed outright: the server sees its requests pipe close and ends, leaving nothing."""
    code = ("import os, sys, time; from root2hdf5.pipelines.runners import forks; s = forks.ForkServer(); "
            "print(s.process.pid, flush=True); time.sleep(60)")
    driver = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    server = int(driver.stdout.readline())
    driver.kill()
    driver.wait()
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{server}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{server}"), "the fork server outlived its driver by 30 s"


def test_the_driver_does_not_import_ipython():
    """Beam would import IPython (0.6 s) to learn that a plain process is not an IPython session."""
    pytest.importorskip("IPython", reason="IPython is not installed: Beam would not import it either")
    code = ("import sys, apache_beam as beam; from apache_beam.options.pipeline_options import PipelineOptions; "
            "from root2hdf5.pipelines.runners.local import make_pipeline; "
            "p = make_pipeline(PipelineOptions(['--direct_running_mode=in_memory'])); "
            "_ = p | beam.Create([1, 2]) | beam.Map(lambda x: x); p.run().wait_until_finish(); "
            "print('IPython' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False", result.stderr[-2000:]
