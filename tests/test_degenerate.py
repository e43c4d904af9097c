"""Degenerate input is loud: a constant event number, an empty configured split, an empty norm.yaml stop the run
unless checks.allow lists them; constant features are warnings in summary.json."""
import json

import numpy as np
import pytest
import uproot

from root2hdf5.pipelines.cli import main
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.stats.degenerate import event_number_problem, feature_warnings
from tests.conftest import IN_MEMORY, run_config, shared_file


def delphes_config(out, event_number="Event", allow=()):
    return {"samples": [{"name": "delphes", "files": [str(shared_file("uproot-issue513.root"))], "tree": "Delphes"}],
            "input": {"layout": "events", "event_number": event_number,
                      "jet_branches": ["Jet/Jet.PT", "Jet/Jet.Eta", "Jet/Jet.Phi", "Jet/Jet.Mass"]},
            "shuffle": {"shards": 3}, "checks": {"allow": list(allow)}, "output": {"dir": str(out)}}


def test_a_constant_event_number_stops_the_run_before_reading(tmp_path, capsys):
    """Seen 1 (Delphes): `Event` (a TClonesArray size, 1 in every entry) as the event number put every event
    in one split; the run ended with exit code 0, train empty and norm.yaml {}."""
    import yaml

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(delphes_config(tmp_path / "out")))
    assert main(["run", str(config), "-q"]) == 2
    err = capsys.readouterr().err
    assert "input.event_number 'Event' has 1 distinct value in the first 10 entries" in err
    assert "checks.allow: [few_event_numbers]" in err
    assert not (tmp_path / "out").exists()  # failed before anything was written


def test_empty_splits_and_norm_fail_after_the_run_unless_allowed(tmp_path):
    cfg = delphes_config(tmp_path / "out", allow=["few_event_numbers"])
    with pytest.raises(InputError, match=r"split .* is configured but no jet went to it.*norm.yaml holds no "
                                         r"statistics.*checks.allow: \['empty_norm', 'empty_split'\]"):
        run_config(cfg, IN_MEMORY)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    written = {s: summary["splits"][s]["jets"] for s in ("train", "val", "test")}
    assert sorted(written.values())[:2] == [0, 0]  # every event in one split
    assert {p["check"] for p in summary["problems"]} == {"empty_split", "empty_norm"}
    assert any("has 1 distinct value" in w for w in summary["warnings"])


def test_allowed_problems_are_warnings(tmp_path):
    cfg = delphes_config(tmp_path / "out", allow=["few_event_numbers", "empty_split", "empty_norm"])
    report = run_config(cfg, IN_MEMORY)
    assert "problems" not in report
    assert any("is configured but no jet went to it" in w for w in report["warnings"])


def test_a_real_event_number_passes(tmp_path):
    report = run_config(delphes_config(tmp_path / "out", "Event/Event.Number",
                                       allow=["empty_split"]), IN_MEMORY)  # 10 events: val/test may be empty
    numbers = uproot.open(shared_file("uproot-issue513.root"))["Delphes"]["Event/Event.Number"].array()
    assert report["splits"]["train"]["jets"] > 0 and len(set(np.ravel(numbers.to_list()))) == 10
    assert not any("distinct value" in w for w in report.get("warnings", []))


@pytest.mark.parametrize("values, degenerate", [
    (np.ones(10), True), (np.arange(10), False), (np.repeat(np.arange(5), 2), False),  # a per-jet ntuple
    (np.repeat([1, 2], 500), True), (np.array([7]), False),
])
def test_event_number_rule(values, degenerate):
    assert (event_number_problem(values, "n", "f") is not None) == degenerate


def test_constant_features_are_named():
    norm = {"jets": {"a": {"mean": 1.0, "std": 0.0, "count": 4, "min": 1.0, "max": 1.0},
                     "b": {"mean": 1.5, "std": 0.5, "count": 4, "min": 1.0, "max": 2.0}},
            "constituents": {"m": {"mean": 0.0, "std": 0.0, "count": 9, "min": 0.0, "max": 0.0}}}
    warnings = feature_warnings(norm)
    assert len(warnings) == 2 and "'a' of 'jets' is 1" in warnings[0] and "'m' of 'constituents' is 0" in warnings[1]
