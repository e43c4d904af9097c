"""The command line: the README's commands, and bad input failing cleanly with nothing half-written."""
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import uproot
import yaml

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.tools import synthetic
from tests.conftest import events_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_readme_example_commands(tmp_path):
    """`root2hdf5 make-example example` then `root2hdf5 run configs/example.yaml`, as a newcomer runs them."""
    env = dict(os.environ)
    subprocess.run(["root2hdf5", "make-example", str(tmp_path / "example")], check=True, env=env,
                   capture_output=True)
    (tmp_path / "configs").mkdir()  # tmp_path plays the repository root: configs/ beside example/
    shutil.copy(os.path.join(REPO, "configs", "example.yaml"), tmp_path / "configs")
    result = subprocess.run(["root2hdf5", "run", os.path.join("configs", "example.yaml"),
                             "--set", f"output.dir={tmp_path / 'out'}"], cwd=tmp_path, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "wrote" in result.stdout and "total" in result.stdout
    assert sorted(os.listdir(tmp_path / "out")) == [".root2hdf5-manifest.json", "norm.yaml", "shards", "summary.json",
                                                    "test.h5", "train.h5", "val.h5"]
    # progress ends with the exact number of entries read
    entries = 0
    for name in os.listdir(tmp_path / "example"):
        if name.startswith(("zprime_", "dijet_")) and name.endswith(".root"):
            with uproot.open(tmp_path / "example" / name) as handle:
                entries += handle[synthetic.EVENTS_TREE].num_entries
    assert f"progress: done: read {entries:,} entries of 3 files" in result.stderr
    # and nothing else: no line of Beam's (its import's warning, its workers' INFO lines)
    assert all(re.match(r"\S+ \S+ root2hdf5 INFO ", line) for line in result.stderr.splitlines()), result.stderr
    # the README quotes the table this run prints
    with open(os.path.join(REPO, "README.md")) as handle:
        readme = handle.read()
    quoted = readme.split("ends with the accounting of every jet:", 1)[1].split("```")[1].strip()
    assert quoted in result.stdout


def write_config(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def run_cli(tmp_path, cfg, capsys, *extra):
    code = main(["run", write_config(tmp_path, cfg), "-q", "--direct_num_workers=1",
                 "--direct_running_mode=in_memory", *extra])
    return code, capsys.readouterr().err


def assert_nothing_written(out_dir, created=True):
    if created:
        assert not os.path.exists(out_dir), os.listdir(out_dir)
    else:
        assert os.listdir(out_dir) == []


def test_missing_input_file(ntuples, tmp_path, capsys):
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["samples"][0]["files"] = [str(tmp_path / "nope.root")]
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "sample 'sig': input file" in err and "nope.root' does not exist" in err
    assert_nothing_written(tmp_path / "out")


def test_missing_tree(ntuples, tmp_path, capsys):
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["samples"][1]["tree"] = "Events"
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "bkg_0.root: no tree 'Events'; trees in this file: IsolatedJet_tree" in err
    assert_nothing_written(tmp_path / "out")


def test_missing_branch_and_wrong_depth(ntuples, tmp_path, capsys):
    cfg = events_config(ntuples, tmp_path / "out", **{"input.event_branches": ["rho", "NPVs"]})
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "event branch 'NPVs' does not exist; did you mean 'NPV'?" in err
    cfg = events_config(ntuples, tmp_path / "out", **{"input.layout": "jets"})
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "jet branch 'jet_pt' holds a list per entry (like vector<float>), but layout 'jets'" in err
    assert_nothing_written(tmp_path / "out")


def test_error_in_a_later_file_is_reported_by_the_worker_and_cleaned_up(ntuples, tmp_path, capsys):
    """The driver checks only the first file of a sample; a later bad file fails on a worker."""
    bad = tmp_path / "zz_bad.root"
    with uproot.recreate(bad) as handle:
        handle[synthetic.EVENTS_TREE] = {"jet_pt": synthetic.generate_events(5, 1, True)["jet_pt"]}
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["samples"][0]["files"].append(str(bad))
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "zz_bad.root: tree 'IsolatedJet_tree': jet branch 'jet_eta' does not exist" in err
    assert_nothing_written(tmp_path / "out")


def test_damaged_files(ntuples, tmp_path, capsys):
    fake = tmp_path / "fake.root"
    fake.write_text("not root\n" * 100)
    cfg = events_config(ntuples, tmp_path / "out")
    cfg["samples"][0]["files"] = [str(fake)]
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "fake.root: cannot be opened as a ROOT file" in err
    truncated = tmp_path / "truncated.root"
    data = open(ntuples["events_sig_0"], "rb").read()
    truncated.write_bytes(data[: len(data) // 2])
    cfg["samples"][0]["files"] = [ntuples["events_sig_1"], str(truncated)]
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "truncated.root" in err and "truncated or damaged" in err
    assert_nothing_written(tmp_path / "out")


def test_empty_tree(ntuples, tmp_path, capsys):
    empty = tmp_path / "empty.root"
    with uproot.recreate(empty) as handle:
        handle.mktree("FlatSubstructureJetTree", {"fjet_pt": np.float32, "fjet_eta": np.float32,
                                                  "EventInfo_mcEventNumber": np.uint64})
    cfg = {"samples": [{"name": "e", "files": [str(empty)], "tree": "FlatSubstructureJetTree"}],
           "input": {"layout": "jets", "jet_branches": ["fjet_pt", "fjet_eta"],
                     "event_number": "EventInfo_mcEventNumber"},
           "output": {"dir": str(tmp_path / "out")}}
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "empty.root: tree 'FlatSubstructureJetTree' is empty (0 entries)" in err
    assert_nothing_written(tmp_path / "out")


def test_zero_jets_after_selection(ntuples, tmp_path, capsys):
    cfg = events_config(ntuples, tmp_path / "out", **{"input.selection": "jet_pt > 350"})
    cfg["input"]["selection"] = "jet_pt > 1e12"
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "sample 'sig': no jets passed the selection 'jet_pt > 1e12'" in err
    assert_nothing_written(tmp_path / "out")


def test_existing_output_needs_overwrite(ntuples, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "train.h5").write_text("an older result")
    (out / "notes.txt").write_text("mine")
    cfg = events_config(ntuples, out)
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "already holds 2 entries" in err and "--overwrite" in err
    assert (out / "train.h5").read_text() == "an older result"
    code, err = run_cli(tmp_path, cfg, capsys, "--overwrite")
    assert code == 0, err
    assert sorted(os.listdir(out)) == [".root2hdf5-manifest.json", "norm.yaml", "notes.txt", "shards", "summary.json",
                                       "test.h5", "train.h5", "val.h5"]


def test_unwritable_output(ntuples, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    cfg = events_config(ntuples, blocker / "out")
    code, err = run_cli(tmp_path, cfg, capsys)
    assert code == 2 and "cannot be written" in err


def test_config_error_names_the_key(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("samples: [{name: a, files: [x.root], tree: t}]\ninput: {jet_branch: [a]}\n")
    assert main(["run", str(path)]) == 2
    assert "unknown config key 'input.jet_branch'; did you mean 'jet_branches'?" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["tagger.yaml", "calibration.yaml"])
def test_bundled_configs_run_on_the_example(tmp_path, name):
    """Every config in configs/ is valid and runs on the example data."""
    from root2hdf5.pipelines.config import load_config
    from root2hdf5.pipelines.run import run

    synthetic.write_example(str(tmp_path / "example"), events=400)
    (tmp_path / "configs").mkdir()  # the example data beside configs/, as in the repository
    shutil.copy(os.path.join(REPO, "configs", name), tmp_path / "configs")
    cfg = load_config(tmp_path / "configs" / name, overrides={"output.dir": str(tmp_path / "out")})
    report = run(cfg, ["--direct_num_workers=1", "--direct_running_mode=in_memory"])
    assert report["total"]["written"] > 100
    if name == "tagger.yaml":
        for split in ("train", "val", "test"):
            labels = report["splits"][split]["labels"]
            assert labels["0"] == labels["1"] > 0
