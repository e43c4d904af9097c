"""The values written: finite after the float32 cast and the preprocessing, under input.on_nonfinite; event
numbers stored as read or refused."""
from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from root2hdf5.pipelines.tools import synthetic
from root2hdf5.transforms.core.errors import InputError
from tests.conftest import run_config
from tests.reference import read_output

N_EVENTS = 40


def _nested(flat: np.ndarray, like: ak.Array) -> ak.Array:
    """`flat` (constituent values in file order) shaped like the constituent branch `like`."""
    inner = ak.flatten(ak.num(like, axis=2)).to_numpy()
    return ak.unflatten(ak.unflatten(flat, inner), ak.num(like, axis=1))


@pytest.fixture(scope="module")
def overflow_file(tmp_path_factory):
    """Events whose finite values overflow float32: rho (float64) 1e300 in event 3, jet_E (float64) 1e40 in
    the second jet of a later event, a constituent eta of 95 (pz = pT sinh 95 ~ 1e41 under cartesian) in the
    first jet of event 1. Returns the path, per anomaly the (entry, jet index) rows it touches, the jet count."""
    cols = synthetic.generate_events(N_EVENTS, 11, True)
    rho = np.asarray(cols["rho"], np.float64)
    rho[3] = 1e300
    cols["rho"] = rho
    energy = ak.values_astype(cols["jet_E"], np.float64)
    n_jets = ak.num(energy).to_numpy()
    two = int(np.flatnonzero(n_jets[4:] >= 2)[0]) + 4
    flat = ak.flatten(energy).to_numpy().copy()
    flat[n_jets[:two].sum() + 1] = 1e40
    cols["jet_E"] = ak.unflatten(flat, n_jets)
    eta = ak.flatten(cols["jet_constit_eta"], axis=None).to_numpy().copy()
    eta[int(ak.sum(ak.num(cols["jet_constit_eta"], axis=2)[:1]))] = 95.0  # first constituent, event 1
    cols["jet_constit_eta"] = _nested(eta, cols["jet_constit_eta"])
    path = tmp_path_factory.mktemp("values") / "overflow.root"
    with uproot.recreate(path) as handle:
        handle["t"] = cols
    rows = {"rho": [(3, j) for j in range(n_jets[3])], "jet_E": [(two, 1)], "jet_constit_pz": [(1, 0)]}
    return path, rows, int(n_jets.sum())


def _config(path, out, policy="fail", **extra):
    cfg = {"samples": [{"name": "s", "files": [str(path)], "tree": "t"}],
           "input": {"layout": "events", "leading_jets": 10, "event_number": "eventNumber",
                     "jet_branches": ["jet_pt", "jet_E"], "event_branches": ["rho"],
                     "constituent_branches": ["jet_constit_pt", "jet_constit_eta", "jet_constit_phi",
                                              "jet_constit_e"],
                     "on_nonfinite": policy},
           "constituents": {"max": 400, "sort_by": "jet_constit_pt"},
           "preprocess": {"constituents": "cartesian", "jets": "raw"},
           "split": {"train": 1.0, "val": 0.0, "test": 0.0}, "shuffle": {"shards": 1},
           "output": {"dir": str(out)}}
    for key, value in extra.items():
        cfg[key] = value
    return cfg


@pytest.mark.parametrize("feature", ["rho", "jet_E", "jet_constit_pz"])
def test_a_value_that_overflows_float32_fails_naming_the_place(overflow_file, tmp_path, feature):
    """Each anomaly alone (the others' branches left out) stops the run, naming file, entry, jet, feature."""
    path, rows, _ = overflow_file
    entry, jet = rows[feature][0]
    cfg = _config(path, tmp_path / "out")
    if feature != "rho":
        cfg["input"]["event_branches"] = []
    if feature != "jet_E":
        cfg["input"]["jet_branches"] = ["jet_pt"]
    if feature != "jet_constit_pz":
        cfg["preprocess"]["constituents"] = "raw"
        cfg["input"]["constituent_branches"] = ["jet_constit_pt", "jet_constit_phi"]
    with pytest.raises(InputError, match=rf"overflow.root: feature '{feature}' of '(jets|constituents)' is inf at "
                                         rf"entry {entry}, jet {jet}: .*float32.*set input.on_nonfinite"):
        run_config(cfg)
    assert not (tmp_path / "out").exists()


def test_overflowing_jets_are_dropped_and_counted(overflow_file, tmp_path):
    path, rows, n_jets = overflow_file
    bad = {row for touched in rows.values() for row in touched}
    out = tmp_path / "out"
    report = run_config(_config(path, out, "drop", stats={"apply": True}))
    assert report["total"]["nonfinite"] == len(bad)
    assert report["total"]["written"] == n_jets - len(bad)
    assert report["total"]["jets"] == n_jets
    train = read_output(str(out), splits=("train",))["train"]
    written = {(int(e), int(j)) for e, j in train["source"][:, 2:]}
    assert not written & bad and len(written) == n_jets - len(bad)
    assert np.isfinite(train["jets"]).all() and np.isfinite(train["constituents"]).all()
    norm = yaml.safe_load((out / "norm.yaml").read_text())
    values = [v for dataset in norm.values() for stats in dataset.values() for v in
              (stats.values() if isinstance(stats, dict) else [stats]) if isinstance(v, float)]
    assert values and np.isfinite(values).all()


