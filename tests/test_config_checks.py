"""Issue 18 (items 6, 7, 12, 13, 14): what the config can hold that used to run with NaN/Inf, hang, crash with
a traceback or read the wrong files is refused when it loads, with one line naming the key or expression."""
import importlib
import logging
import os

import numpy as np
import pytest

from root2hdf5.pipelines.config import config_from_dict, load_config
from root2hdf5.transforms.core.batch import Jagged
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.read.sources import expand_files
from root2hdf5.transforms.rows.event_expressions import EventExpression
from root2hdf5.transforms.rows.expressions import Expression
from tests.test_config import base, event_base
from tests.test_sources import sample

NAN, INF = float("nan"), float("inf")
resolve = importlib.import_module("root2hdf5.pipelines.config.resolve")  # the package exports its function


def with_sample(**keys):
    cfg = base()
    cfg["samples"][0].update(keys)
    return cfg


# ------------------------------------------------------------------------------------ 6: numbers, ranges


@pytest.mark.parametrize("cfg, message", [
    (base(preprocess__unit_scale=NAN), r"^preprocess\.unit_scale: nan is not a finite number$"),
    (base(preprocess__unit_scale="1e39"), r"^preprocess\.unit_scale: 1e\+39 is too large \(numbers are written as "
                                          r"float32"),
    (base(preprocess__scale={"rho": INF}), r"^preprocess\.scale\.rho: inf is not a finite number$"),
    (with_sample(weight=NAN), r"^samples\[0\]\.weight: nan is not a finite number$"),
    (with_sample(weight=-INF), r"^samples\[0\]\.weight: -inf is not a finite number$"),
    (base(weights__luminosity=INF), r"^weights\.luminosity: inf is not a finite number$"),
    (base(input__nonfinite_value=INF), r"^input\.nonfinite_value: inf is not a finite number$"),
    (base(input__nonfinite_value=-1e300), r"^input\.nonfinite_value: -1e\+300 is too large"),
    (base(split__train=NAN), r"^split\.train: nan is not a finite number$"),  # 12: was a KeyError
    (base(constituents__min_pt=NAN), r"^constituents\.min_pt: nan is not a finite number$"),
    (with_sample(cross_section=NAN, sum_of_weights=1), r"^samples\[0\]\.cross_section: nan is not a finite"),
    (event_base(events__default=NAN), r"^events\.default: nan is not a finite number$"),
    (base(shuffle__seed=2**70), r"^shuffle\.seed: 1180591620717411303424 is too large \(integers must fit in 64"),
    (base(constituents__max=1e300), r"^constituents\.max: 1000000000000000052504760255204420248704468581108159154915"),
])
def test_numbers_must_be_finite_and_fit(cfg, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(cfg)


@pytest.mark.parametrize("cfg, message", [
    (base(preprocess__unit_scale=0), r"^preprocess\.unit_scale must be positive \(a factor of units\), got 0$"),
    (base(preprocess__unit_scale=-0.001), r"^preprocess\.unit_scale must be positive"),
    (base(weights__luminosity=0), r"^weights\.luminosity must be positive, got 0$"),
    (with_sample(cross_section=-2, sum_of_weights=1), r"^samples\.a\.cross_section must be positive, got -2$"),
    (with_sample(cross_section=2, sum_of_weights="nan"), r"^samples\.a\.sum_of_weights must be a positive finite"),
    (with_sample(cross_section=2, sum_of_weights="inf"), r"^samples\.a\.sum_of_weights must be a positive finite"),
])
def test_numbers_out_of_their_range(cfg, message):
    with pytest.raises(ConfigError, match=message):
        config_from_dict(cfg)


def test_a_yaml_nan_names_the_key(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("samples: [{name: a, files: [x.root], tree: t, weight: .nan}]\ninput: {jet_branches: [jet_pt]}\n")
    with pytest.raises(ConfigError, match=r"^samples\[0\]\.weight: nan is not a finite number$"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^weights\.luminosity: inf is not a finite number$"):
        load_config(path, {"samples": [{"name": "a", "files": ["x.root"], "tree": "t"}], "weights.luminosity": INF})


def test_array_sizes_are_bounded_by_memory(monkeypatch):
    # constituents.max: 10000000 died in a numpy MemoryError on the workers
    with pytest.raises(ConfigError, match=r"^constituents\.max: one work unit of 100,000 rows .* would need "
                                          r"14,901\.2 GiB .* GiB of memory here"):
        config_from_dict(base(constituents__max=10_000_000))  # 50000 entries x 2 jets x 1e7 x 4 features x 4 bytes
    monkeypatch.setattr(resolve, "physical_memory", lambda: 4 * 2**30)
    # 1000 x 2 rows x 80 slots x 4 features x 4 bytes = 2.44 MiB, far below 2 GiB
    assert config_from_dict(base(input__step_size=1000)).constituents.max == 80
    need = 1_000_000 * 2 * 80 * 4 * 4  # 2.4 GiB > half of 4 GiB
    with pytest.raises(ConfigError, match=rf"^constituents\.max: .* 2,000,000 rows .* {need / 2**30:,.1f} GiB .* "
                                          r"half the 4\.0 GiB of memory here; lower it or input\.step_size$"):
        config_from_dict(base(input__step_size=1_000_000))
    image = {"name": "img", "kind": "dense", "bins": [4000, 4000], "range": [[-1, 1], [-1, 1]], "channels": ["pt", "e"]}
    with pytest.raises(ConfigError, match=r"^images\[0\]\.bins: one work unit of 2,000 rows"):
        config_from_dict(base(input__step_size=1000, images=[image]))  # 2000 x 16e6 x 2 x 4 bytes = 238 GiB
    pixels = {**image, "kind": "pixels"}  # one index per constituent, whatever the bins
    pixels.pop("channels")
    assert config_from_dict(base(input__step_size=1000, images=[pixels])).images[0].bins == [4000, 4000]


# ---------------------------------------------------------------------------- 7: expressions that explode


@pytest.mark.parametrize("text, message", [
    ("10**10**10 > jet_pt", r"the exponent 10 \*\* 10 of \*\* is larger than 1024"),  # hung for minutes
    ("jet_pt ** 2000 > 1", r"the exponent 2000 of \*\* is larger than 1024"),
    ("jet_pt > 2 ** -5000", r"the exponent -5000 of \*\*"),
    ("jet_pt > 1 / (2 - 2)", r"1 / \(2 - 2\) divides by zero"),
    ("jet_pt > 5 % 0", r"5 % 0 divides by zero"),
    ("jet_pt < 10.0 ** 400", r"10\.0 \*\* 400 is not a finite real number"),
    ("jet_pt < 1e999", r"a number in it is larger than a float holds \(1\.8e308\)"),
    ("jet_pt < (-8) ** 0.5", r"\(-8\) \*\* 0\.5 is not a finite real number"),  # a complex number
    ("jet_pt < 10**300 * 10**300", r"'10 \*\* 300 \* 10 \*\* 300' is larger than a float holds"),
    ("jet_pt < " + "9" * 400, r"'9{200}\.\.\.' is larger than a float holds"),
])
def test_constant_parts_are_computed_at_load_with_bounds(text, message):
    with pytest.raises(ConfigError, match=rf"^input\.selection '.*': {message}"):
        config_from_dict(base(input__selection=text))


@pytest.mark.parametrize("text", [
    "-" * 100_000 + "jet_pt > 0",  # was a MemoryError
    " + ".join(["jet_pt"] * 100_000) + " > 0",  # was a RecursionError
    " & ".join(["jet_pt > 1"] * 20_000),
])
def test_deep_nesting_is_one_line(text):
    with pytest.raises(ConfigError, match=r"^input\.selection '.{200}\.\.\.' is nested too deeply; split it"):
        config_from_dict(base(input__selection=text))


def test_constants_within_bounds_evaluate_as_before():
    values = {"jet_pt": np.array([1.0, 300.0, 3e3]), "n": np.array([1, 2, 3])}
    cases = [("jet_pt ** 2 > 2 ** 10 * 60", values["jet_pt"] ** 2 > 2 ** 10 * 60),
             ("jet_pt * 2 ** -3 > 1 / 4 + 36", values["jet_pt"] * 2 ** -3 > 1 / 4 + 36),
             ("n ** 1024 > 0", values["n"] ** 1024 > 0),
             ("n % 2 == 1 & (-2) ** 3 < n", (values["n"] % 2 == 1) & ((-2) ** 3 < values["n"]))]
    for text, expected in cases:
        np.testing.assert_array_equal(Expression(text).evaluate(values), expected)


# --------------------------------------------------------------------------------- 12: crashes to one line


def test_an_index_too_large_for_numpy_is_refused():
    with pytest.raises(ConfigError, match=r"^events\.variables\[1\] 'Jet_pt\[99999999999999999999\]': index "
                                          r"99999999999999999999 is larger than any list can be"):
        config_from_dict(event_base(events__variables=["nJet", "Jet_pt[99999999999999999999]"]))
    with pytest.raises(ConfigError, match=r"^input\.selection 'Jet_pt\[99999999999999999999\] > 1': index "
                                          r"99999999999999999999 is larger than any list can be "
                                          r"\(at most 2147483647\)$"):
        config_from_dict(event_base(input__selection="Jet_pt[99999999999999999999] > 1"))
    # the largest index allowed evaluates: no event has that many jets, so every comparison is false (NaN)
    jets = Jagged(np.array([1.0, 2.0, 3.0]), np.array([0, 2]), np.array([2, 1]))
    assert EventExpression("Jet_pt[2147483647] > 0").evaluate({"Jet_pt": jets}).tolist() == [False, False]


@pytest.mark.parametrize("text, message", [
    ("samples: [{name: a, files: [x.root], tree: t}]\ninput: {jet_branches: &x [*x]}\n",
     r"^input\.jet_branches\[0\]: a YAML alias refers to a block that contains it"),
    ("a: &x {b: *x}\nsamples: [{name: a, files: [x.root], tree: t}]\n", r"^a\.b: a YAML alias refers to a block"),
    ("samples: [{name: 2024-01-01, files: [x.root], tree: t}]\ninput: {jet_branches: [jet_pt]}\n",
     r"^samples\[0\]\.name: YAML reads 2024-01-01 as a date; quote it to give a string$"),
    ("samples: " + "[" * 5000 + "]" * 5000 + "\n", r"is nested too deeply to be a config$"),
    ("samples: " + "[" * 100 + "]" * 100 + "\n", r"^samples(\[0\]){63}: nested more than 64 levels deep$"),
    ("l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n" + "".join(
        f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 6)) +
     "samples: [{name: a, files: [x.root], tree: t}]\ninput: {jet_branches: *l5}\n",
     r"the config holds more than 1,000,000 values \(YAML aliases repeated inside each other\?\)$"),
])
def test_yaml_that_crashed_the_loader(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_a_mapping_used_as_a_key():
    with pytest.raises(ConfigError, match=r"^preprocess\.scale: the key \('a', 'b'\) is not a name"):
        config_from_dict(base(preprocess__scale={("a", "b"): 1.0}))


# ------------------------------------------------------------------------------ 13: a file in two samples


@pytest.fixture
def two_spellings(tmp_path, monkeypatch):
    """One file written as an absolute path, as ./relative, through a symlink and through a glob."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.root").write_bytes(b"")
    (data / "b.root").write_bytes(b"")
    os.symlink(data / "a.root", tmp_path / "link.root")
    monkeypatch.chdir(tmp_path)
    return data


def _two_samples(files_a, files_b, **sample_b):
    cfg = base()
    cfg["samples"] = [{"name": "sig", "files": files_a, "tree": "t", "label": 1},
                      {"name": "bkg", "files": files_b, "tree": "t", "label": 0, **sample_b}]
    return cfg


@pytest.mark.parametrize("files_b, spelled", [(["./data/a.root"], "./data/a.root"), (["link.root"], "link.root"),
                                               (["data/*.root"], "data/a.root"), (["list.txt"], "data/../data/a.root")])
def test_a_file_in_two_samples_is_refused(two_spellings, files_b, spelled):
    (two_spellings.parent / "list.txt").write_text("data/b.root\ndata/../data/a.root\n")
    real = os.path.realpath(two_spellings / "a.root")
    with pytest.raises(ConfigError) as err:
        config_from_dict(_two_samples([str(two_spellings / "a.root")], files_b))
    assert str(err.value) == (
        f"samples: file {spelled} ({real}) is in sample 'sig' and in sample 'bkg'; its jets would be written once per "
        "sample, with each label; list it in one sample, give each sample a selection, or accept this with "
        "checks.allow: [shared_files]")


def test_a_file_in_two_samples_when_allowed_or_split_by_selections(two_spellings, caplog):
    files = [str(two_spellings / "a.root")], ["link.root"]
    with caplog.at_level(logging.WARNING, logger="root2hdf5"):
        cfg = config_from_dict({**_two_samples(*files), "checks": {"allow": ["shared_files"]}})
    assert cfg.checks.allow == ["shared_files"]
    real = os.path.realpath(two_spellings / "a.root")
    assert [r.getMessage() for r in caplog.records] == [
        f"samples: file link.root ({real}) is in sample 'sig' and in sample 'bkg'; its jets would be written once per "
        "sample, with each label (accepted by checks.allow: [shared_files])"]
    # one file split into classes by per-sample selections (docs/config.md) stays as it was
    split = _two_samples(*files, selection="jet_pt < 500")
    split["samples"][0]["selection"] = "jet_pt >= 500"
    assert [s.selection for s in config_from_dict(split).samples] == ["jet_pt >= 500", "jet_pt < 500"]
    with pytest.raises(ConfigError, match=r"is in sample 'sig' and in sample 'bkg'"):  # one selection: overlap
        config_from_dict(_two_samples(*files, selection="jet_pt < 500"))
    # different files, and files that do not exist yet, are left alone here
    assert len(config_from_dict(_two_samples(["data/a.root"], ["data/b.root", "missing.root"])).samples) == 2


# ---------------------------------------------------------------------- 14: file names with glob characters


def test_an_existing_path_with_glob_characters_is_taken_literally(tmp_path):
    for name in ("weird[1].root", "weird1.root", "what?.root", "star*.root", "stars.root"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "files.txt").write_text("weird[1].root\nwhat?.root\n")

    def paths(*entries):
        return [os.path.basename(f.path) for f in expand_files([sample("s", *(str(tmp_path / e) for e in entries))])]

    assert paths("weird[1].root") == ["weird[1].root"]  # was: no files match
    assert paths("star*.root") == ["star*.root"]
    assert paths("files.txt") == ["weird[1].root", "what?.root"]
    assert paths("weird[12].root") == ["weird1.root"]  # no such file: a glob, as before
    assert paths("st*.root") == ["star*.root", "stars.root"]
