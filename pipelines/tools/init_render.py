"""`root2hdf5 init`: the starter config written from a Guess (pipelines.tools.init_config), commented: every
choice made from names is marked GUESS, every choice without a good candidate UNSURE, and the alternatives are
named."""
from __future__ import annotations

import json
import math
import os
import re

import numpy as np

from root2hdf5.pipelines.tools.init_config import Guess
from root2hdf5.transforms.physics.kinematics import infer_roles


def expression_name(name: str) -> str:
    """A branch as written in an expression: plain or dotted names as they are, others in backticks."""
    return name if re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name) else f"`{name}`"


def _names(values: list[str], indent: int, width: int = 110) -> str:
    """A YAML flow list, wrapped."""
    if not values:
        return "[]"
    lines, line = [], "["
    for i, v in enumerate(values):
        item = json.dumps(v) + (", " if i < len(values) - 1 else "]")
        if len(line) + len(item) > width - indent and line != "[":
            lines.append(line.rstrip())
            line = " "
        line += item
    lines.append(line)
    return ("\n" + " " * indent).join(lines)


def _comment(text: str, indent: int = 2) -> list[str]:
    """`# text` wrapped into comment lines of at most ~110 characters."""
    words, lines, line = text.split(" "), [], " " * indent + "#"
    for word in words:
        if len(line) + len(word) > 110 and line.strip() != "#":
            lines.append(line)
            line = " " * indent + "#  "
        line += " " + word
    return [*lines, line]


def render(g: Guess, path: str, config_path: str | None = None) -> str:
    """The commented starter config. `config_path`: where it will be written (its `files:` entry is then
    relative to that folder, as a config's relative paths are read); without it, the file's absolute path."""
    sample = re.sub(r"[^A-Za-z0-9_.+-]", "_", os.path.splitext(os.path.basename(path))[0]) or "sample"
    if "://" in path:
        files = path
    elif config_path:
        files = os.path.relpath(os.path.abspath(path), os.path.dirname(os.path.abspath(config_path)))
    else:
        files = os.path.abspath(path)
    mev = g.jet_pt_median is not None and g.jet_pt_median > 1000
    jet_roles, const_roles = infer_roles(g.jets), infer_roles(g.constituents)
    slots = 0
    if g.multiplicity is not None and len(g.multiplicity):
        slots = max(10, int(math.ceil(np.percentile(g.multiplicity, 95) / 10) * 10))
    out = [f"# Starter config written by `root2hdf5 init {path}` from the first {min(g.entries, g.peeked)} of",
           f"# {g.entries:,} entries of tree {g.tree!r}. Check every line marked GUESS or UNSURE, set the labels, "
           "then run",
           "#   root2hdf5 run THIS.yaml",
           "# Keys are described in docs/config.md; relative paths are taken from this file's folder."]
    if g.other_trees:
        out += _comment(f"other trees in the file: {', '.join(g.other_trees)} (root2hdf5 init --tree NAME)", 0)
    if g.metadata_trees:
        out += _comment(f"metadata trees, not events: {', '.join(g.metadata_trees)}", 0)
    for text in g.unsure:
        out += _comment(f"UNSURE: {text}", 0)
    out += ["", "samples:", f"  - name: {sample}",
            f"    files: [{json.dumps(files)}]     # paths, globs, list files or root:// URLs",
            f"    tree: {json.dumps(g.tree)}",
            "    label: 0                # TODO: one integer class per sample; add your other samples below", "",
            "input:",
            f"  layout: {g.layout}" + ("             # GUESS: one entry per event (lists of jets)"
                                      if g.layout == "events" else "               # GUESS: one entry per jet")]
    if g.layout == "events":
        out.append("  leading_jets: 2           # jets kept per event, highest pT first")
    if g.event_number:
        out.append(f"  event_number: {json.dumps(g.event_number)}     # GUESS: jets of one event go to the same split")
    else:
        out.append("  # event_number: ...        # no event-number branch found: splits are then per entry")
    out.append(f"  jet_branches: {_names(g.jets, 16)}")
    if g.truth:
        out += _comment("truth labels or truth jets (categories? regression targets: jet_collections): "
                        + ", ".join(g.truth[:12]) + (f" ... ({len(g.truth) - 12} more)" if len(g.truth) > 12 else ""))
    out.append(f"  constituent_branches: {_names(g.constituents, 24)}")
    if g.links:
        out += ["  constituent_links:         # GUESS: constituents stored per event, linked to the jets by index",
                f"    jet_index: {json.dumps(g.links['jet_index'])}",
                f"    index: {json.dumps(g.links['index'])}"]
    if g.layout == "events":
        out.append(f"  event_branches: {_names(g.events, 18)}   # GUESS: per-event values repeated per jet")
    pt, eta = jet_roles.get("pt"), jet_roles.get("eta")
    if pt:
        cut = "250e3" if mev else "250"
        selection = f"{expression_name(pt)} > {cut}" + (f" & abs({expression_name(eta)}) < 2" if eta else "")
        out.append(f"  # selection: {json.dumps(selection)}   # per jet, in the ntuple's units")
    out.append("  step_size: 50000           # entries per work unit")
    for text in g.notes:
        out += _comment(text)
    if g.constituents:
        out += ["", "constituents:",
                f"  max: {slots}                   # ~95% of jets have at most this many constituents",
                f"  sort_by: {json.dumps(const_roles.get('pt', g.constituents[0]))}"]
    out += ["", "preprocess:",
            f"  constituents: {'cartesian' if {'pt', 'eta', 'phi'} <= set(const_roles) else 'raw'}"
            "   # or raw, lognorm_angular, my_module:my_function (docs/config.md: Preprocessing)",
            "  jets: raw"]
    if mev:
        out.append(f"  unit_scale: 0.001           # GUESS: the median jet pT is {g.jet_pt_median:,.0f}, so MeV -> GeV")
    if g.weight:
        out += ["", f"weights: {{branch: {json.dumps(g.weight)}}}  # GUESS: per-event weight, multiplied in"]
    out += ["", "split: {train: 0.8, val: 0.1, test: 0.1}"]
    if g.entries < 200:
        out += [f"checks: {{allow: [empty_split]}}   # only {g.entries} entries: val or test may get no event"]
    out += ["shuffle: {seed: 42, shards: 8}", f"output: {{dir: out/{sample}, compression: gzip}}", ""]
    if g.skipped:
        shown = ", ".join(g.skipped[:12]) + (f" ... ({len(g.skipped) - 12} more)" if len(g.skipped) > 12 else "")
        out[4:4] = _comment(f"records, objects or unreadable types, left out: {shown}", 0)
    return "\n".join(out)
