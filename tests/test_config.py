"""Config loading: helpful errors, YAML quirks, and the inferred values."""
import pytest
import yaml

from pipelines.config import config_from_dict, load_config
from transforms.errors import ConfigError


def base(**extra):
    cfg = {"samples": [{"name": "a", "files": ["x.root"], "tree": "t", "label": 1}],
           "input": {"jet_branches": ["jet_pt", "jet_eta", "jet_phi", "jet_E"],
                     "constituent_branches": ["c_pt", "c_eta", "c_phi", "c_e"], "event_branches": ["rho"]}}
    for key, value in extra.items():
        section, name = key.split("__")
        cfg.setdefault(section, {})[name] = value
    return cfg


def test_unknown_key_suggests_the_closest():
    with pytest.raises(ConfigError, match=r"unknown config key 'input.jet_branch'; did you mean 'jet_branches'"):
        config_from_dict(base(input__jet_branch=["x"]))
    with pytest.raises(ConfigError, match=r"unknown config key 'shufle'; did you mean 'shuffle'"):
        config_from_dict({**base(), "shufle": {}})


def test_types_are_checked_with_the_key_named():
    with pytest.raises(ConfigError, match=r"constituents.max: expected an integer, got 'many'"):
        config_from_dict(base(constituents__max="many"))
    with pytest.raises(ConfigError, match=r"missing required config key 'samples\[0\]|missing required config key 'tree'"):
        config_from_dict({"samples": [{"name": "a", "files": ["x"]}], "input": {"jet_branches": ["a"]}})


def test_yaml_exponent_without_dot_is_a_number(tmp_path):
    text = "samples: [{name: a, files: [x.root], tree: t}]\ninput: {jet_branches: [jet_pt]}\n" \
           "preprocess: {unit_scale: 1e-3}\nconstituents: {min_pt: 5e2}\n"
    assert isinstance(yaml.safe_load(text)["preprocess"]["unit_scale"], str)  # the YAML 1.1 quirk
    path = tmp_path / "c.yaml"
    path.write_text(text)
    cfg = load_config(path)
    assert cfg.preprocess.unit_scale == 0.001 and cfg.constituents.min_pt == 500.0


def test_inferred_roles_sort_branch_and_scaled_branches():
    cfg = config_from_dict(base(preprocess__unit_scale=0.001))
    assert cfg.kinematics.constituents == {"pt": "c_pt", "eta": "c_eta", "phi": "c_phi", "e": "c_e"}
    assert cfg.kinematics.jets["pt"] == "jet_pt" and cfg.input.leading_by == "jet_pt"
    assert cfg.constituents.sort_by == "c_pt"
    assert cfg.preprocess.scaled_branches == ["jet_pt", "jet_E", "c_pt", "c_e"]
    assert config_from_dict(base()).preprocess.scaled_branches == []  # no scaling asked for


def test_shards_spread_over_splits_in_proportion():
    cfg = config_from_dict(base(shuffle__shards=10, split__train=0.7, split__val=0.3, split__test=0.0))
    assert cfg.shuffle.shards_per_split == {"train": 7, "val": 3}


@pytest.mark.parametrize("extra, message", [
    ({"split__train": 0.5}, "add up to 1"),
    ({"input__layout": "event"}, "not one of events, jets"),
    ({"output__compression": "zstd"}, "not one of gzip, lzf, none"),
    ({"preprocess__constituents": "eval(1)"}, "not a built-in constituents function"),
    ({"preprocess__constituents": "lognrom"}, "did you mean .lognorm."),
    ({"preprocess__jets": "angular"}, "not a built-in jets function"),
    ({"input__selection": "jet_pt >"}, "not a valid expression"),
    ({"constituents__sort_by": "jet_pt"}, "not one of input.constituent_branches"),
    ({"shuffle__mode": "fast"}, "not one of spill, engine"),
    ({"output__format": "parqet"}, "output.format: 'parqet' is not one of hdf5, parquet; did you mean 'parquet'"),
    ({"output__layout": "FTAG"}, "output.layout: 'FTAG' is not one of plain, ftag$"),
    ({"output__format": "parquet", "output__layout": "ftag"}, "ftag is an HDF5 layout"),
    ({"output__parquet_constituents": "padding"}, "did you mean 'padded'"),
    ({"output__constituents_name": "jets"}, "not a usable dataset name"),
])
def test_invalid_values(extra, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(base(**extra))


def test_jets_layout_needs_event_number():
    with pytest.raises(ConfigError, match="event_number is required"):
        config_from_dict(base(input__layout="jets"))


def test_provenance_leaves_out_where_and_how_it_ran():
    import json
    cfg = config_from_dict(base(output__dir="/somewhere"))
    stored = json.loads(cfg.provenance_json())
    assert "dir" not in stored["output"] and "mode" not in stored["shuffle"] and "step_size" not in stored["input"]
    assert stored["samples"][0]["name"] == "a"
