"""docs/formats.md: every config snippet runs on the public file named above it, and its rows are what uproot
gives for the snippet's selection."""
import re
from pathlib import Path

import awkward as ak
import numpy as np
import pytest
import uproot
import yaml

from root2hdf5.pipelines.config import config_from_dict
from root2hdf5.pipelines.run import run
from root2hdf5.transforms.read.objects import lorentz_component
from root2hdf5.transforms.rows.expressions import Expression
from tests.conftest import IN_MEMORY, shared_file
from tests.reference import read_output

DOC = Path(__file__).resolve().parents[1] / "docs" / "formats.md"
SNIPPETS = re.findall(r"<!-- tested on (\S+) -->\n```yaml\n(.*?)```", DOC.read_text(), re.S)


def _values(tree, name):
    if name in tree.keys():
        values = tree[name].array()
        return ak.flatten(values) if values.ndim == 2 and name.startswith("Event/") else values
    base, component = name.rsplit(".", 1)
    return lorentz_component(tree[base].array(), component)


def test_every_format_has_a_snippet():
    assert {f for f, _ in SNIPPETS} >= {"uproot-issue-123a.root", "nanoAOD_2015_CMS_Open_Data_ttbar.root",
                                        "pfnano_zprime.root", "uproot-issue513.root", "jets_events_zprime.root",
                                        "jets_flat_zprime.root"}


@pytest.mark.parametrize("name, text", SNIPPETS, ids=[f for f, _ in SNIPPETS])
def test_snippet_runs_and_selects_what_uproot_selects(name, text, tmp_path):
    data = yaml.safe_load(text)
    path = shared_file(name)
    data["samples"][0]["files"] = [str(path)]
    data["output"]["dir"] = str(tmp_path / "out")
    cfg = config_from_dict(data)
    report = run(cfg, IN_MEMORY)
    assert report["splits"]["train"]["jets"] > 0
    output = read_output(str(tmp_path / "out"))
    rows = {tuple(int(v) for v in s[2:]) for split in output.values() for s in split["source"]}
    tree = uproot.open(path)[cfg.samples[0].tree]
    inp = cfg.input
    if inp.layout == "jets":
        selected = Expression(inp.selection).evaluate({b: ak.to_numpy(_values(tree, b)) for b in
                                                      Expression(inp.selection).symbols}) if inp.selection else None
        expected = set((int(e), 0) for e in np.flatnonzero(selected if selected is not None
                                                           else np.ones(tree.num_entries, bool)))
    else:
        ranking = _values(tree, inp.leading_by)
        leading = ak.argsort(ranking, axis=1, ascending=False, stable=True)[:, :inp.leading_jets]
        if inp.selection:
            expression = Expression(inp.selection)
            passed = expression.evaluate({b: _values(tree, b) for b in expression.symbols})
            leading = leading[passed[leading]]
        expected = {(e, int(j)) for e, js in enumerate(leading.tolist()) for j in js}
    assert rows == expected
