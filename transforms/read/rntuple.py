"""RNTuple handles made cheap to use: uproot's field tree built in one pass instead of once per field.

uproot 5.7's `RField.fields` scans every field record for each field it is asked about, so the first
`keys()` or `arrays()` on a fresh handle of a ~1300-field NanoAOD costs seconds (scikit-hep/uproot5#1637).
`prime_fields` fills the same lists in one pass over the records, exactly as the property computes them
(children in record order, anonymous fields replaced by their own children). It sets a private attribute,
so it is guarded: if uproot's internals change shape it does nothing, and a test compares primed and
unprimed `keys()` and arrays.
"""
from __future__ import annotations

from collections import defaultdict


def prime_fields(rntuple) -> bool:
    """Fill every field's child list of an uproot RNTuple in one pass; True if it did."""
    try:
        ntuple = rntuple.ntuple
        records, fields = ntuple.field_records, ntuple.all_fields
        if not fields or not hasattr(fields[0], "_fields") or not hasattr(fields[0], "is_anonymous"):
            return False
        children = defaultdict(list)
        for i, record in enumerate(records):
            if record.parent_field_id != i:  # a top-level field is its own parent
                children[record.parent_field_id].append(i)
        done: dict[int, list] = {}

        def kids(fid: int) -> list:
            if fid not in done:
                out = []
                for child in children[fid]:
                    if fields[child].is_anonymous:
                        out.extend(kids(child))
                    else:
                        out.append(fields[child])
                done[fid] = out
            return done[fid]

        for fid, field in enumerate(fields):
            if field._fields is None:
                field._fields = kids(fid)
        return True
    except Exception:  # an optimisation only: uproot computes the same lists itself
        return False


def is_rntuple(tree) -> bool:
    import uproot

    return isinstance(tree, uproot.behaviors.RNTuple.RNTuple)
