"""Exact accounting under retries, faults and bad input; outputs that are complete or absent."""
from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml
from apache_beam.io.localfilesystem import LocalFileSystem

from root2hdf5.pipelines.tools import synthetic
from root2hdf5.transforms.core.errors import InputError, OutputError, Root2Hdf5Error
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.reference import read_output
from tests.test_pipeline import _digests

FINAL = [".root2hdf5-manifest.json", "norm.yaml", "shards", "summary.json", "test.h5", "train.h5", "val.h5"]


@pytest.fixture(scope="module")
def clean_run(default_run):
    cfg, report, out = default_run
    return cfg, report, _digests(out)


@pytest.fixture
def faults(tmp_path, monkeypatch):
    """Set ROOT2HDF5_FAULTS for this test (inherited by worker processes)."""
    folder = tmp_path / "faults"
    folder.mkdir()

    def arm(**spec):
        monkeypatch.setenv("ROOT2HDF5_FAULTS", json.dumps({"dir": str(folder), **spec}))
        return folder

    return arm


# ---------------------------------------------------------------------------------------------- retries


def test_every_bundle_run_twice_gives_identical_bytes(ntuples, tmp_path, clean_run):
    """The FnApiRunner replays every bundle once more and discards its first outputs, as a runner does
    with a retried bundle: pieces, shards and the finalize step all happen twice."""
    cfg = events_config(ntuples, tmp_path / "out")
    run_config(cfg, IN_MEMORY + ["--direct_runner_bundle_repeat=1"])
    assert _digests(str(tmp_path / "out")) == clean_run[2]
    assert sorted(os.listdir(tmp_path / "out")) == FINAL  # no temporary files left


@pytest.mark.runners
def test_faults_retried_by_flink_give_identical_bytes(ntuples, tmp_path, clean_run, faults):
    """A processing step fails once on about half of the entry ranges and the shard writer fails once,
    after writing its file, on about half of the shards; Flink restarts and the output is unchanged."""
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("needs java and mvn for the Flink job server")
    markers = faults(fail_once=["flatten", "write_shard"], every=2)
    conf = tmp_path / "flink-conf"
    conf.mkdir()
    (conf / "flink-conf.yaml").write_text("restart-strategy.type: fixed-delay\n"
                                          "restart-strategy.fixed-delay.attempts: 20\n"
                                          "restart-strategy.fixed-delay.delay: 100 ms\n")
    cfg = events_config(ntuples, tmp_path / "out")
    run_config(cfg, ["--runner=FlinkRunner", f"--flink_conf_dir={conf}"])
    injected = os.listdir(markers)
    assert any(m.startswith("flatten") for m in injected) and any(m.startswith("write_shard") for m in injected)
    assert _digests(str(tmp_path / "out")) == clean_run[2]
    assert sorted(os.listdir(tmp_path / "out")) == FINAL


def test_a_fault_without_retries_fails_cleanly(ntuples, tmp_path, faults):
    faults(fail_once=["write_shard"])
    cfg = events_config(ntuples, tmp_path / "out")
    with pytest.raises(Exception, match="injected fault at write_shard"):
        run_config(cfg, IN_MEMORY)
    assert not os.path.exists(tmp_path / "out")


def test_a_lost_jet_fails_the_run(ntuples, tmp_path, faults):
    """If any jet went missing between reading and writing, the accounting check refuses the result."""
    faults(lose_jet=True)
    cfg = events_config(ntuples, tmp_path / "out")
    with pytest.raises(Root2Hdf5Error, match="lost or duplicated"):
        run_config(cfg, IN_MEMORY)
    assert not os.path.exists(tmp_path / "out")


# ------------------------------------------------------------------------------------------- bad input


def _events_tree(path, columns):
    with uproot.recreate(path) as handle:
        handle.mktree("t", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in columns.items()})
        handle["t"].extend(columns)


