"""The run's accounting: what happened to every jet read, per sample and per file, checked exactly.

Counts come from the data itself (each range's `RangeStats`, each written shard's counts), not from
metrics, so they are exact even when a runner retries bundles. For every file:

    jets = not_leading + nonfinite + cut + uncategorized + (sent to train + val + test)   every jet read
    sent to a split = written to it + dropped by limits + skipped                          the shuffle lost nothing

With `record: event` a row is an event, and `events = nonfinite + cut + unmatched + uncategorized + sent`,
`unmatched` being the events a friend tree had no partner for (dropped); `unmatched_filled` counts those
kept with fill values.

With `input.on_error: skip` a file counts whole or not at all: the rows read from its good ranges are
`skipped` (dropped when the shards are written), and the entries of the ranges that failed are `unread`,
counted in `events` (an entry of `layout: jets` is a jet: in `jets`) and, when they are rows, in `skipped`.
So, per file, sample and in total, exactly:

    jets (events with record: event) = not_leading + nonfinite + cut + [unmatched] + uncategorized + limited
                                       + skipped + written
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field

from root2hdf5.transforms.core.errors import InputError, Root2Hdf5Error
from root2hdf5.transforms.core.records import ShardResult

COUNTS = ("events", "jets", "not_leading", "nonfinite", "cut", "uncategorized")
EVENT_COUNTS = ("events", "nonfinite", "cut", "unmatched", "uncategorized")


@dataclass
class _Tally:
    """The run's counts gathered per (sample, file): what was read, and per split what was written,
    dropped by limits and dropped because the file was skipped; the entries of ranges that failed (never
    read) per what an entry is; per (sample, split) the jets per label."""

    read: dict = field(default_factory=lambda: defaultdict(Counter))
    skipped: dict = field(default_factory=dict)
    unread: dict = field(default_factory=lambda: defaultdict(Counter))
    written: dict = field(default_factory=lambda: defaultdict(Counter))
    limited: dict = field(default_factory=lambda: defaultdict(Counter))
    dropped: dict = field(default_factory=lambda: defaultdict(Counter))
    by_label: dict = field(default_factory=lambda: defaultdict(Counter))

    @classmethod
    def of(cls, stats, shards: list[ShardResult], skipped) -> "_Tally":
        tally = cls()
        for rs in stats:
            tally.read[(rs.sample, rs.file)].update({k: v for k, v in rs.counts.items() if k != "sum_weights"})
        for record in skipped:  # one record per range that failed
            tally.skipped.setdefault((record.sample, record.file), record)
            tally.unread[(record.sample, record.file)][record.entry] += record.entries
        for shard in shards:
            for sample, file, label, n_written, n_limited, n_dropped in shard.rows:
                tally.written[(sample, file)][shard.split] += n_written
                tally.limited[(sample, file)][shard.split] += n_limited
                tally.dropped[(sample, file)][shard.split] += n_dropped
                tally.by_label[(sample, shard.split)][label] += n_written
        return tally


def build_report(stats, shards: list[ShardResult], files, sample_names: list[str], split_names: list[str],
                 selection: str | None, plan=None, skipped=(), record: str = "jet", friends=()) -> dict:
    """Summarise and check; returns the report as a JSON-ready dict. Raises if anything does not add up.

    stats: the RangeStats of every range; files: the InputFile list; plan: the WritePlan, if any;
    skipped: SkippedFile records (`input.on_error: skip`); record: 'jet' or 'event' (what a row is);
    friends: the names of the friend trees joined (record: event).
    """
    counted = EVENT_COUNTS if record == "event" else COUNTS
    rows = "events" if record == "event" else "jets"  # the count every row read is part of
    tally = _Tally.of(stats, shards, skipped)
    report_files = []
    samples = {name: Counter() for name in sample_names}
    for spec in files:
        name = sample_names[spec.sample]
        entry, sample_counts = _file_entry(spec, name, tally, counted, rows, split_names, friends)
        report_files.append(entry)
        samples[name].update(sample_counts)
    report_samples = {name: _sample_entry(index, name, samples[name], tally, counted, rows, split_names, selection,
                                          plan, friends)
                      for index, name in enumerate(sample_names)}
    split_totals = {split: _split_entry(split, shards, tally, len(sample_names), rows) for split in split_names}
    totals = Counter()
    for entry in report_samples.values():
        totals.update({k: entry[k] for k in (*counted, "limited")})
        for extra in ("unmatched_filled", "skipped", "unread"):
            if entry.get(extra):
                totals[extra] += entry[extra]
    totals["written"] = sum(v[rows] for v in split_totals.values())
    if tally.skipped:
        totals.setdefault("skipped", 0)  # a column of the table whenever a file was skipped
    # a resampled split holds jets drawn (with repeats) from those sent to it: those are what balance
    before_draw = sum(v.get("resampled_from", v[rows]) for v in split_totals.values())
    for where, entry in [*((f["path"], f) for f in report_files), *report_samples.items(),
                         ("total", {**totals, "written": before_draw})]:
        _check_balance(where, entry, counted, rows)
    report = {"samples": report_samples, "splits": split_totals, "total": dict(totals), "files": report_files}
    if record == "event":
        report["record"] = "event"
    if tally.skipped:
        report["skipped"] = [{"path": r.path, "reason": r.reason} for _, r in sorted(tally.skipped.items())]
    return report


def _file_entry(spec, sample: str, tally: _Tally, counted, rows: str, split_names: list[str],
                friends) -> tuple[dict, dict]:
    """One file's report entry, after checking that every row it read is accounted for; and what it adds
    to its sample's counts."""
    key = (spec.sample, spec.file)
    if key not in tally.read and key not in tally.skipped:
        raise Root2Hdf5Error(f"accounting: no jets were accounted for file {spec.path}; it was not read")
    counts, written, limited, dropped = tally.read[key], tally.written[key], tally.limited[key], tally.dropped[key]
    removed = [k for k in counted if k not in ("events", "jets")]
    sent = {s: counts[s] for s in split_names}
    lost = counts[rows] - sum(counts[k] for k in removed) - sum(sent.values())
    if lost:
        raise Root2Hdf5Error(f"accounting: {spec.path} read {counts[rows]} {rows} but {lost} are neither "
                             f"written nor counted as {', '.join(k.replace('_', ' ') for k in removed)}")
    for split in split_names:
        if sent[split] != written[split] + limited[split] + dropped[split]:
            raise Root2Hdf5Error(
                f"accounting: {spec.path} sent {sent[split]} {rows} to {split} but {written[split]} were "
                f"written and {limited[split]} dropped by limits; the shuffle lost or duplicated {rows}")
    entry = {"sample": sample, "file": spec.file, "path": spec.path, **{k: counts[k] for k in counted},
             "limited": sum(limited.values()), "written": {s: written[s] for s in split_names}}
    for extra in _EXTRAS:
        if counts[extra]:
            entry[extra] = counts[extra]
    outside = _images_outside(counts)
    if outside:
        entry["images_outside"] = outside
    if friends:
        entry["friends"] = _per_friend(counts, friends)
    unread = tally.unread[key]
    entry.update({k: counts[k] + unread[k] for k in counted})  # the entries never read are events (or jets)
    if key in tally.skipped:
        entry.update(skipped=sum(dropped.values()) + unread[rows], skip_reason=tally.skipped[key].reason)
        if sum(unread.values()):
            entry["unread"] = sum(unread.values())
    to_sample = Counter({k: entry[k] for k in counted}, files=1, limited=entry["limited"],
                        selected=sum(sent.values()), skipped_files=int(key in tally.skipped),
                        skipped=entry.get("skipped", 0), unread=entry.get("unread", 0),
                        **{f"written_{s}": written[s] for s in split_names},
                        **{k: v for k, v in counts.items() if k.startswith(("unmatched", "image_outside/"))
                           and k not in counted})
    return entry, to_sample


