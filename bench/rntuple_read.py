"""The read of a run against uproot reading the same fields alone, on one file (RNTuples are the case where it
matters: uproot's field tree costs seconds on a fresh handle of a ~1300-field NanoAOD).

    python bench/rntuple_read.py pipeline FILE [--tree Events] [--fields PREFIX,...] [--step N]
    python bench/rntuple_read.py uproot FILE ...          (or uproot-primed)
    python bench/rntuple_read.py make OUT.root            (a 20,000-event, 947-field NanoAOD RNTuple from the
                                                           NanoAOD TTree in ../shared/data)

`pipeline` does what the workers of a run do, with the run's own DoFns: SplitIntoRanges opens the file,
checks the branches and plans the ranges, ReadRange reads each range. `uproot` opens the file and reads the
same fields in the same ranges; `uproot-primed` too, after the one-pass field priming the pipeline uses
(transforms/read/rntuple.py), i.e. uproot at its fastest. Each prints {"seconds": ...} for the read alone
(imports excluded) and the entries read. The fields: every top-level field whose name starts with one of
the prefixes (default: the NanoAOD jets, Jet_ and FatJet_).
"""
from __future__ import annotations

import argparse
import json
import time


def fields_of(path: str, tree: str, prefixes: list[str]) -> list[str]:
    import uproot

    with uproot.open(path) as handle:
        names = handle[tree].keys(recursive=False)  # top-level names only: cheap on a fresh RNTuple
    return [n for n in names if n.startswith(tuple(prefixes))]


def pipeline(path: str, tree: str, fields: list[str], step: int) -> int:
    from root2hdf5.transforms.read.ranges import ReadRange, SplitIntoRanges
    from root2hdf5.transforms.read.sources import InputFile
    from root2hdf5.transforms.read.trees import BranchPlan

    plan = BranchPlan("events", tuple(fields))
    ranges = list(SplitIntoRanges(plan, step).process(InputFile(0, 0, path, tree)))
    read = ReadRange(plan)
    read.setup()
    entries = sum(len(chunk.arrays) for r in ranges for chunk in read.process(r))
    read.teardown()
    return entries


def bare(path: str, tree: str, fields: list[str], step: int, primed: bool = False) -> int:
    import uproot

    entries = 0
    with uproot.open(path) as handle:
        t = handle[tree]
        if primed:
            from root2hdf5.transforms.read.rntuple import prime_fields

            prime_fields(t)
        for start in range(0, t.num_entries, step):
            entries += len(t.arrays(filter_name=fields, entry_start=start,
                                    entry_stop=min(t.num_entries, start + step))[fields])
    return entries


def make(out: str, source: str, copies: int = 100) -> None:
    """The NanoAOD TTree's 200 events `copies` times over, written as an RNTuple by uproot (4 clusters)."""
    import awkward as ak
    import uproot

    events = uproot.open(source)["Events"].arrays()
    part = ak.concatenate([events] * (copies // 4))
    with uproot.recreate(out) as handle:
        handle["Events"] = part
        for _ in range(3):
            handle["Events"].extend(part)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["pipeline", "uproot", "uproot-primed", "make"])
    parser.add_argument("file")
    parser.add_argument("--tree", default="Events")
    parser.add_argument("--fields", default="Jet_,FatJet_", help="comma-separated name prefixes")
    parser.add_argument("--step", type=int, default=50_000)
    parser.add_argument("--source", default="../shared/data/nanoAOD_2015_CMS_Open_Data_ttbar.root",
                        help="make: the NanoAOD TTree to copy")
    args = parser.parse_args()
    if args.mode == "make":
        make(args.file, args.source)
        return
    # every mode imports the same modules, so that whole-process timings compare the reads too
    import uproot  # noqa: F401

    import root2hdf5.transforms.read.ranges  # noqa: F401
    fields = fields_of(args.file, args.tree, args.fields.split(","))
    begin = time.perf_counter()
    if args.mode == "pipeline":
        entries = pipeline(args.file, args.tree, fields, args.step)
    else:
        entries = bare(args.file, args.tree, fields, args.step, primed=args.mode == "uproot-primed")
    print(json.dumps({"mode": args.mode, "fields": len(fields), "entries": entries,
                      "seconds": round(time.perf_counter() - begin, 4)}))


if __name__ == "__main__":
    main()
