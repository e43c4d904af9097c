"""record: event: one row per event, with variables, a padded collection, categories, per-sample selections,
modulo splits and friend trees joined per event. Expectations are computed directly with uproot/numpy."""
from __future__ import annotations

import glob
import hashlib
import os

import awkward as ak
import numpy as np
import pyarrow.parquet as pq
import pytest
import uproot

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.read.friends import duplicated_rows, match_rows
from tests.conftest import IN_MEMORY, TWO_PROCESSES, run_config, shared_file
from tests.reference import read_output

NANO = "nanoAOD_2015_CMS_Open_Data_ttbar.root"
HZZ = "uproot-HZZ.root"
SPLITS = ("train", "val", "test")


def read_split_files(out_dir) -> dict[str, dict]:
    return read_output(out_dir, SPLITS)


def rows_by_entry(output) -> dict[tuple[int, int, int], tuple[str, int]]:
    rows = {}
    for split, data in output.items():
        for i, (sample, file, entry, index) in enumerate(data["source"]):
            assert index == 0 and (sample, file, entry) not in rows, "each event is written once"
            rows[(int(sample), int(file), int(entry))] = (split, i)
    return rows


def file_bytes(out_dir) -> dict[str, str]:
    files = sorted(glob.glob(os.path.join(out_dir, "**", "*.*"), recursive=True))
    return {os.path.relpath(f, out_dir): hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files}


# ---------------------------------------------------------------------------------------- CMS NanoAOD

def nano_config(out, **events):
    cfg = {
        "record": "event",
        "samples": [{
            "name": "ttbar", "files": [str(shared_file(NANO))], "tree": "Events",
            "categories": [  # jet-multiplicity categories as analyses use them; >= 4 jets without a b-tag: none
                {"name": "j2", "label": 0, "selection": "nJet == 2"},
                {"name": "j3", "label": 1, "selection": "nJet == 3"},
                {"name": "j4b", "label": 2, "selection": "nJet >= 4 && count(Jet_btagCSVV2 > 0.5) >= 1"},
            ],
        }],
        "input": {"event_number": "event", "selection": "nJet >= 2", "step_size": 60},
        "events": {
            "variables": ["nJet", "MET_pt", "Jet_pt[0]", "Jet_pt[2]", "Jet_btagCSVV2[3]",
                          "HT = sum(Jet_pt)", "nbtag = count(Jet_btagCSVV2 > 0.5)"],
            "default": -999, "defaults": {"Jet_btagCSVV2[3]": -1},
            "collection": {"branches": ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagCSVV2"], "max": 6,
                           "sort_by": "Jet_pt"},
            **events,
        },
        "split": {"modulo": 2, "train": [0], "test": [1]},
        "shuffle": {"seed": 5, "shards": 4},
        "output": {"dir": str(out)},
    }
    return cfg


@pytest.fixture(scope="module")
def nano_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("nano") / "out"
    cfg = nano_config(out)
    report = run_config(cfg, IN_MEMORY)
    arrays = uproot.open(shared_file(NANO))["Events"].arrays(
        ["event", "nJet", "MET_pt", "Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagCSVV2"])
    return cfg, report, read_split_files(out), arrays


def test_nanoaod_counts_categories_and_modulo_split(nano_run):
    cfg, report, output, a = nano_run
    n_jet = ak.to_numpy(a.nJet)
    n_btag = ak.to_numpy(ak.sum(a.Jet_btagCSVV2 > 0.5, axis=1))
    selected = n_jet >= 2
    label = np.select([n_jet == 2, n_jet == 3, (n_jet >= 4) & (n_btag >= 1)], [0, 1, 2], -1)
    written = selected & (label >= 0)
    event = ak.to_numpy(a.event).astype(np.int64)

    total = report["total"]
    assert report["record"] == "event"
    assert total["events"] == 200 and total["cut"] == int((~selected).sum()) == 60
    assert total["uncategorized"] == int((selected & (label < 0)).sum()) == 33
    assert total["written"] == int(written.sum()) == 107
    assert total["events"] == total["cut"] + total["uncategorized"] + total["written"]  # exact accounting
    for split, residue in (("train", 0), ("test", 1)):
        data = output[split]
        assert np.all(data["event_number"] % 2 == residue)
        want = written & (event % 2 == residue)
        assert sorted(data["event_number"]) == sorted(event[want])
        assert report["splits"][split]["labels"] == {str(l): int((want & (label == l)).sum())
                                                     for l in range(3) if (want & (label == l)).any()}
    assert "val" not in output  # no residue goes to val: no file
    rows = rows_by_entry(output)
    for entry in np.flatnonzero(written):
        split, i = rows[(0, 0, int(entry))]
        assert output[split]["labels"][i] == label[entry]