_EXTRAS = ("replaced", "no_constituents", "unmatched_filled", "variation_dropped")


def _check_balance(where: str, entry: dict, counted, rows: str) -> None:
    """Every row is in exactly one outcome: the rows read (and those never read, when skipped) add up."""
    written = entry["written"] if isinstance(entry["written"], int) else sum(entry["written"].values())
    outcomes = sum(entry.get(k, 0) for k in counted if k not in ("events", "jets"))
    outcomes += entry.get("limited", 0) + entry.get("skipped", 0) + written
    if outcomes != entry.get(rows, 0):
        raise Root2Hdf5Error(f"accounting: {where} counts {entry.get(rows, 0)} {rows} but its outcomes (removed, "
                             f"limited, skipped, written) add up to {outcomes}")


def _sample_entry(index: int, name: str, c: Counter, tally: _Tally, counted, rows: str, split_names: list[str],
                  selection: str | None, plan, friends) -> dict:
    if c["files"] == c["skipped_files"]:
        raise InputError(f"sample {name!r}: all its {c['files']} file(s) were skipped as unreadable; see the "
                         "warnings above")
    if c["selected"] == 0:
        raise InputError(f"sample {name!r}: no {rows} passed" +
                         (f" the selection {selection!r}" if selection else f" (the input has no {rows})") +
                         "; check the selection's units and the branches")
    entry = {"files": c["files"], **{k: c[k] for k in counted}, "limited": c["limited"],
             "written": {s: c[f"written_{s}"] for s in split_names},
             "labels": {s: {str(label): n for label, n in sorted(tally.by_label[(index, s)].items())}
                        for s in split_names}}
    if c["unmatched_filled"]:
        entry["unmatched_filled"] = c["unmatched_filled"]
    if _images_outside(c):
        entry["images_outside"] = _images_outside(c)
    if friends:
        entry["friends"] = _per_friend(c, friends)
    if c["skipped_files"]:
        entry.update(skipped_files=c["skipped_files"], skipped=c["skipped"])
        if c["unread"]:
            entry["unread"] = c["unread"]
    if plan is not None and plan.sum_of_weights:
        entry["sum_of_weights"] = plan.sum_of_weights[index]
        entry["weight_factor"] = plan.factors[index]
    return entry


