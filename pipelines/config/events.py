"""Resolution of `record: event`: the variables, the padded collection and the friend trees of an event row."""
from __future__ import annotations

from root2hdf5.pipelines.config.schema import Config
from root2hdf5.transforms.core.errors import ConfigError
from root2hdf5.transforms.core.names import NAME, PER_ROW
from root2hdf5.transforms.physics import kinematics
from root2hdf5.transforms.rows.event_expressions import EventExpression
from root2hdf5.transforms.rows.event_variables import Variable, parse_variable


def resolve(cfg: Config) -> list[str]:
    """Checks of record: event; returns the names preprocessing may scale (variables, collection branches)."""
    inp, ev = cfg.input, cfg.events
    if ev is None or not ev.variables:
        raise ConfigError("events.variables: record: event needs at least one variable: a branch (MET_pt), an "
                          "element of a list (Jet_pt[0]) or a named expression (HT = sum(Jet_pt))")
    if inp.layout != "events":
        raise ConfigError("input.layout: record: event reads one entry per event; use layout events")
    for key in ("jet_branches", "constituent_branches", "event_branches"):
        if getattr(inp, key):
            raise ConfigError(f"input.{key}: not used with record: event; list the values in events.variables "
                              "(MET_pt, Jet_pt[0], HT = sum(Jet_pt)) and keep a list padded with events.collection")
    if cfg.jet_collections:
        raise ConfigError("jet_collections: stacks collections per jet (record: jet); with record: event keep a "
                          "collection padded with events.collection")
    names = _variables(cfg)
    _collection(cfg)
    if ev.join_groups < 1:
        raise ConfigError("events.join_groups must be at least 1")
    from_friends = _friends(cfg)
    _main_tree_only(cfg, from_friends)
    coll = ev.collection
    reserved = set(coll.branches if coll else ()) | set(from_friends)
    for v in event_variables(cfg):
        if v.expression is not None and v.name in reserved:
            raise ConfigError(f"events.variables: {v.name!r} names a branch that is read; choose another name")
    return names + list(coll.branches if coll else ())


def refuse_event_keys(cfg: Config) -> None:
    """record: jet: the keys that only describe event rows are refused."""
    if cfg.events is not None:
        raise ConfigError("events: these keys describe one row per event; set record: event to use them")
    for s in cfg.samples:
        if s.friends:
            raise ConfigError(f"samples.{s.name}.friends: friend trees are joined per event; set record: event")


def event_variables(cfg: Config) -> tuple[Variable, ...]:
    """The parsed variables with their defaults and whether unit_scale applies to them."""
    ev, scaled = cfg.events, set(cfg.preprocess.scaled_branches or ())
    variables = []
    for i, text in enumerate(ev.variables):
        v = parse_variable(text, f"events.variables[{i}]")
        variables.append(Variable(v.name, v.branch, v.index, v.expression, ev.defaults.get(v.name, ev.default),
                                  v.name in scaled))
    return tuple(variables)


def public_names(cfg: Config) -> dict[str, str]:
    """Dataset names on disk that differ from the pipeline's column names: with record: event the feature
    matrix `jets` is written as `events`, and the padded collection (`constituents`) under its name."""
    if cfg.record != "event":
        return {}
    names = {"jets": "events"}
    if cfg.events.collection is not None:
        names["constituents"] = cfg.events.collection.name
    return names


def friend_branches(cfg: Config) -> dict[str, str]:
    """Branch -> the friend it comes from."""
    return {b: f.name for f in (cfg.events.friends if cfg.events else ()) for b in f.branches}


def _variables(cfg: Config) -> list[str]:
    ev = cfg.events
    names = [v.name for v in event_variables(cfg)]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"events.variables: {name!r} is listed twice")
    unknown = [k for k in ev.defaults if k not in names]
    if unknown:
        raise ConfigError(f"events.defaults: {unknown} are not variables (variables: {names})")
    return names


def _collection(cfg: Config) -> None:
    coll = cfg.events.collection
    if coll is None:
        return
    if not coll.branches:
        raise ConfigError("events.collection.branches: give the list branches to keep (e.g. [Jet_pt, Jet_eta])")
    for b in set(coll.branches):
        if coll.branches.count(b) > 1:
            raise ConfigError(f"events.collection.branches: {b!r} is listed twice")
    if coll.max < 1:
        raise ConfigError("events.collection.max must be at least 1")
    cfg.kinematics.constituents = kinematics.infer_roles(coll.branches, cfg.kinematics.constituents)
    if coll.sort_by is None:
        coll.sort_by = cfg.kinematics.constituents.get("pt", coll.branches[0])
    if coll.sort_by not in coll.branches:
        raise ConfigError(f"events.collection.sort_by: {coll.sort_by!r} is not one of events.collection.branches")
    if not NAME.fullmatch(coll.name) or coll.name in ("events", "mask", *PER_ROW):
        raise ConfigError(f"events.collection.name: {coll.name!r} is not a usable dataset name (the names "
                          "events, mask, labels, weights, event_number and source are taken)")


def _friends(cfg: Config) -> dict[str, str]:
    """Checks of events.friends and samples[].friends; returns branch -> friend."""
    friends = cfg.events.friends
    names = [f.name for f in friends]
    seen: dict[str, str] = {}
    for f in friends:
        where = f"events.friends.{f.name}"
        if not NAME.fullmatch(f.name) or names.count(f.name) > 1:
            raise ConfigError(f"events.friends: name {f.name!r} is used twice or uses characters other than "
                              "letters, digits and _ . + -")
        if not f.keys:
            raise ConfigError(f"{where}.keys: give the key branches of the main tree, e.g. "
                              "[run, luminosityBlock, event]")
        f.friend_keys = f.friend_keys or list(f.keys)
        if len(f.friend_keys) != len(f.keys):
            raise ConfigError(f"{where}.friend_keys: {len(f.friend_keys)} names for {len(f.keys)} keys {f.keys}")
        if not f.branches:
            raise ConfigError(f"{where}.branches: give the friend branches to add to each event")
        clash = [b for b in f.branches if b in f.friend_keys]
        if clash:
            raise ConfigError(f"{where}.branches: {clash} are keys; the keys of the main tree are kept")
        for b in f.branches:
            if b in seen:
                raise ConfigError(f"{where}.branches: {b!r} also comes from friend {seen[b]!r}")
            seen[b] = f.name
    for s in cfg.samples:
        unknown = [k for k in s.friends if k not in names]
        if unknown:
            raise ConfigError(f"samples.{s.name}.friends: {unknown} are not in events.friends ({names})")
        for name in names:
            if not s.friends.get(name):
                raise ConfigError(f"samples.{s.name}.friends.{name}: no files given; every sample needs the friend "
                                  "files holding its events")
    return seen


def _main_tree_only(cfg: Config, from_friends: dict[str, str]) -> None:
    """Selections run before the joins (friend files usually hold only selected events), so they read the
    main tree; so does the event weight."""
    texts = [("input.selection", cfg.input.selection)] + [(f"samples.{s.name}.selection", s.selection)
                                                           for s in cfg.samples]
    for where, text in texts:
        used = [b for b in (EventExpression(text, where).symbols if text else []) if b in from_friends]
        if used:
            raise ConfigError(f"{where}: {used} come from friend trees, which are joined after the selection; "
                              "select on them with categories, or cut on them after conversion")
    if cfg.weights.branch in from_friends:
        raise ConfigError(f"weights.branch: {cfg.weights.branch!r} comes from a friend tree; use a main-tree branch")