def test_nanoaod_variables_with_defaults(nano_run):
    cfg, report, output, a = nano_run
    pt, csv = a.Jet_pt, a.Jet_btagCSVV2
    rows = rows_by_entry(output)
    assert output["train"]["_features"]["events"] == ["nJet", "MET_pt", "Jet_pt[0]", "Jet_pt[2]", "Jet_btagCSVV2[3]",
                                                      "HT", "nbtag"]
    checked_default = 0
    for (sample, file, entry), (split, i) in rows.items():
        jets = pt[entry].tolist()
        tags = csv[entry].tolist()
        expected = [len(jets), float(a.MET_pt[entry]), jets[0], jets[2] if len(jets) > 2 else -999.0,
                    tags[3] if len(tags) > 3 else -1.0, sum(jets), sum(t > 0.5 for t in tags)]
        checked_default += len(jets) <= 2
        np.testing.assert_allclose(output[split]["events"][i], expected, rtol=1e-6)
    assert checked_default > 20  # events with 2 jets: Jet_pt[2] took the default


def test_nanoaod_padded_collection(nano_run):
    cfg, report, output, a = nano_run
    train = output["train"]
    n = len(train["labels"])
    assert train["jets"].shape == (n, 6, 5) and train["mask"].shape == (n, 6) and train["jets"].dtype == np.float32
    assert train["_features"]["jets"] == ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagCSVV2"]
    assert train["_attrs"]["num_events"] == n and train["_attrs"]["collection_max"] == 6
    assert train["_attrs"]["record"] == "event"
    fields = ["Jet_pt", "Jet_eta", "Jet_phi", "Jet_mass", "Jet_btagCSVV2"]
    for (sample, file, entry), (split, i) in rows_by_entry(output).items():
        jets = np.array([a[f][entry].tolist() for f in fields]).T.reshape(-1, 5)
        jets = jets[np.argsort(-jets[:, 0], kind="stable")][:6]  # highest pT first, at most 6
        k = len(jets)
        np.testing.assert_array_equal(output[split]["mask"][i], np.arange(6) < k)
        np.testing.assert_allclose(output[split]["jets"][i][:k], jets, rtol=1e-6)
        assert np.all(output[split]["jets"][i][k:] == 0)


def test_overlapping_categories_name_the_event(tmp_path):
    cfg = nano_config(tmp_path / "out")
    cfg["samples"][0]["categories"][1]["selection"] = "nJet >= 3"  # overlaps j4b
    with pytest.raises(InputError, match=r"nanoAOD.*\.root: entry \d+ \(event number \d+\) matches categories "
                                         r"\['j3', 'j4b'\]"):
        run_config(cfg, IN_MEMORY)


# ----------------------------------------------------------------------------------------------- HZZ

