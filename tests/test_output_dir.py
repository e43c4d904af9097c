"""The output directory: --overwrite replaces exactly what earlier runs wrote, inputs inside it are refused, one
run at a time writes to it, and a finalize killed at any step leaves a result that the next run restores."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.output_dir import prepare_output
from tests.conftest import IN_MEMORY, events_config, run_config
from tests.test_pipeline import _digests

MANIFEST = ".root2hdf5-manifest.json"


def _cli(tmp_path, cfg, capsys, *extra) -> tuple[int, str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    code = main(["run", str(path), "-q", *IN_MEMORY, *extra])
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def twelve(ntuples, tmp_path_factory):
    """A result in 12 shards, and its digests (tests copy it)."""
    out = tmp_path_factory.mktemp("twelve") / "out"
    run_config(events_config(ntuples, out, **{"shuffle.shards": 12}), IN_MEMORY)
    return out, _digests(out)


@pytest.fixture(scope="module")
def three(ntuples, tmp_path_factory):
    """The digests of a clean result in 3 shards: what replaces `twelve` in these tests."""
    out = tmp_path_factory.mktemp("three") / "out"
    run_config(events_config(ntuples, out, **{"shuffle.shards": 3}), IN_MEMORY)
    return _digests(out)


def _copy(result, target):
    subprocess.run(["cp", "-a", str(result[0]), str(target)], check=True)
    return target


def test_the_manifest_lists_exactly_what_the_run_published(twelve):
    out, digests = twelve
    with open(out / MANIFEST) as handle:
        listed = json.load(handle)["files"]
    assert sorted(listed) == sorted(set(digests) - {MANIFEST})


def test_overwrite_refuses_to_delete_files_it_did_not_write(twelve, three, ntuples, tmp_path, capsys):
    out = _copy(twelve, tmp_path / "out")
    (out / "shards" / "my-notes.txt").write_text("mine")
    (out / "train").mkdir()
    (out / "train" / "mine.parquet").write_text("mine")
    (out / "plots").mkdir()
    (out / "plots" / "mine.png").write_text("mine")
    before = _digests(out)
    code, err = _cli(tmp_path, events_config(ntuples, out, **{"shuffle.shards": 3}), capsys, "--overwrite")
    assert code == 2 and "holds 2 files that no run recorded as its own" in err
    assert "shards/my-notes.txt" in err and "train/mine.parquet" in err
    assert _digests(out) == before  # nothing deleted
    os.remove(out / "shards" / "my-notes.txt")
    os.remove(out / "train" / "mine.parquet")
    code, err = _cli(tmp_path, events_config(ntuples, out, **{"shuffle.shards": 3}), capsys, "--overwrite")
    assert code == 0, err
    assert _digests(out) == {**three, "plots/mine.png": before["plots/mine.png"]}  # the plot was not ours


def test_overwrite_of_a_result_written_before_manifests(twelve, three, ntuples, tmp_path, capsys):
    """No manifest: files named as this tool names them are replaced; others are refused."""
    out = _copy(twelve, tmp_path / "out")
    os.remove(out / MANIFEST)
    (out / "shards" / "train-00000-of-00099.h5.bak").write_text("mine")
    code, err = _cli(tmp_path, events_config(ntuples, out, **{"shuffle.shards": 3}), capsys, "--overwrite")
    assert code == 2 and "shards/train-00000-of-00099.h5.bak" in err
    os.remove(out / "shards" / "train-00000-of-00099.h5.bak")
    code, err = _cli(tmp_path, events_config(ntuples, out, **{"shuffle.shards": 3}), capsys, "--overwrite")
    assert code == 0, err
    assert _digests(out) == three


def test_an_input_inside_the_output_directory_is_refused_before_reading(twelve, ntuples, tmp_path, capsys):
    out = _copy(twelve, tmp_path / "out")
    inside = out / "shards" / "sig_0.root"
    inside.write_bytes(open(ntuples["events_sig_0"], "rb").read())
    cfg = events_config(ntuples, out)
    cfg["samples"][0]["files"] = [str(inside)]
    before = _digests(out)
    code, err = _cli(tmp_path, cfg, capsys, "--overwrite")
    assert code == 2
    assert err.strip() == (f"root2hdf5: error: output.dir {out} contains the input file {inside} (sample 'sig'); "
                           f"write the output somewhere else")
    assert _digests(out) == before


def _start(cfg, tmp_path, faults, *extra):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "ROOT2HDF5_FAULTS": json.dumps(faults)}
    return subprocess.Popen([sys.executable, "-m", "root2hdf5", "run", str(path), "-q", *IN_MEMORY, *extra],
                            start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)


def test_a_second_run_on_the_same_directory_is_refused(ntuples, tmp_path, capsys):
    out = tmp_path / "out"
    first = _start(events_config(ntuples, out), tmp_path, {"dir": str(tmp_path), "pause": "write_shard"})
    deadline = time.monotonic() + 60
    while not (tmp_path / "paused").exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert (tmp_path / "paused").exists(), first.communicate()[1][-3000:]
        tmp = [p for p in os.listdir(out) if p.startswith(".root2hdf5-tmp-")]
        second = tmp_path / "second"
        second.mkdir()
        code, err = _cli(second, events_config(ntuples, out), capsys, "--overwrite")
        assert code == 2
        assert err.strip() == (f"root2hdf5: error: another run (pid {first.pid} on {os.uname().nodename}) is "
                               f"writing to {out}; wait for it to end, or remove {out}/.root2hdf5.lock if that run "
                               f"is gone")
        assert [p for p in os.listdir(out) if p.startswith(".root2hdf5-tmp-")] == tmp  # untouched
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
    # the killed run's lock is stale now (its process is gone): the next run takes it over
    report = run_config(events_config(ntuples, out), IN_MEMORY)
    assert report["total"]["written"] > 0 and ".root2hdf5.lock" not in os.listdir(out)


def test_the_lock_is_released_after_a_failure(ntuples, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = events_config(ntuples, out, **{"input.selection": "jet_pt > 1e12"})
    code, err = _cli(tmp_path, cfg, capsys, "--overwrite")
    assert code == 2 and "no jets passed the selection" in err
    assert sorted(os.listdir(out)) == ["notes.txt"]


@pytest.mark.parametrize("step, survivor", [("staged", "old"), ("swapped", "old"), ("publish", "new"),
                                            ("published", "new")])
def test_a_finalize_killed_at_any_step_is_restored(twelve, three, ntuples, tmp_path, step, survivor):
    """--overwrite of a 12-shard result by a 3-shard one, the process ended (as by SIGKILL) at a step of the
    finalize: the files then in the directory never look complete unless they are; the next run completes the
    replacement (once past its commit point) or puts the previous result back."""
    out = _copy(twelve, tmp_path / "out")
    run = _start(events_config(ntuples, out, **{"shuffle.shards": 3}), tmp_path,
                 {"dir": str(tmp_path), "exit_at": step}, "--overwrite")
    _, err = run.communicate(timeout=120)
    assert run.returncode == 137, err[-3000:]
    left = _digests(out)
    if "summary.json" in left:  # whatever summary.json is there describes a complete set
        expected = twelve[1] if left["summary.json"] == twelve[1]["summary.json"] else three
        assert {k: v for k, v in left.items() if k in expected} == expected
    prepare_output(str(out), overwrite=True).cleanup_after_failure()  # what the next run does first
    assert _digests(out) == (twelve[1] if survivor == "old" else three)
    if step == "swapped":  # and a full rerun gives the new result
        run_config(events_config(ntuples, out, **{"shuffle.shards": 3}), IN_MEMORY, overwrite=True)
        assert _digests(out) == three


def test_overwrite_replaces_the_plots_inspect_made(twelve, three, ntuples, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    out = _copy(twelve, tmp_path / "out")
    assert main(["inspect", str(out), "--max-jets", "200"]) == 0
    plots = sorted(os.listdir(out / "plots"))
    with open(out / MANIFEST) as handle:
        assert {f"plots/{p}" for p in plots} <= set(json.load(handle)["files"])
    (out / "plots" / "mine.png").write_text("mine")
    code, err = _cli(tmp_path, events_config(ntuples, out, **{"shuffle.shards": 3}), capsys, "--overwrite")
    assert code == 0, err
    assert os.listdir(out / "plots") == ["mine.png"]  # inspect's plots of the data that is gone went with it


def test_overwrite_and_the_lock_on_a_non_local_filesystem(twelve, three, ntuples, tmp_path):
    """Through Beam's FileSystems only (an object store's view: no local calls), as on gs:// or s3://."""
    from root2hdf5.transforms.core.errors import OutputError
    from tests.test_runners import FakeRemoteFileSystem

    FakeRemoteFileSystem.ROOT = str(tmp_path / "bucket")
    os.makedirs(FakeRemoteFileSystem.ROOT)
    stored = tmp_path / "bucket" / "out"
    run_config(events_config(ntuples, "fakeremote://out", **{"shuffle.shards": 12}), IN_MEMORY)
    assert _digests(stored) == twelve[1]
    (stored / ".root2hdf5.lock").write_text(f"{os.getpid()} {os.uname().nodename} x\n")  # a live run's lock
    with pytest.raises(OutputError, match=rf"another run \(pid {os.getpid()} on .*\) is writing to fakeremote://out"):
        run_config(events_config(ntuples, "fakeremote://out", **{"shuffle.shards": 3}), IN_MEMORY, overwrite=True)
    os.remove(stored / ".root2hdf5.lock")
    run_config(events_config(ntuples, "fakeremote://out", **{"shuffle.shards": 3}), IN_MEMORY, overwrite=True)
    assert _digests(stored) == three
