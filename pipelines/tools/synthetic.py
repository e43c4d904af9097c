"""Synthetic jet ntuples with physics-like distributions, written with uproot, in both layouts.

Used by the bundled example, the tests and the benchmarks, so that everything runs on a fresh clone.
Branch names, types and units (MeV) follow the Pythia samples in shared/data:

* per-event (`IsolatedJet_tree`): event scalars, `jet_*` as vector<float>, `jet_constit_*` as
  vector<vector<float>>. uproot cannot write vector<vector<float>> into a TTree, so this layout is written
  as an RNTuple, whose fields have exactly those C++ types; the converter reads TTrees and RNTuples alike.
* per-jet (`FlatSubstructureJetTree`, a TTree): the two leading jets of each event, one entry per jet,
  constituents `fjet_clus_*` as variable-length arrays.

Each jet also has a truth partner (`jet_true_*`, the calibration target) and an integer truth label
(`jet_truth_label`: 6 top, 21 gluon, 1 light) for category selections.
Signal ("zprime") jets are massive (top-like, ~173 GeV) with more, wider constituents; background ("dijet")
jets are light with a steeply falling pT spectrum. Jet multiplicity 1-4 (mostly 2), 30-120 constituents per
jet, constituents stored in random (not pT) order, as in real ntuples.
"""
from __future__ import annotations

import os

import awkward as ak
import numpy as np
import uproot

EVENTS_TREE = "IsolatedJet_tree"
JETS_TREE = "FlatSubstructureJetTree"
_GEV = 1000.0


def _wrap(phi):
    return (phi + np.pi) % (2 * np.pi) - np.pi


def generate_events(n_events: int, seed: int, signal: bool, first_event: int = 0) -> dict[str, ak.Array | np.ndarray]:
    """Per-event columns (awkward/numpy), vectorized over all events and jets.

    Events first_event ... first_event + n_events - 1 of the stream `seed`; chunks of a stream are
    independent of how the stream is cut, apart from the random numbers themselves.
    """
    rng = np.random.default_rng([seed, first_event])
    n_jets = np.clip(1 + rng.binomial(1, 0.9, n_events) + rng.poisson(0.25, n_events), 1, 4)
    total = int(n_jets.sum())
    if signal:
        pt = np.clip(rng.normal(800, 220, total), 250, None)
        mass = np.clip(rng.normal(173, 18, total), 20, None)
        n_const = np.clip(rng.poisson(70, total), 30, 120)
        width = 0.35
    else:
        pt = 450 + rng.exponential(160, total)
        mass = np.clip(pt * rng.exponential(0.06, total), 5, None)
        n_const = np.clip(rng.poisson(50, total), 30, 120)
        width = 0.25
    pt *= _GEV
    mass *= _GEV
    # truth partner of each jet (the calibration target) and a truth label (top 6, gluon 21, light 1)
    truth_label = np.where(rng.random(total) < (0.8 if signal else 0.5), 6 if signal else 21, 1)
    eta = rng.uniform(-2.5, 2.5, total)
    phi = rng.uniform(-np.pi, np.pi, total)
    energy = np.sqrt(mass**2 + (pt * np.cosh(eta)) ** 2)

    # Jets within an event stored pT-ordered, as ntuples do: sort by (event, -pt).
    event_of = np.repeat(np.arange(n_events), n_jets)
    order = np.lexsort((-pt, event_of))
    pt, eta, phi, mass, energy, n_const, truth_label = (
        a[order] for a in (pt, eta, phi, mass, energy, n_const, truth_label))
    true_pt = pt * rng.normal(1.05, 0.08, total)
    true_eta = eta + rng.normal(0, 0.02, total)
    true_phi = _wrap(phi + rng.normal(0, 0.02, total))
    true_m = mass * rng.normal(1.0, 0.1, total)
    true_e = np.sqrt(true_m**2 + (true_pt * np.cosh(true_eta)) ** 2)

    n_total = int(n_const.sum())
    jet_of = np.repeat(np.arange(total), n_const)
    share = rng.exponential(1.0, n_total) ** 2
    share /= np.bincount(jet_of, share)[jet_of]
    c_pt = share * pt[jet_of]
    c_eta = eta[jet_of] + rng.normal(0, width, n_total) * (1 - 0.5 * np.sqrt(share))
    c_phi = _wrap(phi[jet_of] + rng.normal(0, width, n_total) * (1 - 0.5 * np.sqrt(share)))
    c_e = c_pt * np.cosh(c_eta)

    def per_jet(values):
        return ak.unflatten(ak.unflatten(values.astype(np.float32), n_const), n_jets)

    def per_event(values):
        return ak.unflatten(values.astype(np.float32), n_jets)

    return {
        "eventNumber": (seed * 10_000_000 + first_event + np.arange(n_events)).astype(np.uint64),
        "runNumber": np.full(n_events, 410000 + seed, np.int32),
        "rho": rng.gamma(4.0, 4.0, n_events).astype(np.float32) * _GEV,
        "NPV": rng.poisson(30, n_events).astype(np.int32),
        "mcEventWeight": rng.normal(1.0, 0.05, n_events).astype(np.float32),
        "njet": n_jets.astype(np.int32),
        "jet_pt": per_event(pt),
        "jet_eta": per_event(eta),
        "jet_phi": per_event(phi),
        "jet_E": per_event(energy),
        "jet_m": per_event(mass),
        "jet_true_pt": per_event(true_pt),
        "jet_true_eta": per_event(true_eta),
        "jet_true_phi": per_event(true_phi),
        "jet_true_e": per_event(true_e),
        "jet_true_m": per_event(true_m),
        "jet_truth_label": ak.unflatten(truth_label.astype(np.int32), n_jets),
        "jet_constit_pt": per_jet(c_pt),
        "jet_constit_eta": per_jet(c_eta),
        "jet_constit_phi": per_jet(c_phi),
        "jet_constit_e": per_jet(c_e),
    }