def test_hzz_per_sample_selections_to_parquet(tmp_path):
    path = str(shared_file(HZZ))
    out = tmp_path / "out"
    cfg = {
        "record": "event",
        "samples": [  # one file, split into two classes by per-sample selections
            {"name": "neg", "files": [path], "tree": "events", "label": 0, "selection": "MET_px < 0"},
            {"name": "pos", "files": [path], "tree": "events", "label": 1, "selection": "MET_px >= 0 && Jet_E[1] > 40"},
        ],
        "input": {"selection": "NJet >= 1", "step_size": 500},
        "events": {"variables": ["NJet", "MET_px", "Jet_Px[0]", "Jet_Px[1]", "E2 = Jet_E[1]"],
                   "defaults": {"Jet_Px[1]": 0.0}},
        "weights": {"branch": "EventWeight"},
        "split": {"train": 0.6, "val": 0.2, "test": 0.2},
        "shuffle": {"shards": 5},
        "output": {"dir": str(out), "format": "parquet"},
    }
    report = run_config(cfg, IN_MEMORY)
    a = uproot.open(path)["events"].arrays(["NJet", "MET_px", "Jet_Px", "Jet_E", "EventWeight"])
    n_jet, met = ak.to_numpy(a.NJet), ak.to_numpy(a.MET_px)
    second_e = np.array([e[1] if len(e) > 1 else np.nan for e in a.Jet_E.tolist()])
    keep = [(n_jet >= 1) & (met < 0), (n_jet >= 1) & (met >= 0) & (second_e > 40)]  # NaN > 40 is false
    for name, mask in zip(("neg", "pos"), keep):
        s = report["samples"][name]
        assert s["events"] == 2421 and sum(s["written"].values()) == int(mask.sum())
        assert s["cut"] == 2421 - int(mask.sum())

    table = pq.read_table(str(out / "train")).to_pandas()
    assert list(table.columns[:5]) == ["NJet", "MET_px", "Jet_Px[0]", "Jet_Px[1]", "E2"]
    n_total = sum(len(pq.read_table(str(out / s))) for s in SPLITS)
    assert n_total == sum(int(m.sum()) for m in keep)
    px = a.Jet_Px.tolist()
    for row in table.itertuples(index=False):
        entry = row.entry
        assert keep[row.sample][entry] and row.label == row.sample
        jets = px[entry]
        expected = [n_jet[entry], met[entry], jets[0], jets[1] if len(jets) > 1 else 0.0,
                    second_e[entry] if len(jets) > 1 else -999.0]
        np.testing.assert_allclose([row[0], row[1], row[2], row[3], row[4]], expected, rtol=1e-6)
        assert row.weight == pytest.approx(float(a.EventWeight[entry]), rel=1e-6)


# ------------------------------------------------------------------------------------- friend trees

def write_main(path, keys, n_jets, rng):
    pt = ak.unflatten(rng.uniform(20, 300, int(n_jets.sum())).astype(np.float32), n_jets)
    data = {"run": keys[:, 0].astype(np.uint32), "luminosityBlock": keys[:, 1].astype(np.uint32),
            "event": keys[:, 2].astype(np.uint64), "Jet": ak.zip({"pt": pt})}
    with uproot.recreate(path) as f:
        f.mktree("Events", {k: v.type if isinstance(v, ak.Array) else v.dtype for k, v in data.items()},
                 field_name=lambda outer, inner: f"{outer}_{inner}", counter_name=lambda counted: f"n{counted}")
        f["Events"].extend(data)
    return pt


def mem_value(sample, keys):
    """What the 'matrix-element' friend stores: depends on the sample and the key, so a mix-up shows."""
    return 1000.0 * sample + keys[:, 2] * 0.25 + keys[:, 1] * 1e-3


