"""Expressions over events (`record: event`): selections, categories and derived variables.

The language is that of `input.selection` (transforms.rows.expressions, uproot's expression language with ROOT's
precedence of `&&`/`||`) with two additions for the per-event lists of a NanoAOD-like ntuple (`Jet_pt`,
`Muon_eta` ...):

* an element by position: `Jet_pt[1]` is the second jet of the event in ntuple order. An event whose list
  is shorter gives NaN, so a comparison with it is false: `Jet_btagDeepB[1] > 0.5` drops events with
  fewer than two jets, as `TTree::Draw` skips such entries. (`!(x > 0.5)` is true for NaN, as in numpy.)
* per-event reductions of a list or of a condition on one: `num(Jet_pt)` (its length), `count(Jet_pt > 30)`
  (how many are true/non-zero), `sum(x)`, `max(x)`, `min(x)` (NaN for an empty list), `any(x)`, `all(x)`.

Nothing else is evaluated; the whitelisted grammar of transforms.rows.expressions applies unchanged.
"""
from __future__ import annotations

import re

import awkward as ak
import numpy as np

from root2hdf5.transforms.core.batch import Jagged
from root2hdf5.transforms.core.errors import ConfigError, InputError
from root2hdf5.transforms.rows.expressions import FUNCTIONS, Expression, check_index, protect_names

# a branch (a name, a dotted name or a quoted name's placeholder) followed by an index
_INDEXED = re.compile(r"(?<![\w.])([A-Za-z_][\w.]*)\s*\[\s*(\d+)\s*\]")


def _per_event(name: str, reduce):
    def reduction(values):
        if not isinstance(values, ak.Array) or values.ndim != 2:
            raise InputError(f"{name}() reduces a list per event (a branch such as Jet_pt, or a condition on "
                             "one such as Jet_pt > 30); its argument holds one value per event")
        return np.asarray(ak.to_numpy(reduce(values)))

    return reduction


REDUCTIONS = {
    "num": _per_event("num", lambda x: ak.num(x, axis=1)),
    "count": _per_event("count", lambda x: ak.count_nonzero(x, axis=1)),
    "sum": _per_event("sum", lambda x: ak.sum(x, axis=1)),
    "max": _per_event("max", lambda x: ak.fill_none(ak.max(x, axis=1), np.nan)),
    "min": _per_event("min", lambda x: ak.fill_none(ak.min(x, axis=1), np.nan)),
    "any": _per_event("any", lambda x: ak.any(x, axis=1)),
    "all": _per_event("all", lambda x: ak.all(x, axis=1)),
}
EVENT_FUNCTIONS = {**FUNCTIONS, **REDUCTIONS}


def alias(position: int) -> str:
    """The expression-language name standing for the position-th `branch[index]` (subscripts are not in the
    grammar)."""
    return f"__at{position}__"


def element_at(column, index: int, default: float, scale: float = 1.0, what: str = "") -> np.ndarray:
    """float64 per event: the list's element `index` (times `scale`), or `default` where the list is shorter."""
    if not isinstance(column, Jagged):
        raise InputError(f"{what}: [{index}] indexes a list, but the branch holds one value per event")
    has = column.counts > index
    out = np.full(len(column), default, np.float64)
    values = column.content[column.starts[has] + index]
    out[has] = values * scale if scale != 1 else values
    return out


def as_value(column):
    """A branch as the expression sees it: numpy for one value per event, awkward for lists."""
    return column.to_awkward() if isinstance(column, Jagged) else column


class EventExpression:
    """A compiled event-level expression.

    symbols: the branches it reads; indexed: the branches it indexes (they must hold lists);
    evaluate(branches) -> one value per event (numpy).
    """

    def __init__(self, text: str, what: str = "expression"):
        self.text = text
        self.what = what
        self._aliases: dict[str, tuple[str, int]] = {}
        protected, quoted = protect_names(text, what)  # `Jet/Jet.PT`[0] indexes the quoted branch
        seen: dict[tuple[str, int], str] = {}

        def rewrite(match):
            key = (quoted.get(match.group(1), match.group(1)), check_index(match.group(2), what, text))
            if key not in seen:
                seen[key] = alias(len(seen))
                self._aliases[seen[key]] = key
            return seen[key]

        rewritten = _INDEXED.sub(rewrite, protected)
        if "[" in rewritten or "]" in rewritten:
            raise ConfigError(f"{what} {text!r}: an index must be a non-negative integer after a branch name, "
                              "as in Jet_pt[0]")
        try:
            self._expression = Expression(rewritten, what, EVENT_FUNCTIONS)
        except ConfigError as err:  # name the expression as the user wrote it
            raise ConfigError(str(err).replace(repr(rewritten), repr(text))) from None
        self._quoted = quoted
        names = [self._aliases[s][0] if s in self._aliases else quoted.get(s, s) for s in self._expression.symbols]
        self.symbols = list(dict.fromkeys(names))
        self.indexed = list(dict.fromkeys(b for b, _ in self._aliases.values()))

    def evaluate(self, branches) -> np.ndarray:
        namespace = {}
        for symbol in self._expression.symbols:
            if symbol in self._aliases:
                branch, index = self._aliases[symbol]
                namespace[symbol] = element_at(branches[branch], index, np.nan, what=f"{self.what} {self.text!r}")
            else:
                namespace[symbol] = as_value(branches[self._quoted.get(symbol, symbol)])
        try:
            result = self._expression.evaluate(namespace)
        except InputError as err:
            raise InputError(f"{self.what} {self.text!r}: {err}") from None
        except (ValueError, TypeError) as err:  # e.g. lists of different lengths combined element-wise
            raise InputError(f"{self.what} {self.text!r} cannot be evaluated: {err}") from None
        if isinstance(result, ak.Array):
            if result.ndim != 1:
                raise InputError(f"{self.what} {self.text!r} gives a list per event, not one value; index the list "
                                 "(Jet_pt[0]) or reduce it (count(Jet_pt > 30) >= 4, any(...), sum(...))")
            result = ak.to_numpy(result)
        return np.asarray(result)

    def __repr__(self):
        return f"EventExpression({self.text!r})"