def _clusters(n_events: int, clusters: int):
    edges = np.linspace(0, n_events, max(1, clusters) + 1).astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:]) if b > a]


def write_events_file(path: str, n_events: int, seed: int, signal: bool, clusters: int = 4,
                      tree: str = EVENTS_TREE) -> str:
    """Per-event layout (RNTuple with vector<float> / vector<vector<float>> fields), generated and
    written one cluster at a time, so any size fits in memory."""
    with uproot.recreate(path) as handle:
        for i, (start, stop) in enumerate(_clusters(n_events, clusters)):
            chunk = generate_events(stop - start, seed, signal, first_event=start)
            if i == 0:
                handle[tree] = chunk
            else:
                handle[tree].extend(chunk)
    return path


def flat_jets(columns: dict, leading: int = 2) -> dict[str, np.ndarray | ak.Array]:
    """Per-event columns -> one row per jet (the `leading` first jets), FlatSubstructureJetTree names."""
    keep = ak.local_index(columns["jet_pt"], axis=1) < leading
    counts = ak.to_numpy(ak.sum(keep, axis=1))
    jet = {name: ak.to_numpy(ak.flatten(columns[name][keep])) for name in
           ("jet_pt", "jet_eta", "jet_phi", "jet_m", "jet_E", "jet_true_pt", "jet_true_m", "jet_truth_label")}
    constituents = {name: ak.flatten(columns[name][keep], axis=1) for name in
                    ("jet_constit_pt", "jet_constit_eta", "jet_constit_phi", "jet_constit_e")}
    return {
        "EventInfo_mcEventNumber": np.repeat(columns["eventNumber"], counts),
        "EventInfo_mcEventWeight": np.repeat(columns["mcEventWeight"], counts),
        "fjet_pt": jet["jet_pt"], "fjet_eta": jet["jet_eta"], "fjet_phi": jet["jet_phi"],
        "fjet_m": jet["jet_m"], "fjet_E": jet["jet_E"], "fjet_truthJet_pt": jet["jet_true_pt"],
        "fjet_truthJet_m": jet["jet_true_m"],
        "fjet_truth_label": jet["jet_truth_label"],
        "fjet_nconstit": ak.to_numpy(ak.num(constituents["jet_constit_pt"], axis=1)).astype(np.int32),
        "fjet_clus": ak.zip({"pt": constituents["jet_constit_pt"], "eta": constituents["jet_constit_eta"],
                             "phi": constituents["jet_constit_phi"], "E": constituents["jet_constit_e"]}),
    }


def write_jets_file(path: str, n_events: int, seed: int, signal: bool, clusters: int = 4,
                    tree: str = JETS_TREE) -> str:
    """Per-jet layout (TTree; constituents `fjet_clus_{pt,eta,phi,E}` as variable-length arrays), one
    basket per cluster of events."""
    with uproot.recreate(path) as handle:
        for i, (start, stop) in enumerate(_clusters(n_events, clusters)):
            columns = flat_jets(generate_events(stop - start, seed, signal, first_event=start))
            if i == 0:
                handle.mktree(tree, {name: (values.type if isinstance(values, ak.Array) else values.dtype)
                                     for name, values in columns.items()})
            handle[tree].extend(columns)
    return path


def write_example(directory: str, events: int = 2000, seed: int = 1) -> list[str]:
    """The bundled example: two signal and one background per-event files (the background listed in a
    text file, as older tools took inputs), plus one per-jet file per class."""
    os.makedirs(directory, exist_ok=True)
    join = lambda name: os.path.join(directory, name)
    paths = [
        write_events_file(join("zprime_0.root"), events, seed * 100 + 1, signal=True),
        write_events_file(join("zprime_1.root"), events, seed * 100 + 2, signal=True),
        write_events_file(join("dijet_0.root"), events, seed * 100 + 3, signal=False),
        write_jets_file(join("flat_zprime.root"), events, seed * 100 + 4, signal=True),
        write_jets_file(join("flat_dijet.root"), events, seed * 100 + 5, signal=False),
    ]
    with open(join("dijet.txt"), "w") as handle:
        handle.write("# background files, one per line (relative to this list)\ndijet_0.root\n")
    return paths + [join("dijet.txt")]