@pytest.fixture(scope="module")
def friend_files(tmp_path_factory):
    """Two samples with the same (run, lumi, event) numbers; each has friend files in another order and
    split differently, with ~15% of the events missing."""
    d = tmp_path_factory.mktemp("friends")
    rng = np.random.default_rng(9)
    truth = {}
    samples = []
    for s, (sizes, n_friend_files) in enumerate([((150, 110), 2), ((130,), 1)]):
        keys_all, mains = [], []
        start = 0
        for f, size in enumerate(sizes):
            number = np.arange(start, start + size)
            keys = np.stack([np.ones(size, np.int64), 1 + number // 40, 1000 + 7 * number], axis=1)
            path = str(d / f"main_{s}_{f}.root")
            pt = write_main(path, keys, rng.integers(0, 5, size), rng)
            mains.append(path)
            keys_all.append(keys)
            truth.update({(s, f, e): (tuple(k), p) for e, (k, p) in enumerate(zip(keys.tolist(), pt.tolist()))})
            start += size
        keys = np.concatenate(keys_all)
        present = rng.permutation(np.flatnonzero(rng.random(len(keys)) > 0.15))
        friends = []
        for part, rows in enumerate(np.array_split(present, n_friend_files)):
            path = str(d / f"mem_{s}_{part}.root")
            with uproot.recreate(path) as f:  # other names and integer widths than the main tree
                f["mem"] = {"runNumber": keys[rows, 0].astype(np.int32), "lumi": keys[rows, 1].astype(np.int64),
                            "evt": keys[rows, 2].astype(np.int64), "mem_p": mem_value(s, keys[rows]),
                            "mem_n": (keys[rows, 2] % 7).astype(np.int32)}
            friends.append(path)
        samples.append({"mains": mains, "friends": friends,
                        "present": {tuple(k) for k in keys[present].tolist()}, "n": len(keys)})
    return {"dir": d, "samples": samples, "truth": truth}


def friend_config(files, out, unmatched, **extra):
    s0, s1 = files["samples"]
    return {
        "record": "event",
        "samples": [
            {"name": "sig", "files": s0["mains"], "tree": "Events", "friends": {"mem": s0["friends"]},
             "categories": [{"name": "high", "label": 1, "selection": "mem_p >= 350"},  # a friend branch
                            {"name": "low", "label": 2, "selection": "mem_p < 350"}]},
            {"name": "bkg", "files": s1["mains"], "tree": "Events", "label": 0, "friends": {"mem": s1["friends"]}},
        ],
        "input": {"event_number": "event", "step_size": 45},
        "events": {
            "variables": ["Jet_pt[0]", "mem_p", "mem_n", "nJet"],
            "friends": [{"name": "mem", "tree": "mem", "keys": ["run", "luminosityBlock", "event"],
                         "friend_keys": ["runNumber", "lumi", "evt"], "branches": ["mem_p", "mem_n"],
                         "unmatched": unmatched, "fill_value": -5.0}],
            "join_groups": 3,
        },
        "split": {"modulo": 3, "train": [0, 1], "val": [2]},
        "shuffle": {"seed": 11, "shards": 3},
        "output": {"dir": str(out)},
        **extra,
    }


def check_joined(files, report, output, unmatched):
    truth = files["truth"]
    rows = rows_by_entry(output)
    expected_rows = set()
    for (s, f, e), (key, pts) in truth.items():
        if key in files["samples"][s]["present"] or unmatched == "fill":
            expected_rows.add((s, f, e))
    assert set(rows) == expected_rows
    for (s, f, e), (split, i) in rows.items():
        key, pts = truth[(s, f, e)]
        matched = key in files["samples"][s]["present"]
        values = output[split]["events"][i]
        mem = mem_value(s, np.array([key]))[0] if matched else -5.0
        np.testing.assert_allclose(values, [pts[0] if pts else -999.0, mem, key[2] % 7 if matched else -5.0,
                                            len(pts)], rtol=1e-6)
        assert output[split]["event_number"][i] == key[2]
        assert output[split]["labels"][i] == (0 if s == 1 else 1 if mem >= 350 else 2)
    for s, name in enumerate(("sig", "bkg")):
        missing = files["samples"][s]["n"] - len(files["samples"][s]["present"])
        entry = report["samples"][name]
        assert missing > 10
        assert entry["friends"]["mem"] == {"unmatched": missing * (unmatched == "drop"),
                                           "unmatched_filled": missing * (unmatched == "fill")}
        assert entry["unmatched"] == missing * (unmatched == "drop")
        assert entry["events"] == (entry["unmatched"] + entry["uncategorized"] + entry["cut"]
                                   + sum(entry["written"].values()))


def test_friend_join_drops_unmatched_events(friend_files, tmp_path):
    cfg = friend_config(friend_files, tmp_path / "out", "drop")
    report = run_config(cfg, IN_MEMORY)
    check_joined(friend_files, report, read_split_files(tmp_path / "out"), "drop")
    assert report["total"]["unmatched"] > 0 and "unmatched_filled" not in report["total"]


def test_friend_join_fills_unmatched_events_and_is_reproducible(friend_files, tmp_path):
    cfg = friend_config(friend_files, tmp_path / "one", "fill")
    report = run_config(cfg, IN_MEMORY)
    output = read_split_files(tmp_path / "one")
    check_joined(friend_files, report, output, "fill")
    assert report["total"]["unmatched"] == 0 and report["total"]["unmatched_filled"] > 0
    for split in ("train", "val"):
        residues = {0, 1} if split == "train" else {2}
        assert set(np.unique(output[split]["event_number"] % 3)) == residues
    # the same bytes with two worker processes, other entry ranges and other join groups arrive in other orders
    cfg = friend_config(friend_files, tmp_path / "two", "fill")
    cfg["input"]["step_size"] = 70
    run_config(cfg, TWO_PROCESSES)
    assert file_bytes(tmp_path / "one") == file_bytes(tmp_path / "two")


def test_duplicated_friend_key_names_the_files(friend_files, tmp_path):
    s0 = friend_files["samples"][0]
    with uproot.open(s0["friends"][0]) as f:
        rows = f["mem"].arrays(library="np")
    duplicate = str(tmp_path / "mem_again.root")
    with uproot.recreate(duplicate) as f:  # repeats the first friend file's entry 4
        f["mem"] = {k: v[4:5] for k, v in rows.items()}
    cfg = friend_config(friend_files, tmp_path / "out", "drop")
    cfg["samples"][0]["friends"]["mem"] = s0["friends"] + [duplicate]
    with pytest.raises(InputError, match=r"friend 'mem': key \(runNumber=1, lumi=\d+, evt=\d+\) occurs twice in "
                                         r"the friend files of sample 'sig': .*mem_0_0.root entry 4 and "
                                         r".*mem_again.root entry 0"):
        run_config(cfg, IN_MEMORY)


def test_match_rows_is_a_vectorized_key_lookup():
    friend = np.array([[0, 1, 5], [0, 1, 3], [1, 1, 5], [0, 2, 5]])  # (sample, lumi, event)
    main = np.array([[0, 1, 3], [1, 1, 5], [1, 1, 3], [0, 2, 5], [0, 1, 5]])
    assert match_rows(main, friend).tolist() == [1, 2, -1, 3, 0]
    assert match_rows(main, np.zeros((0, 3), np.int64)).tolist() == [-1] * 5
    assert match_rows(np.zeros((0, 3), np.int64), friend).tolist() == []
    assert duplicated_rows(friend) is None
    assert duplicated_rows(np.concatenate([friend, friend[[2, 0]]])).tolist() == [0, 5]  # the smallest key


def test_example_config_runs_on_the_nanoaod_file(tmp_path):
    """configs/events_example.yaml is valid and gives what numpy gives for its selection and categories."""
    import yaml

    from root2hdf5.pipelines.config import config_from_dict
    from root2hdf5.pipelines.run import run

    path = shared_file(NANO)
    text = yaml.safe_load(open(os.path.join(os.path.dirname(__file__), "..", "configs", "events_example.yaml")))
    text["samples"][0]["files"] = [str(path)]
    text["output"]["dir"] = str(tmp_path / "out")
    report = run(config_from_dict(text), IN_MEMORY)
    a = uproot.open(path)["Events"].arrays(["nJet", "Jet_pt", "MET_pt", "Jet_btagCSVV2"])
    n_jet, met = ak.to_numpy(a.nJet), ak.to_numpy(a.MET_pt)
    second = ak.to_numpy(ak.fill_none(ak.pad_none(a.Jet_pt, 2)[:, 1], np.nan))
    selected = (n_jet >= 2) & (second > 20) & (met > 10)
    n_btag = ak.to_numpy(ak.sum(a.Jet_btagCSVV2 > 0.5, axis=1))
    categorized = (n_jet == 2) | (n_jet == 3) | ((n_jet >= 4) & (n_btag >= 1))
    total = report["total"]
    assert total["cut"] == int((~selected).sum())
    assert total["uncategorized"] == int((selected & ~categorized).sum())
    assert total["written"] == int((selected & categorized).sum()) > 40
