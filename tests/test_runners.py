"""The same job on Flink (embedded, and a multi-process session cluster) and Spark, byte for byte; inputs
served by a real XRootD server; outputs on a non-local Beam filesystem.

The Flink and Spark tests need Java and Maven (the job servers are assembled from Maven Central; .ci/run
resolves them first with `root2hdf5 jobserver build all`); the XRootD test needs Debian's xrootd-server and
the `xrootd` and `fsspec-xrootd` Python packages. Each skips with the reason when its tools are absent.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

import h5py
import numpy as np
import pytest
from apache_beam.io.localfilesystem import LocalFileSystem

from tests.conftest import IN_MEMORY, events_config, run_config
from tests.test_pipeline import _digests

pytestmark = pytest.mark.runners


def _need(*tools):
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} on the PATH")


@pytest.fixture(scope="module")
def direct_reference(default_run):
    cfg, _, out = default_run
    return cfg, _digests(out)


def _run_on(ntuples, out, args, direct_reference):
    cfg = events_config(ntuples, out)
    report = run_config(cfg, args)
    assert report["total"]["written"] > 300
    assert _digests(str(out)) == direct_reference[1]


def test_flink_embedded_matches_direct_runner(ntuples, tmp_path, direct_reference):
    _need("java", "mvn")
    _run_on(ntuples, tmp_path / "flink", ["--runner=FlinkRunner", "--parallelism=2"], direct_reference)


def test_spark_local_matches_direct_runner(ntuples, tmp_path, direct_reference):
    _need("java", "mvn")
    _run_on(ntuples, tmp_path / "spark", ["--runner=SparkRunner", "--spark_master_url=local[2]"], direct_reference)


def test_flink_session_cluster_in_separate_processes(ntuples, tmp_path, direct_reference):
    """A JobManager and a TaskManager as their own JVMs; the job server submits to them over REST."""
    _need("java", "mvn")
    from root2hdf5.pipelines.runners import flink_cluster

    port = flink_cluster.free_port()
    info = flink_cluster.start(str(tmp_path / "cluster"), rest_port=port)
    try:
        assert info["taskmanagers"] == 1 and len(info["pids"]) == 2
        _run_on(ntuples, tmp_path / "out", ["--runner=FlinkRunner", f"--flink_master=localhost:{port}",
                                            "--environment_type=LOOPBACK"], direct_reference)
        assert flink_cluster.overview(port)["jobs-finished"] == 1  # it really ran on the cluster
    finally:
        flink_cluster.stop(str(tmp_path / "cluster"))


# ------------------------------------------------------------------------------------------- XRootD


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture
def xrootd_server(ntuples):
    """Debian's xrootd serving copies of the fixture files on a free localhost port."""
    _need("xrootd")
    pytest.importorskip("XRootD", reason="the XRootD Python bindings (pip install xrootd) are needed")
    pytest.importorskip("fsspec_xrootd", reason="fsspec-xrootd is needed for root:// URLs")
    root = tempfile.mkdtemp(prefix="root2hdf5-xrd-")
    data = os.path.join(root, "data")  # fsspec-xrootd cannot glob at the server's top level; EOS paths are deep
    os.makedirs(data)
    for folder in (root, data):
        os.chmod(folder, 0o755)  # xrootd refuses to run as root and serves as `nobody`
    for name in ("sig_0.root", "sig_1.root", "bkg_0.root"):
        shutil.copyfile(os.path.join(ntuples["dir"], name), os.path.join(data, name))
        os.chmod(os.path.join(data, name), 0o644)
    logs = os.path.join(root, "logs")
    os.makedirs(logs)
    shutil.chown(logs, "nobody") if os.geteuid() == 0 else None
    port = _free_port()
    cfg = os.path.join(root, "xrootd.cfg")
    with open(cfg, "w") as handle:
        handle.write(f"all.export /\nxrd.port {port}\noss.localroot {root}\n")
    user = ["-R", "nobody"] if os.geteuid() == 0 else []
    pidfile = os.path.join(logs, "xrootd.pid")
    subprocess.run(["xrootd", *user, "-c", cfg, "-l", os.path.join(logs, "xrootd.log"), "-b", "-s", pidfile],
                   check=True, capture_output=True)
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            socket.create_connection(("localhost", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    else:
        pytest.fail(f"xrootd did not start; log: {open(os.path.join(logs, 'xrootd.log')).read()[-2000:]}")
    try:
        yield f"root://localhost:{port}//data"
    finally:
        try:
            with open(pidfile) as handle:
                os.kill(int(handle.read().strip()), 15)
        except (OSError, ValueError):
            pass
        shutil.rmtree(root, ignore_errors=True)


def _datasets(out_dir):
    result = {}
    for split in ("train", "val", "test"):
        with h5py.File(os.path.join(out_dir, f"{split}.h5")) as handle:
            result[split] = {name: handle[name][...] for name in handle}
    return result


def test_root_urls_from_a_local_xrootd_server(ntuples, tmp_path, xrootd_server, direct_reference):
    cfg = events_config(ntuples, tmp_path / "xrd")
    cfg["samples"][0]["files"] = [xrootd_server + "/sig_*.root"]  # a remote glob, expanded through fsspec
    cfg["samples"][1]["files"] = [xrootd_server + "/bkg_0.root"]
    report = run_config(cfg, IN_MEMORY)
    assert [f["path"] for f in report["files"]] == [xrootd_server + "/sig_0.root", xrootd_server + "/sig_1.root",
                                                    xrootd_server + "/bkg_0.root"]
    local = _datasets(direct_reference[0]["output"]["dir"])
    remote = _datasets(str(tmp_path / "xrd"))
    for split in local:  # the same jets; only the recorded file names differ
        for name in local[split]:
            np.testing.assert_array_equal(remote[split][name], local[split][name], err_msg=f"{split}/{name}")


# ------------------------------------------------------------------------------ non-local filesystems


class FakeRemoteFileSystem(LocalFileSystem):
    """A Beam filesystem with its own scheme (`fakeremote://`), stored in a local folder: the sink must
    go through FileSystems (write locally, copy, rename, delete) for it to work."""

    ROOT = None

    @classmethod
    def scheme(cls):
        return "fakeremote"

    def _local(self, path: str) -> str:
        if not path.startswith("fakeremote://"):  # LocalFileSystem calls back with translated paths
            return path
        return os.path.join(self.ROOT, path[len("fakeremote://"):].lstrip("/"))

    def _remote(self, path: str) -> str:
        return "fakeremote://" + os.path.relpath(path, self.ROOT)

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        return super().mkdirs(self._local(path))

    def create(self, path, *args, **kwargs):
        return super().create(self._local(path), *args, **kwargs)

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def rename(self, sources, destinations):
        return super().rename([self._local(p) for p in sources], [self._local(p) for p in destinations])

    def exists(self, path):
        return super().exists(self._local(path))

    def delete(self, paths):
        return super().delete([self._local(p) for p in paths])

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        for pattern, result in zip(patterns, results):
            if pattern.startswith("fakeremote://"):  # callers outside LocalFileSystem see remote paths
                result.pattern = self._remote(result.pattern)
                for meta in result.metadata_list:
                    meta.path = self._remote(meta.path)
        return results

    def report_lineage(self, path, lineage):
        pass


def test_outputs_on_a_non_local_beam_filesystem(ntuples, tmp_path, direct_reference):
    FakeRemoteFileSystem.ROOT = str(tmp_path / "bucket")
    os.makedirs(FakeRemoteFileSystem.ROOT)
    cfg = events_config(ntuples, "fakeremote://results/run1")
    report = run_config(cfg, IN_MEMORY)
    assert report["total"]["written"] > 300
    stored = str(tmp_path / "bucket" / "results" / "run1")
    assert _digests(stored) == direct_reference[1]  # same bytes: written locally, copied, renamed into place
    with pytest.raises(Exception, match="already holds"):  # the overwrite guard works there too
        run_config(cfg, IN_MEMORY)
