"""What a `record: event` job reads and joins, resolved from the config: the variables, the branches the main
tree must provide (with their depths), and the friend trees (their files, plans and join).

Kept apart from pipelines/convert.py, which assembles the pipeline for both records.
"""
from __future__ import annotations

import dataclasses

import apache_beam as beam

from root2hdf5.pipelines.config import Config
from root2hdf5.transforms.rows.event_expressions import EventExpression
from root2hdf5.transforms.rows.event_variables import Variable, parse_variable
from root2hdf5.transforms.read.finite import SplitBatches
from root2hdf5.transforms.read.friends import FriendRows, FriendSpec, JoinFriend
from root2hdf5.transforms.read.sources import InputFile, expand_files
from root2hdf5.transforms.read.trees import BranchPlan, check_branches, open_tree


def event_variables(cfg: Config) -> tuple[Variable, ...]:
    """record: event: the parsed variables with their defaults and whether unit_scale applies to them."""
    ev, scaled = cfg.events, set(cfg.preprocess.scaled_branches or ())
    variables = []
    for text in ev.variables:
        v = parse_variable(text)
        variables.append(Variable(v.name, v.branch, v.index, v.expression, ev.defaults.get(v.name, ev.default),
                                  v.name in scaled))
    return tuple(variables)


def friend_branches(cfg: Config) -> set[str]:
    return {b for f in (cfg.events.friends if cfg.events else ()) for b in f.branches}


def event_branch_plan(cfg: Config) -> BranchPlan:
    """record: event: what the main tree must provide, each branch with the depths it may have (1: one value
    per event, 2: a list). Friend branches come from the friend files."""
    inp, ev = cfg.input, cfg.events
    items = []

    def expression(text: str | None, what: str):
        if text:
            e = EventExpression(text, what)
            items.extend((b, what, (2,) if b in e.indexed else (1, 2)) for b in e.symbols)

    for v in event_variables(cfg):
        items.extend((b, "variable branch" if v.index is None else "indexed variable branch", depths)
                     for b, depths in v.branch_depths())
    items += [(b, "events.collection branch", (2,)) for b in (ev.collection.branches if ev.collection else ())]
    expression(inp.selection, "branch in input.selection")
    for s in cfg.samples:
        expression(s.selection, "branch in a sample selection")
        for c in s.categories:
            expression(c.selection, "branch in a category selection")
    items += [(b, f"key of friend {f.name!r}", (1,)) for f in ev.friends for b in f.keys]
    if cfg.weights.branch:
        items.append((cfg.weights.branch, "weights.branch", (1,)))
    from_friends = friend_branches(cfg)
    return BranchPlan("events", event_number=inp.event_number,
                      extra=tuple(item for item in items if item[0] not in from_friends))


def friend_plan(friend) -> BranchPlan:
    """The friend tree's keys and branches, one value per entry each."""
    keys = [(b, f"key of friend {friend.name!r}", (1,)) for b in friend.friend_keys]
    return BranchPlan("events", extra=tuple(keys + [(b, f"branch of friend {friend.name!r}", (1,))
                                                    for b in friend.branches]))


def friend_files(cfg: Config, friend) -> list[InputFile]:
    """The friend's files of every sample, indexed within the sample like the main files."""
    samples = [dataclasses.replace(s, files=s.friends[friend.name], tree=friend.tree,
                                   name=f"{s.name} (friend {friend.name})") for s in cfg.samples]
    return [dataclasses.replace(f, sample_name=cfg.samples[f.sample].name) for f in expand_files(samples)]


def friend_spec(cfg: Config, friend, files: list[InputFile]) -> FriendSpec:
    return FriendSpec(friend.name, tuple(friend.keys), tuple(friend.friend_keys), tuple(friend.branches),
                      friend.unmatched, friend.fill_value, cfg.events.join_groups,
                      tuple(tuple(f.path for f in files if f.sample == i) for i in range(len(cfg.samples))),
                      tuple(s.name for s in cfg.samples))


def join_friends(pipeline: beam.Pipeline, cfg: Config, rows):
    """record: event: each friend tree joined to the selected events, one CoGroupByKey per friend."""
    inp = cfg.input
    for friend in cfg.events.friends:
        files = friend_files(cfg, friend)
        friend_rows = pipeline | f"ReadFriend[{friend.name}]" >> FriendRows(
            files, friend_plan(friend), inp.step_size, inp.on_nonfinite, inp.nonfinite_value)
        rows = (rows
                | f"JoinFriend[{friend.name}]" >> JoinFriend(friend_spec(cfg, friend, files), friend_rows)
                | f"SplitJoined[{friend.name}]" >> beam.ParDo(SplitBatches()))
    return rows


def check_friend_inputs(cfg: Config) -> None:
    """Open the first friend file of every sample on the driver and check its tree, keys and branches
    (friend files are never skipped: a missing partner file would silently turn into unmatched events)."""
    for friend in cfg.events.friends:
        plan, files = friend_plan(friend), friend_files(cfg, friend)
        for sample_index in range(len(cfg.samples)):
            first = next(f for f in files if f.sample == sample_index)
            tree = open_tree(first.path, first.tree)
            try:
                check_branches(tree, plan, first.path)
            finally:
                tree.file.close()
