"""Relative paths in a config file are taken from its folder (files, friends, model, variation maps); values
given with --set from the working directory; a missing input names the directory it was looked for in."""
import os

import numpy as np
import pytest
import uproot
import yaml

from root2hdf5.pipelines.cli import main
from root2hdf5.pipelines.config import load_config
from root2hdf5.pipelines.config.paths import relative_to
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.read.sources import expand_files
from tests.conftest import events_config


@pytest.fixture
def layout(tmp_path, ntuples, monkeypatch):
    """project/configs/c.yaml naming ../data/sig_0.root; the working directory elsewhere."""
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    os.link(ntuples["events_sig_0"], data / "sig_0.root")
    (tmp_path / "project" / "configs").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = events_config(ntuples, str(tmp_path / "out"))
    cfg["samples"] = [{"name": "sig", "files": ["../data/sig_0.root"], "tree": cfg["samples"][0]["tree"],
                       "label": 1}]
    path = tmp_path / "project" / "configs" / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return tmp_path, path, cfg


def test_files_are_relative_to_the_config_folder(layout):
    """Seen 6: `files: [../data/sig_0.root]` was looked for from the working directory."""
    tmp_path, path, _ = layout
    cfg = load_config(path)
    expected = str(tmp_path / "project" / "data" / "sig_0.root")
    assert cfg.samples[0].files == [expected]
    assert [f.path for f in expand_files(cfg.samples)] == [expected]


def test_a_missing_file_names_the_directory_it_was_looked_for_in(layout, capsys):
    tmp_path, path, cfg = layout
    cfg["samples"][0]["files"] = ["../data/nope.root"]
    path.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(path), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"does not exist (looked in {tmp_path / 'project' / 'data'})" in err


def test_set_values_are_relative_to_the_working_directory(layout):
    tmp_path, path, cfg = layout
    sample = dict(cfg["samples"][0], files=["sig_0.root"])
    loaded = load_config(path, overrides={"samples": [sample]})
    assert loaded.samples[0].files == ["sig_0.root"]  # as given: the working directory's
    where = tmp_path / "elsewhere"
    with pytest.raises(InputError, match=rf"input file 'sig_0.root' does not exist \(looked in {where}\)"):
        expand_files(loaded.samples)


def test_friends_model_and_maps_are_relative_too():
    data = {"samples": [{"name": "a", "files": "x/*.root", "friends": {"mem": ["f.root", "/abs/g.root"]}},
                        {"name": "b", "files": ["root://host//x.root", "~/y.root"]}],
            "model": {"path": "models/m.onnx"},
            "variations": [{"name": "v", "size": {"map": "maps/jes.root:h"}},
                           {"name": "p", "size": {"eta": {"map": "e.root:h"}, "phi": 0.01}}]}
    out = relative_to(data, "/cfg/dir/c.yaml")
    assert out["samples"][0]["files"] == ["/cfg/dir/x/*.root"]
    assert out["samples"][0]["friends"] == {"mem": ["/cfg/dir/f.root", "/abs/g.root"]}
    assert out["samples"][1]["files"] == ["root://host//x.root", "~/y.root"]
    assert out["model"]["path"] == "/cfg/dir/models/m.onnx"
    assert out["variations"][0]["size"]["map"] == "/cfg/dir/maps/jes.root:h"
    assert out["variations"][1]["size"]["eta"]["map"] == "/cfg/dir/e.root:h"


def test_a_relative_map_is_read_from_the_config_folder(layout):
    tmp_path, path, cfg = layout
    with uproot.recreate(tmp_path / "project" / "configs" / "jes.root") as handle:
        handle["h"] = (np.full(3, 0.01), np.array([0.0, 1e5, 1e6, 1e7]))
    cfg["variations"] = [{"name": "up", "kind": "energy_scale", "size": {"map": "jes.root:h"}}]
    path.write_text(yaml.safe_dump(cfg))
    loaded = load_config(path)
    assert loaded.variations[0].size.map == f"{tmp_path / 'project' / 'configs' / 'jes.root'}:h"