def test_overflowing_values_are_replaced_and_counted(overflow_file, tmp_path):
    path, rows, n_jets = overflow_file
    out = tmp_path / "out"
    cfg = _config(path, out, "replace")
    cfg["input"]["nonfinite_value"] = -7.0
    report = run_config(cfg)
    # rho in each jet of event 3, jet_E once, pz once (and nothing else overflows)
    assert report["files"][0]["replaced"] == len(rows["rho"]) + 2
    assert report["total"]["written"] == n_jets
    train = read_output(str(out), splits=("train",))["train"]
    features = train["_features"]
    row = {(int(e), int(j)): i for i, (e, j) in enumerate(train["source"][:, 2:])}
    rho, energy = features["jets"].index("rho"), features["jets"].index("jet_E")
    assert all(train["jets"][row[r], rho] == -7.0 for r in rows["rho"])
    assert train["jets"][row[rows["jet_E"][0]], energy] == -7.0
    pz = features["constituents"].index("jet_constit_pz")
    assert train["constituents"][row[rows["jet_constit_pz"][0]], :, pz].min() == -7.0
    assert (train["jets"] == -7.0).sum() == len(rows["rho"]) + 1 and (train["constituents"] == -7.0).sum() == 1


def test_a_weight_factor_that_overflows_float32_fails(overflow_file, tmp_path):
    """A finite cross-section x luminosity can take a weight of 1 beyond float32's range when written."""
    path, _, _ = overflow_file
    cfg = _config(path, tmp_path / "out", "drop", weights={"luminosity": 1e30})
    cfg["samples"][0].update(cross_section=1e20, sum_of_weights=1.0)
    with pytest.raises(InputError, match=r"overflow.root: the weight of entry \d+, jet \d times the factor 1e\+50 of "
                                         r"sample 's' .* is inf in float32"):
        run_config(cfg)


# ------------------------------------------------------------------------------------------ event numbers


def _numbered_file(path, numbers: np.ndarray):
    cols = synthetic.generate_events(len(numbers), 5, False)
    cols["eventNumber"] = numbers
    with uproot.recreate(path) as handle:
        handle["t"] = cols
    return path


def _event_config(path, out, event_number="eventNumber"):
    return {"samples": [{"name": "s", "files": [str(path)], "tree": "t"}],
            "input": {"layout": "events", "leading_jets": 2, "event_number": event_number,
                      "jet_branches": ["jet_pt"], "constituent_branches": ["jet_constit_pt"]},
            "constituents": {"max": 5}, "split": {"train": 0.5, "val": 0.25, "test": 0.25},
            "shuffle": {"shards": 3}, "output": {"dir": str(out)}}


def test_uint64_event_numbers_beyond_int64_are_refused(tmp_path):
    """2**64 - 1 used to become -1 (the 'not configured' value) and 2**63 a negative number."""
    numbers = np.arange(1, 31, dtype=np.uint64)
    numbers[[7, 12]] = [2**64 - 1, 2**63]
    path = _numbered_file(tmp_path / "big.root", numbers)
    assert uproot.open(path)["t"].arrays(["eventNumber"])["eventNumber"].type.content.primitive == "uint64"
    with pytest.raises(InputError, match=r"big.root: input.event_number 'eventNumber' is 18446744073709551615 at "
                                         r"entry 7, beyond the int64 event_number dataset"):
        run_config(_event_config(path, tmp_path / "out"))
    numbers[7] = 5
    with pytest.raises(InputError, match=r"'eventNumber' is 9223372036854775808 at entry 12"):
        run_config(_event_config(_numbered_file(tmp_path / "big.root", numbers), tmp_path / "out"))


def test_uint64_event_numbers_that_fit_are_stored_and_split_as_int64_ones(tmp_path):
    """Up to 2**63 - 1 an unsigned branch gives exactly what the same numbers in a signed branch give (the
    stored values and the split of every event); without input.event_number the column is -1, and the file
    attribute `config` says that it is not set."""
    numbers = np.arange(2**63 - 40, 2**63, dtype=np.uint64)
    unsigned = read_output(_run(tmp_path, "u", numbers))
    signed = read_output(_run(tmp_path, "i", numbers.astype(np.int64)))
    for split in ("train", "val", "test"):
        for name in ("event_number", "source", "jets", "constituents"):
            np.testing.assert_array_equal(unsigned[split][name], signed[split][name])
        entries = unsigned[split]["source"][:, 2]
        np.testing.assert_array_equal(unsigned[split]["event_number"], numbers[entries].astype(np.int64))
    assert sum(len(unsigned[s]["labels"]) for s in unsigned) > 0
    cfg = _event_config(tmp_path / "u.root", tmp_path / "none", event_number=None)
    run_config(cfg)
    none = read_output(str(tmp_path / "none"))
    assert all((none[s]["event_number"] == -1).all() for s in none)
    assert json.loads(none["train"]["_attrs"]["config"])["input"]["event_number"] is None


def _run(tmp_path, name, numbers) -> str:
    out = tmp_path / f"out_{name}"
    run_config(_event_config(_numbered_file(tmp_path / f"{name}.root", numbers), out))
    return str(out)
