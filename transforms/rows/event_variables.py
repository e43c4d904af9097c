"""The variables of an event-level training set (`record: event`): one float column each, the `events` features.

A variable is written in `events.variables` as

* `MET_pt`: a branch with one value per event (any name in backticks: `` `Info/evtNum` ``);
* `Jet_pt[1]`: element 1 of a per-event list, in ntuple order; events whose list is shorter get the
  variable's default (`events.defaults[name]`, else `events.default`);
* `HT = sum(Jet_pt)`: a named event expression (transforms.rows.event_expressions); where it is NaN (an index past
  the end of a list, the max of an empty list ...) the event gets the default.

`preprocess.unit_scale` multiplies the listed `preprocess.scaled_branches` variables here, before the
defaults are filled in, so a default is written exactly as configured.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import apache_beam as beam
import numpy as np

from root2hdf5.transforms.core.batch import Jagged, RowBatch
from root2hdf5.transforms.core.errors import ConfigError, InputError
from root2hdf5.transforms.rows.event_expressions import EventExpression, element_at
from root2hdf5.transforms.rows.expressions import check_index, unquote

# a branch: a name, a dotted name, or any name quoted as `name` / get("name"); then an optional index
_PLAIN = re.compile(r"^\s*(`[^`]+`|get\(\s*(['\"]).*?\2\s*\)|[A-Za-z_][\w.]*)\s*(?:\[\s*(\d+)\s*\])?\s*$")
_NAMED = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*=(?!=)\s*(.+?)\s*$", re.S)


@dataclass(frozen=True)
class Variable:
    """One output feature: a branch, an element of a list branch, or a named expression."""

    name: str
    branch: str | None = None
    index: int | None = None
    expression: str | None = None
    default: float = -999.0
    scaled: bool = False

    def branch_depths(self) -> list[tuple[str, tuple[int, ...]]]:
        """(branch, allowed depths) of what the variable reads: 1 = one value per event, 2 = a list."""
        if self.expression is not None:
            e = EventExpression(self.expression, f"events.variables {self.name!r}")
            return [(b, (2,) if b in e.indexed else (1, 2)) for b in e.symbols]
        return [(self.branch, (1,) if self.index is None else (2,))]


def parse_variable(text: str, where: str = "events.variables") -> Variable:
    """`Branch`, `Branch[k]` or `name = expression` -> a Variable (default and scaling set later)."""
    plain = _PLAIN.match(text)
    if plain:
        branch, index = unquote(plain.group(1)), plain.group(3)
        if index is None:
            return Variable(branch, branch)
        index = check_index(index, where, text)
        return Variable(f"{branch}[{index}]", branch, index)
    named = _NAMED.match(text)
    if named:
        name, expression = named.groups()
        EventExpression(expression, f"{where} {name!r}")  # fail early on syntax
        return Variable(name, expression=expression)
    raise ConfigError(f"{where}: {text!r} is not a variable; write a branch (MET_pt), an element of a list "
                      "(Jet_pt[0]) or a named expression (HT = sum(Jet_pt))")


def compute(variable: Variable, branches: dict, scale: float, expression: EventExpression | None = None,
            path: str = "") -> np.ndarray:
    """The variable's float64 value per event."""
    factor = scale if variable.scaled else 1.0
    where = f"{path}: events.variables {variable.name!r}"
    if variable.expression is not None:
        try:
            values = (expression or EventExpression(variable.expression, where)).evaluate(branches)
        except InputError as err:
            raise InputError(f"{path}: {err}") from None
        values = np.asarray(values, np.float64)
        if factor != 1:
            values = values * factor
        return np.where(np.isnan(values), variable.default, values)
    column = branches[variable.branch]
    if variable.index is not None:
        return element_at(column, variable.index, variable.default, factor, where)
    if isinstance(column, Jagged):
        raise InputError(f"{where}: branch {variable.branch!r} holds a list per event; give an element "
                         f"({variable.branch}[0]) or keep the list in events.collection")
    values = np.asarray(column, np.float64)
    return values * factor if factor != 1 else values


@beam.typehints.with_output_types(RowBatch)
class EventVariables(beam.DoFn):
    """RowBatch of events -> the same with one float64 branch per variable, named like the variable.

    Args:
        variables: the Variables, in output order.
        scale: `preprocess.unit_scale`, applied to the variables marked `scaled`.
    """

    def __init__(self, variables: tuple[Variable, ...], scale: float = 1.0):
        self.variables = tuple(variables)
        self.scale = scale
        self._expressions = {}

    def setup(self):
        self._expressions = {v.name: EventExpression(v.expression, f"events.variables {v.name!r}")
                             for v in self.variables if v.expression is not None}

    def process(self, batch: RowBatch):
        # computed first, stored after: a variable named like a branch must not change what the others read
        values = {v.name: compute(v, batch.branches, self.scale, self._expressions.get(v.name), batch.path)
                  for v in self.variables}
        batch.branches.update(values)
        yield batch
