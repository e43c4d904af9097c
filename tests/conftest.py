"""Shared fixtures: small generated ntuples (both layouts), the shared real files, and a pipeline runner."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from root2hdf5.pipelines.tools import synthetic

SHARED_DATA = Path(os.environ.get("ROOT2HDF5_SHARED_DATA",
                                  Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def shared_file(name: str) -> Path:
    """A real ROOT file from ../shared/data, or skip the test saying why."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real test file {name} not found in {SHARED_DATA} (set ROOT2HDF5_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def ntuples(tmp_path_factory) -> dict[str, str]:
    """Small synthetic ntuples: per-event RNTuples with several clusters, per-jet TTrees, a list file."""
    d = tmp_path_factory.mktemp("ntuples")
    files = {
        "events_sig_0": synthetic.write_events_file(str(d / "sig_0.root"), 300, seed=11, signal=True, clusters=3),
        "events_sig_1": synthetic.write_events_file(str(d / "sig_1.root"), 200, seed=12, signal=True, clusters=2),
        "events_bkg": synthetic.write_events_file(str(d / "bkg_0.root"), 400, seed=13, signal=False, clusters=4),
        "jets_sig": synthetic.write_jets_file(str(d / "flat_sig.root"), 250, seed=14, signal=True, clusters=3),
        "jets_bkg": synthetic.write_jets_file(str(d / "flat_bkg.root"), 250, seed=15, signal=False, clusters=2),
    }
    (d / "bkg.txt").write_text("# background\nbkg_0.root\n")
    files["bkg_list"] = str(d / "bkg.txt")
    files["dir"] = str(d)
    return files


@pytest.fixture(scope="session")
def default_run(ntuples, tmp_path_factory) -> tuple[dict, dict, str]:
    """The default per-event config, run once (in memory) for every module that only reads its output:
    (config dict, report, output directory)."""
    out = tmp_path_factory.mktemp("default") / "out"
    cfg = events_config(ntuples, out)
    return cfg, run_config(cfg, IN_MEMORY), str(out)


def with_overrides(cfg: dict, overrides: dict) -> dict:
    """Set dotted keys, e.g. {"shuffle.seed": 3}."""
    for dotted, value in overrides.items():
        node = cfg
        *parents, last = dotted.split(".")
        for key in parents:
            node = node[key]
        node[last] = value
    return cfg


def events_config(ntuples, out_dir, **overrides) -> dict:
    """A per-event config over the synthetic files, as a dict (tests tweak it)."""
    cfg = {
        "samples": [
            {"name": "sig", "files": [os.path.join(ntuples["dir"], "sig_*.root")], "tree": synthetic.EVENTS_TREE,
             "label": 1},
            {"name": "bkg", "files": [ntuples["bkg_list"]], "tree": synthetic.EVENTS_TREE, "label": 0},
        ],
        "input": {
            "layout": "events", "leading_jets": 2, "event_number": "eventNumber",
            "jet_branches": ["jet_pt", "jet_eta", "jet_phi", "jet_E"],
            "constituent_branches": ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e"],
            "event_branches": ["rho", "NPV"],
            "selection": "jet_pt > 500e3 & abs(jet_eta) < 2",
            "step_size": 70,
        },
        "constituents": {"max": 40, "sort_by": "jet_constit_pt", "min_pt": 2000.0},
        "preprocess": {"constituents": "cartesian", "jets": "raw", "unit_scale": 0.001},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "shuffle": {"seed": 7, "shards": 5},
        "output": {"dir": str(out_dir), "compression": "gzip", "chunk_jets": 32},
    }
    return with_overrides(cfg, overrides)


def jets_config(ntuples, out_dir, **overrides) -> dict:
    cfg = {
        "samples": [
            {"name": "sig", "files": [ntuples["jets_sig"]], "tree": synthetic.JETS_TREE, "label": 1},
            {"name": "bkg", "files": [ntuples["jets_bkg"]], "tree": synthetic.JETS_TREE, "label": 0},
        ],
        "input": {
            "layout": "jets", "event_number": "EventInfo_mcEventNumber",
            "jet_branches": ["fjet_pt", "fjet_eta", "fjet_phi", "fjet_m"],
            "constituent_branches": ["fjet_clus_pt", "fjet_clus_eta", "fjet_clus_phi", "fjet_clus_E"],
            "event_branches": ["EventInfo_mcEventWeight"],
            "selection": "fjet_pt > 400e3",
            "step_size": 100,
        },
        "constituents": {"max": 30},
        "preprocess": {"constituents": "raw", "jets": "cartesian"},
        "split": {"train": 0.5, "val": 0.25, "test": 0.25},
        "shuffle": {"seed": 3, "shards": 4},
        "output": {"dir": str(out_dir), "compression": "lzf"},
    }
    return with_overrides(cfg, overrides)


IN_MEMORY = ["--direct_num_workers=1", "--direct_running_mode=in_memory"]
TWO_PROCESSES = ["--direct_num_workers=2", "--direct_running_mode=multi_processing"]


def run_config(cfg_dict: dict, beam_args=None, overwrite=False) -> dict:
    from root2hdf5.pipelines.config import config_from_dict
    from root2hdf5.pipelines.run import run

    return run(config_from_dict(cfg_dict), beam_args if beam_args is not None else IN_MEMORY, overwrite=overwrite)
