"""Config loading: helpful errors, YAML quirks, and the inferred values."""
import pytest
import yaml

from root2hdf5.pipelines.config import config_from_dict, load_config
from root2hdf5.transforms.core.errors import ConfigError


def base(**extra):
    cfg = {"samples": [{"name": "a", "files": ["x.root"], "tree": "t", "label": 1}],
           "input": {"jet_branches": ["jet_pt", "jet_eta", "jet_phi", "jet_E"],
                     "constituent_branches": ["c_pt", "c_eta", "c_phi", "c_e"], "event_branches": ["rho"]}}
    for key, value in extra.items():
        if "__" not in key:  # a whole block
            cfg[key] = value
            continue
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
    with pytest.raises(ConfigError,
                       match=r"missing required config key 'samples\[0\]|missing required config key 'tree'"):
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
    ({"output__compression": "blosc-lz4", "output__compression_level": 12}, "output.compression_level: 12"),
])
def test_invalid_values(extra, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(base(**extra))


def test_blosc_needs_hdf5plugin_at_load(monkeypatch):
    """Refused when the config loads, naming the key and how to install the package."""
    import sys

    monkeypatch.setitem(sys.modules, "hdf5plugin", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"output.compression: blosc-zstd needs the hdf5plugin package .*"
                                          r"pip install hdf5plugin"):
        config_from_dict(base(output__compression="blosc-zstd"))
    assert config_from_dict(base(output__compression="blosc-zstd", output__format="parquet"))  # zstd in Parquet
    assert config_from_dict(base(output__compression="lzf"))


def test_jets_layout_needs_event_number():
    with pytest.raises(ConfigError, match="event_number is required"):
        config_from_dict(base(input__layout="jets"))


def test_provenance_leaves_out_where_and_how_it_ran():
    import json
    cfg = config_from_dict(base(output__dir="/somewhere"))
    stored = json.loads(cfg.provenance_json())
    assert "dir" not in stored["output"] and "mode" not in stored["shuffle"] and "step_size" not in stored["input"]
    assert stored["samples"][0]["name"] == "a"


# ------------------------------------------------------------------------------------------ record: event

def event_base(**sections):
    cfg = {"record": "event",
           "samples": [{"name": "tt", "files": ["x.root"], "tree": "Events", "label": 1,
                        "friends": {"mem": ["mem.root"]}}],
           "input": {"event_number": "event"},
           "events": {"variables": ["nJet", "Jet_pt[0]", "HT = sum(Jet_pt)"],
                      "collection": {"branches": ["Jet_pt", "Jet_eta"], "max": 4},
                      "friends": [{"name": "mem", "tree": "t", "keys": ["run", "luminosityBlock", "event"],
                                   "branches": ["mem_p"]}]}}
    for key, value in sections.items():
        node = cfg
        *parents, last = key.split("__")
        for name in parents:
            node = node[int(name)] if isinstance(node, list) else node.setdefault(name, {})
        node[last] = value
    return cfg


def test_event_record_resolves():
    cfg = config_from_dict(event_base(preprocess__unit_scale=0.001, split={"modulo": 2, "train": [0], "test": [1]}))
    assert cfg.events.collection.sort_by == "Jet_pt" and cfg.kinematics.constituents["pt"] == "Jet_pt"
    assert cfg.events.friends[0].friend_keys == ["run", "luminosityBlock", "event"]
    assert cfg.preprocess.scaled_branches == ["Jet_pt[0]", "Jet_pt"]  # energy-like by branch suffix
    assert cfg.split.fractions() == {"train": 0.5, "val": 0.0, "test": 0.5}
    assert cfg.split.residue_splits() == [0, 2] and cfg.shuffle.shards_per_split == {"train": 4, "test": 4}
    hashed = config_from_dict(base())  # the default hash split is unchanged
    assert hashed.split.fractions() == {"train": 0.8, "val": 0.1, "test": 0.1} and hashed.split.modulo is None


@pytest.mark.parametrize("extra, message", [
    ({"record": "events"}, r"record: 'events' is not one of jet, event; did you mean 'event'"),
    ({"events__variables": []}, r"events.variables: record: event needs at least one variable"),
    ({"events__variables": ["Jet_pt[-1]"]}, r"events.variables\[0\]: 'Jet_pt\[-1\]' is not a variable"),
    ({"events__variables": ["HT = sum(Jet_pt"]}, r"events.variables\[0\] 'HT' 'sum\(Jet_pt' is not a valid"),
    ({"events__variables": ["nJet", "nJet"]}, r"events.variables: 'nJet' is listed twice"),
    ({"events__defaults": {"Jet_pt[1]": 0}}, r"events.defaults: \['Jet_pt\[1\]'\] are not variables"),
    ({"input__jet_branches": ["Jet_pt"]}, r"input.jet_branches: not used with record: event"),
    ({"input__layout": "jets"}, r"input.layout: record: event reads one entry per event"),
    ({"events__collection__sort_by": "Jet_phi"}, r"events.collection.sort_by: 'Jet_phi' is not one of"),
    ({"events__collection__name": "events"}, r"events.collection.name: 'events' is not a usable dataset name"),
    ({"events__friends__0__unmatched": "keep"}, r"events.friends\[0\].unmatched: 'keep' is not one of drop, fill"),
    ({"events__friends__0__friend_keys": ["run"]}, r"events.friends.mem.friend_keys: 1 names for 3 keys"),
    ({"events__friends__0__branches": ["event"]}, r"events.friends.mem.branches: \['event'\] are keys"),
    ({"samples__0__friends": {}}, r"samples.tt.friends.mem: no files given"),
    ({"samples__0__friends": {"mem": ["m.root"], "dnn": ["d.root"]}}, r"samples.tt.friends: \['dnn'\] are not in"),
    ({"input__selection": "mem_p > 0.5"}, r"input.selection: \['mem_p'\] come from friend trees"),
    ({"samples__0__selection": "count(Jet_pt > 30) >= 4 && mem_p > 0"}, r"samples.tt.selection: \['mem_p'\]"),
    ({"output__layout": "ftag"}, r"output.layout ftag is the jets/tracks convention"),
    ({"split": {"modulo": 2, "train": 0.5, "test": [1]}}, r"split.train: with split.modulo give the residues"),
    ({"split": {"modulo": 2, "train": [0, 2], "test": [1]}}, r"split.train: residue 2 is not between 0 and 1"),
    ({"split": {"modulo": 2, "train": [0, 1], "test": [1]}}, r"split.test: residue 1 is also in split.train"),
    ({"split": {"modulo": 3, "train": [0], "test": [1]}}, r"split: residues \[2\] of event_number % 3 are in no"),
    ({"split": {"train": [0], "test": [1]}}, r"split.train: a list of residues needs split.modulo"),
    ({"split": {"modulo": 2, "train": [0], "test": [1]}, "input__event_number": None}, r"split.modulo needs input"),
    ({"jet_collections": {"fields": ["pt"], "collections": {"a": ["Jet_pt"]}}}, r"jet_collections: stacks"),
])
def test_invalid_event_record(extra, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(event_base(**extra))


def test_event_keys_need_record_event():
    with pytest.raises(ConfigError, match=r"events: these keys describe one row per event; set record: event"):
        config_from_dict({**base(), "events": {"variables": ["nJet"]}})
    cfg = base()
    cfg["samples"][0]["friends"] = {"mem": ["m.root"]}
    with pytest.raises(ConfigError, match=r"samples.a.friends: friend trees are joined per event"):
        config_from_dict(cfg)
    cfg = base(split__modulo=2, input__event_number="ev")  # the modulo split works for jets too
    cfg["split"].update(train=[0], val=[1])
    assert config_from_dict(cfg).split.residue_splits() == [0, 1]


def test_checks_known_at_load_fail_at_load():
    """Reweighting variables, FTAG field clashes and position variations on cartesian constituents fail when
    the config loads, not when the pipeline runs."""
    with pytest.raises(ConfigError, match=r"weights.variables: \['jet_m'\] are not jet features"):
        config_from_dict(base(weights={"method": "flat", "variables": ["jet_m"], "bins": [[0, 1, 2]]}))
    clash = base(output__layout="ftag")
    clash["input"]["jet_branches"] = ["jet_pt", "weight"]
    with pytest.raises(ConfigError, match=r"output.layout ftag: field names \['weight'\] occur twice"):
        config_from_dict(clash)
    cartesian = base(kinematics={"constituents": {"px": "c_e"}},
                     variations=[{"name": "pos", "kind": "position", "size": 0.01}])
    with pytest.raises(ConfigError, match=r"variations\[0\] \(pos\): smears eta and phi, but the constituents also "
                                          r"have cartesian branches \(c_e\)"):
        config_from_dict(cartesian)


def test_schema_choices_are_the_kernels_tables():
    """The config's Literal choices and the tables the kernels dispatch on name the same things."""
    import typing

    from root2hdf5.pipelines.config.schema import ImageConfig, VariationConfig
    from root2hdf5.transforms.physics import images, variations

    hints = {cls: typing.get_type_hints(cls) for cls in (ImageConfig, VariationConfig)}
    frames = typing.get_args(hints[ImageConfig]["frame"])
    channels = typing.get_args(typing.get_args(typing.get_args(hints[ImageConfig]["channels"])[0])[0])
    kinds = typing.get_args(hints[VariationConfig]["kind"])
    assert set(frames) == set(images.FRAMES) and set(channels) == set(images.CHANNELS)
    assert set(kinds) == set(variations.KERNELS) == set(variations.LIMITS)