def _config(path, out, **input_keys):
    return {"samples": [{"name": "s", "files": [str(path)], "tree": "t"}],
            "input": {"layout": "events", "jet_branches": ["jet_pt", "jet_eta"], **input_keys},
            "output": {"dir": str(out)}}


def test_branches_of_inconsistent_lengths(tmp_path):
    _events_tree(tmp_path / "bad.root", {"jet_pt": ak.Array([[1.0, 2.0], [3.0], [4.0]]),
                                         "jet_eta": ak.Array([[0.1, 0.2], [0.3, 0.4], [0.5]])})
    with pytest.raises(InputError, match=r"bad.root: tree 't': branches 'jet_pt' and 'jet_eta' have different "
                                         r"numbers of jets at entry 1 \(1 vs 2\)"):
        run_config(_config(tmp_path / "bad.root", tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def test_jets_with_zero_constituents_are_written_with_empty_masks(tmp_path):
    columns = synthetic.flat_jets(synthetic.generate_events(60, 5, True))
    counts = ak.num(columns["fjet_clus"], axis=1).to_numpy()
    empty = np.zeros(len(counts), bool)
    empty[::7] = True
    kept = ak.local_index(columns["fjet_clus"], axis=1) < np.where(empty, 0, counts)
    columns["fjet_clus"] = columns["fjet_clus"][kept]
    with uproot.recreate(tmp_path / "flat.root") as handle:
        handle.mktree("t", {k: (v.type if isinstance(v, ak.Array) else v.dtype) for k, v in columns.items()})
        handle["t"].extend(columns)
    cfg = {"samples": [{"name": "s", "files": [str(tmp_path / "flat.root")], "tree": "t"}],
           "input": {"layout": "jets", "event_number": "EventInfo_mcEventNumber", "jet_branches": ["fjet_pt"],
                     "constituent_branches": ["fjet_clus_pt", "fjet_clus_eta"]},
           "constituents": {"max": 10}, "split": {"train": 1.0, "val": 0.0, "test": 0.0},
           "output": {"dir": str(tmp_path / "out")}}
    report = run_config(cfg)
    train = read_output(str(tmp_path / "out"), splits=("train",))["train"]
    rows = {int(e): i for i, e in enumerate(train["source"][:, 2])}
    assert len(rows) == len(counts)
    for entry in np.flatnonzero(empty):
        i = rows[entry]
        assert not train["mask"][i].any() and np.all(train["constituents"][i] == 0)
    assert report["files"][0]["no_constituents"] == int(empty.sum())


@pytest.fixture
def nonfinite_file(tmp_path):
    """Events with a NaN in one jet's constituent eta and an Inf in another jet's pT."""
    cols = synthetic.generate_events(50, 3, True)
    eta = ak.flatten(cols["jet_constit_eta"], axis=None).to_numpy().copy()
    eta[100] = np.nan  # constituent 100 belongs to the first event's jets
    inner = ak.flatten(ak.num(cols["jet_constit_eta"], axis=2)).to_numpy()
    cols["jet_constit_eta"] = ak.unflatten(ak.unflatten(eta, inner), ak.num(cols["jet_pt"]))
    pt = ak.flatten(cols["jet_pt"]).to_numpy().copy()
    pt[-1] = np.inf  # the last event's last jet
    cols["jet_pt"] = ak.unflatten(pt, ak.num(cols["jet_pt"]))
    path = tmp_path / "nan.root"
    with uproot.recreate(path) as handle:
        handle["t"] = cols
    jet_of_constituent = np.repeat(np.arange(len(inner)), inner)
    return path, int(jet_of_constituent[100]), len(pt) - 1, len(pt)


def _nonfinite_config(path, out, policy):
    return {"samples": [{"name": "s", "files": [str(path)], "tree": "t"}],
            "input": {"layout": "events", "leading_jets": 10, "event_number": "eventNumber",
                      "jet_branches": ["jet_pt"], "constituent_branches": ["jet_constit_pt", "jet_constit_eta"],
                      "on_nonfinite": policy},
            "split": {"train": 1.0, "val": 0.0, "test": 0.0}, "output": {"dir": str(out)}}


def test_nonfinite_values_fail_by_default_naming_the_place(nonfinite_file, tmp_path):
    path, _, _, _ = nonfinite_file
    with pytest.raises(InputError, match=r"nan.root: branch '(jet_pt|jet_constit_eta)' has a non-finite value "
                                         r"\(NaN or Inf\) at entry \d+, jet \d; set input.on_nonfinite"):
        run_config(_nonfinite_config(path, tmp_path / "out", "fail"))
    assert not os.path.exists(tmp_path / "out")


def test_nonfinite_values_dropped_or_replaced(nonfinite_file, tmp_path):
    path, nan_jet, inf_jet, n_jets = nonfinite_file
    report = run_config(_nonfinite_config(path, tmp_path / "drop", "drop"))
    assert report["total"]["nonfinite"] == 2 and report["total"]["written"] == n_jets - 2
    out = read_output(str(tmp_path / "drop"), splits=("train",))["train"]
    assert np.all(np.isfinite(out["constituents"])) and np.all(np.isfinite(out["jets"]))

    cfg = _nonfinite_config(path, tmp_path / "replace", "replace")
    cfg["input"]["nonfinite_value"] = -999.0
    report = run_config(cfg)
    assert report["total"]["written"] == n_jets and report["files"][0]["replaced"] == 2
    out = read_output(str(tmp_path / "replace"), splits=("train",))["train"]
    assert (out["jets"] == -999.0).sum() == 1 and (out["constituents"] == -999.0).sum() == 1


def test_unreadable_files_are_skipped_and_listed(ntuples, tmp_path, clean_run):
    """With on_error: skip, damaged files are left out whole; the good files give the clean run's jets."""
    truncated = tmp_path / "truncated.root"
    data = open(ntuples["events_sig_0"], "rb").read()
    truncated.write_bytes(data[: int(len(data) * 0.6)])
    notroot = tmp_path / "notes.root"
    notroot.write_text("not ROOT\n" * 50)
    cfg = events_config(ntuples, tmp_path / "out", **{"input.on_error": "skip"})
    cfg["samples"][0]["files"] += [str(truncated), str(notroot)]  # after the good ones: same file indices
    report = run_config(cfg, IN_MEMORY)
    assert sorted(s["path"] for s in report["skipped"]) == sorted([str(truncated), str(notroot)])
    skipped = [f for f in report["files"] if "skipped" in f]
    assert all(sum(f["written"].values()) == 0 for f in skipped)
    clean = read_output(clean_run[0]["output"]["dir"])
    skipping = read_output(str(tmp_path / "out"))
    for split in clean:
        for name in ("constituents", "mask", "jets", "labels", "source"):
            np.testing.assert_array_equal(skipping[split][name], clean[split][name])


def _tree_file(path, seed: int, n_events: int = 200, basket: int = 40) -> ak.Array:
    """A TTree of `n_events` events written `basket` entries at a time (one basket per branch each); returns
    the jet pTs, the independent count of what the file holds."""
    cols = synthetic.generate_events(n_events, seed, True)
    with uproot.recreate(path) as handle:
        handle.mktree("t", {"eventNumber": np.uint64, "jet_pt": "var * float32", "jet_eta": "var * float32"})
        for start in range(0, n_events, basket):
            handle["t"].extend({name: cols[name][start:start + basket] for name in ("eventNumber", "jet_pt",
                                                                                      "jet_eta")})
    return cols["jet_pt"]


def test_a_file_failing_in_a_later_range_is_accounted_exactly(tmp_path):
    """damaged.root's third basket of jet_pt (entries 80-120) is overwritten: its other ranges are read, then
    dropped as the file is skipped. Every event and jet is counted once: events = the entries of both files,
    jets = the outcomes' sum, per file, sample and total, against counts made with uproot."""
    good_pt = _tree_file(tmp_path / "good.root", 4)
    damaged_pt = _tree_file(tmp_path / "damaged.root", 5)
    branch = uproot.open(tmp_path / "damaged.root")["t"]["jet_pt"]
    seek, size = int(branch.member("fBasketSeek")[2]), int(branch.member("fBasketBytes")[2])
    assert list(branch.member("fBasketEntry")[2:4]) == [80, 120]
    data = bytearray((tmp_path / "damaged.root").read_bytes())
    data[seek:seek + size] = b"\xff" * size
    (tmp_path / "damaged.root").write_bytes(data)
    cfg = {"samples": [{"name": "s", "files": [str(tmp_path / "good.root"), str(tmp_path / "damaged.root")],
                        "tree": "t"}],
           "input": {"layout": "events", "leading_jets": 10, "event_number": "eventNumber", "step_size": 40,
                     "jet_branches": ["jet_pt", "jet_eta"], "on_error": "skip"},
           "split": {"train": 0.6, "val": 0.2, "test": 0.2}, "shuffle": {"shards": 3},
           "output": {"dir": str(tmp_path / "out")}}
    report = run_config(cfg)
    good_jets = int(ak.sum(ak.num(good_pt)))
    read_jets = int(ak.sum(ak.num(damaged_pt[:80])) + ak.sum(ak.num(damaged_pt[120:])))
    good, damaged = report["files"]
    assert (good["events"], good["jets"], sum(good["written"].values())) == (200, good_jets, good_jets)
    assert (damaged["events"], damaged["unread"], damaged["jets"], damaged["skipped"]) == (200, 40, read_jets,
                                                                                          read_jets)
    assert sum(damaged["written"].values()) == 0 and "entries 80-120" in damaged["skip_reason"]
    for entry in (report["samples"]["s"], report["total"]):
        assert (entry["events"], entry["jets"], entry["skipped"], entry["unread"]) == (400, good_jets + read_jets,
                                                                                       read_jets, 40)
        written = entry["written"] if isinstance(entry["written"], int) else sum(entry["written"].values())
        assert entry["jets"] == entry["skipped"] + written + entry["not_leading"] + entry["cut"] + entry["limited"]
    assert report["total"]["written"] == good_jets


def test_selection_with_an_unknown_branch(ntuples, tmp_path):
    cfg = events_config(ntuples, tmp_path / "out", **{"input.selection": "jet_ptt > 3"})
    with pytest.raises(InputError, match=r"branch in input.selection 'jet_ptt' does not exist; did you mean 'jet_pt'"):
        run_config(cfg)


# --------------------------------------------------------------------------------------------- outputs


class FullFileSystem(LocalFileSystem):
    """`fullfs://` paths in a local folder that has room for CAPACITY bytes, then fails with ENOSPC."""

    ROOT, CAPACITY, used = None, 0, 0

    @classmethod
    def scheme(cls):
        return "fullfs"

    def _local(self, path):
        return os.path.join(self.ROOT, path[len("fullfs://"):]) if path.startswith("fullfs://") else path

    def join(self, base, *parts):
        return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])

    def mkdirs(self, path):
        return super().mkdirs(self._local(path))

    def exists(self, path):
        return super().exists(self._local(path))

    def delete(self, paths):
        return super().delete([self._local(p) for p in paths])

    def rename(self, sources, targets):
        return super().rename([self._local(p) for p in sources], [self._local(p) for p in targets])

    def match(self, patterns, limits=None):
        results = super().match([self._local(p) for p in patterns], limits)
        for pattern, result in zip(patterns, results):
            if pattern.startswith("fullfs://"):
                for meta in result.metadata_list:
                    meta.path = "fullfs://" + os.path.relpath(meta.path, self.ROOT)
        return results

    def open(self, path, *args, **kwargs):
        return super().open(self._local(path), *args, **kwargs)

    def create(self, path, *args, **kwargs):
        handle = super().create(self._local(path), *args, **kwargs)
        fs = FullFileSystem

        class Limited(io.RawIOBase):
            def write(self, data):
                fs.used += len(data)
                if fs.used > fs.CAPACITY:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return handle.write(data)

            def close(self):
                handle.close()
                super().close()

        return Limited()

    def report_lineage(self, path, lineage):
        pass