def _split_entry(split: str, shards: list[ShardResult], tally: _Tally, n_samples: int, rows: str) -> dict:
    labels = Counter()
    for index in range(n_samples):
        labels.update(tally.by_label[(index, split)])
    entry = {rows: sum(s.num_jets for s in shards if s.split == split),
             "shards": sum(1 for s in shards if s.split == split),
             "labels": {str(label): n for label, n in sorted(labels.items())}}
    resampled = [s for s in shards if s.split == split and s.resampled_from is not None]
    if resampled:  # the labels above count the jets before the draw
        entry["resampled_from"] = sum(s.resampled_from for s in resampled)
    return entry


def _images_outside(counts) -> dict[str, int]:
    """Image name -> valid constituents outside its range (clipped for pixels, dropped for dense images)."""
    return {k.split("/", 1)[1]: v for k, v in sorted(counts.items()) if k.startswith("image_outside/") and v}


def _per_friend(counts, friends) -> dict:
    return {name: {"unmatched": counts[f"unmatched/{name}"], "unmatched_filled": counts[f"unmatched_filled/{name}"]}
            for name in friends}


def format_report(report: dict) -> str:
    """A small table for the terminal; columns that are zero everywhere are left out."""
    splits = list(report["splits"])
    events = report.get("record") == "event"
    fixed = ["events", "cut"] if events else ["events", "jets", "not_leading", "cut"]
    rows_key = "events" if events else "jets"
    optional = [k for k in ("nonfinite", "unmatched", "unmatched_filled", "uncategorized", "limited", "skipped")
                if k in report["total"] and (report["total"][k] or k == "skipped")]
    header = ["sample", "files", *(k.replace("_", " ") for k in fixed), *(k.replace("_", " ") for k in optional),
              *splits]
    rows = [[name, s["files"], *(s[k] for k in fixed), *(s.get(k, 0) for k in optional),
             *(s["written"][k] for k in splits)] for name, s in report["samples"].items()]
    t = report["total"]
    rows.append(["total", sum(r[1] for r in rows), *(t[k] for k in fixed), *(t[k] for k in optional),
                 *(report["splits"][k].get("resampled_from", report["splits"][k][rows_key]) for k in splits)])
    cell = lambda v: f"{v:,}" if isinstance(v, int) else str(v)
    widths = [max(len(cell(row[i])) for row in [header, *rows]) for i in range(len(header))]
    fmt = lambda row: "  ".join(cell(v).rjust(w) if i else cell(v).ljust(w)
                                for i, (v, w) in enumerate(zip(row, widths)))
    lines = [fmt(header), *(fmt(r) for r in rows)]
    for skipped in report.get("skipped", []):
        lines.append(f"skipped {skipped['path']}: {skipped['reason']}")
    for split, info in report["splits"].items():
        if "resampled_from" in info:
            lines.append(f"{split}: resampled to {info[rows_key]:,} {rows_key} drawn from {info['resampled_from']:,}")
    labels = {s: report["splits"][s]["labels"] for s in splits if report["splits"][s]["labels"]}
    if any(len(v) > 1 for v in labels.values()):
        lines.append("labels: " + "; ".join(f"{s} " + ", ".join(f"{l}: {n:,}" for l, n in v.items())
                                            for s, v in labels.items()))
    return "\n".join(lines)
