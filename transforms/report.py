"""The run's accounting: what happened to every jet read, per sample and per file, checked exactly.

Counts come from the data itself (each range's `stats`, each written shard's jet counts), not from
metrics, so they are exact even when a runner retries bundles. For every sample:

    jets = not_leading + cut + train + val + test            (every jet read is accounted for)
    jets sent to a split == jets written to that split       (the shuffle lost or duplicated nothing)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from transforms.errors import InputError, Root2Hdf5Error

COUNTS = ("events", "jets", "not_leading", "cut")


@dataclass
class ShardResult:
    """One written shard: where its temporary file is and how many jets of each sample it holds."""

    split: str
    shard: int
    path: str
    num_jets: int
    per_sample: list[int] = field(default_factory=list)


def build_report(stats, shards: list[ShardResult], files, sample_names: list[str],
                 split_names: list[str], selection: str | None) -> dict:
    """Summarise, check, and return the report as a JSON-ready dict. Raises if anything does not add up.

    stats: iterable of ((sample, file), counts) from the per-range accounting.
    files: the InputFile list of the run.
    """
    per_file: dict[tuple[int, int], Counter] = {}
    for (sample, file), counts in stats:
        per_file.setdefault((sample, file), Counter()).update(counts)
    written = {name: {split: 0 for split in split_names} for name in sample_names}
    for shard in shards:
        for sample, count in enumerate(shard.per_sample):
            written[sample_names[sample]][shard.split] += count

    report_files, samples = [], {}
    for spec in files:
        counts = per_file.get((spec.sample, spec.file))
        if counts is None:
            raise Root2Hdf5Error(f"accounting: no jets were accounted for file {spec.path}; it was not read")
        report_files.append({"sample": sample_names[spec.sample], "file": spec.file, "path": spec.path,
                             **{k: counts[k] for k in (*COUNTS, *split_names)}})
        total = samples.setdefault(sample_names[spec.sample], Counter(files=0))
        total.update(counts)
        total["files"] += 1

    report_samples = {}
    for name in sample_names:
        counts = samples.get(name, Counter())
        sent = {split: counts[split] for split in split_names}
        if counts["jets"] != counts["not_leading"] + counts["cut"] + sum(sent.values()):
            raise Root2Hdf5Error(f"accounting: sample {name!r} read {counts['jets']} jets but not_leading + cut + "
                                 f"split = {counts['not_leading']} + {counts['cut']} + {sum(sent.values())}")
        if sent != written[name]:
            raise Root2Hdf5Error(f"accounting: sample {name!r} sent {sent} jets to the splits but {written[name]} "
                                 "were written; the shuffle lost or duplicated jets")
        if sum(sent.values()) == 0:
            raise InputError(f"sample {name!r}: no jets passed" +
                             (f" the selection {selection!r}" if selection else " (the input has no jets)") +
                             "; check the selection's units and the branches")
        report_samples[name] = {"files": counts["files"], **{k: counts[k] for k in COUNTS},
                                "written": written[name]}

    split_totals = {split: {"jets": sum(s.num_jets for s in shards if s.split == split),
                            "shards": sum(1 for s in shards if s.split == split)} for split in split_names}
    totals = Counter()
    for entry in report_samples.values():
        totals.update({k: entry[k] for k in COUNTS})
    totals["written"] = sum(v["jets"] for v in split_totals.values())
    return {"samples": report_samples, "splits": split_totals, "total": dict(totals), "files": report_files}


def format_report(report: dict) -> str:
    """A small table for the terminal."""
    splits = list(report["splits"])
    header = ["sample", "files", "events", "jets", "not leading", "cut", *splits]
    rows = [[name, s["files"], s["events"], s["jets"], s["not_leading"], s["cut"],
             *(s["written"][k] for k in splits)] for name, s in report["samples"].items()]
    t = report["total"]
    rows.append(["total", sum(r[1] for r in rows), t["events"], t["jets"], t["not_leading"], t["cut"],
                 *(report["splits"][k]["jets"] for k in splits)])
    widths = [max(len(f"{row[i]:,}" if isinstance(row[i], int) else str(row[i])) for row in [header, *rows])
              for i in range(len(header))]
    fmt = lambda row: "  ".join((f"{v:,}" if isinstance(v, int) else str(v)).rjust(w) if i else str(v).ljust(w)
                                for i, (v, w) in enumerate(zip(row, widths)))
    return "\n".join([fmt(header), *(fmt(r) for r in rows)])