def test_a_full_output_location_fails_cleanly(ntuples, tmp_path):
    FullFileSystem.ROOT, FullFileSystem.CAPACITY, FullFileSystem.used = str(tmp_path / "disk"), 300_000, 0
    os.makedirs(FullFileSystem.ROOT)
    cfg = events_config(ntuples, "fullfs://out")
    with pytest.raises(OutputError, match=r"^no space left on device writing (fullfs://|/).*out/"):
        run_config(cfg, IN_MEMORY)
    assert os.listdir(FullFileSystem.ROOT) == []  # no output directory, no temporary files


def test_a_really_full_disk_fails_cleanly(ntuples, tmp_path):
    """The same on a real, small tmpfs (needs permission to mount; skipped otherwise)."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")
    try:
        cfg = events_config(ntuples, mount / "out")
        with pytest.raises(OutputError, match=r"^no space left on device writing (fullfs://|/).*out/"):
            run_config(cfg, IN_MEMORY)
        assert os.listdir(mount) == []
    finally:
        subprocess.run(["umount", str(mount)])


def _small_tmpfs(mount, size: str):
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                                           capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root and mount permission)")


def test_a_full_disk_under_worker_processes_fails_naming_the_path(ntuples, tmp_path):
    """Worker processes writing shards to a full disk: HDF5 used to crash them (exit 139, `Channel closed
    prematurely`, no path). Now the file is built in memory and its bytes written by Python: one line naming
    the path, exit 2, nothing left on the disk."""
    mount = tmp_path / "small"
    _small_tmpfs(mount, "1m")
    try:
        cfg_path = tmp_path / "config.yaml"
        cfg_path.write_text(yaml.safe_dump(events_config(ntuples, mount / "out")))
        run = subprocess.run([sys.executable, "-m", "root2hdf5", "run", str(cfg_path), "-q",
                              "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 2, run.stderr[-3000:]  # the command line's code for an error it explains
        assert re.search(rf"root2hdf5: error: no space left on device writing {mount}/out/\S+", run.stderr), \
            run.stderr[-3000:]
        assert "Channel closed" not in run.stderr and "return code 139" not in run.stderr
        assert os.listdir(mount) == []
    finally:
        subprocess.run(["umount", str(mount)])


class _FullAfter:
    """FileSystems.create for a disk that fills up after `room` bytes of a file: the partial file stays."""

    def __init__(self, room: int):
        self.room = room

    def __call__(self, path, *args, **kwargs):
        handle = open(path, "wb")
        room = self.room

        class Writer(io.RawIOBase):
            def write(self, data):
                handle.write(bytes(memoryview(data)[:room]))
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

            def close(self):
                handle.close()
                super().close()

        return Writer()


@pytest.mark.parametrize("fmt", ["hdf5", "split", "parquet"])
def test_no_space_at_the_write_call_names_the_path_and_leaves_no_partial_file(tmp_path, monkeypatch, fmt):
    from root2hdf5.transforms.output import formats, hdf5_files
    from root2hdf5.transforms.output.columns import ColumnSpec, dataset_specs

    monkeypatch.setattr(hdf5_files.FileSystems, "create", _FullAfter(1000))
    features = {"jets": ["pt", "eta"]}
    spec = ColumnSpec(dataset_specs(features, 0), features)
    n = 50
    columns = {"jets": np.ones((n, 2), np.float32), "labels": np.zeros(n, np.int32),
               "weights": np.ones(n, np.float32), "event_number": np.arange(n),
               "source": np.zeros((n, 4), np.int64)}
    target = tmp_path / f"shard.{fmt}"
    writer = formats.ParquetFormat(spec) if fmt == "parquet" else formats.Hdf5Format(spec, hdf5_files.Storage())
    with pytest.raises(OutputError, match=rf"^no space left on device writing {target}$"):
        if fmt == "split":
            writer.write_split(str(target), [("shards/a.h5", n)], {}, {})
        else:
            writer.write(str(target), columns, {"split": "train"})
    assert os.listdir(tmp_path) == []


def test_an_interrupted_run_leaves_no_file_that_looks_complete(ntuples, tmp_path, faults):
    markers = faults(pause="write_shard")
    out = tmp_path / "out"
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(yaml.safe_dump(events_config(ntuples, out)))
    run = subprocess.Popen([sys.executable, "-m", "root2hdf5", "run", str(cfg_path), "-q",
                            "--direct_num_workers=2", "--direct_running_mode=multi_processing"],
                           start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not os.path.exists(markers / "paused") and time.time() < deadline and run.poll() is None:
        time.sleep(0.2)
    assert os.path.exists(markers / "paused"), run.communicate()[1][-2000:]
    os.killpg(run.pid, signal.SIGKILL)  # no cleanup handler runs: as if the machine went down
    run.wait()
    left = sorted(os.listdir(out))  # only the temporary directory, and the lock of the killed run
    assert len(left) == 2 and left[0].startswith(".root2hdf5-tmp-") and left[1] == ".root2hdf5.lock"

    os.environ.pop("ROOT2HDF5_FAULTS")
    report = run_config(events_config(ntuples, out), IN_MEMORY)  # stale temporary files do not block a rerun
    assert report["total"]["written"] > 0 and left[0] in os.listdir(out)
    run_config(events_config(ntuples, out), IN_MEMORY, overwrite=True)  # --overwrite removes them
    assert sorted(os.listdir(out)) == FINAL


def test_overwrite_replaces_a_previous_result_completely(ntuples, tmp_path):
    out = tmp_path / "out"
    run_config(events_config(ntuples, out, **{"shuffle.shards": 12}), IN_MEMORY)
    run_config(events_config(ntuples, out, **{"shuffle.shards": 3}), IN_MEMORY, overwrite=True)
    # 3 shards spread 0.6/0.2/0.2 with at least one per split: 2 + 1 + 1; none of the previous 12 survives
    assert sorted(os.listdir(out / "shards")) == ["test-00000-of-00001.h5", "train-00000-of-00002.h5",
                                                  "train-00001-of-00002.h5", "val-00000-of-00001.h5"]
    assert sorted(os.listdir(out)) == FINAL


# -------------------------------------------------------------------------------------------- safety


@pytest.mark.parametrize("key, value, message", [
    ("samples.0.name", "sig/../../etc", "may only use letters"),
    ("preprocess.constituents", "os.system", "not a built-in constituents function"),
    ("preprocess.jets", "__import__('os')", "not a built-in jets function"),
    ("input.selection", "__import__('os').system('true') > 0", "unknown function"),
    ("output.dir", "out\n", "not a usable path"),
])
def test_config_values_that_become_paths_imports_or_code_are_validated(ntuples, tmp_path, key, value, message):
    from root2hdf5.pipelines.config import config_from_dict
    from root2hdf5.transforms.core.errors import ConfigError

    cfg = events_config(ntuples, tmp_path / "out")
    node, *path = key.split(".")
    target = cfg[node]
    for part in path[:-1]:
        target = target[int(part)] if part.isdigit() else target[part]
    target[int(path[-1]) if path[-1].isdigit() else path[-1]] = value
    with pytest.raises(ConfigError, match=message):
        config_from_dict(cfg)
