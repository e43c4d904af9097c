"""Accounting: the report adds up, and any loss or duplication is caught."""
import pytest

from root2hdf5.transforms.core.errors import InputError, Root2Hdf5Error
from root2hdf5.transforms.core.records import RangeStats, ShardResult, SkippedFile
from root2hdf5.transforms.read.sources import InputFile
from root2hdf5.transforms.stats import report as report_module
from root2hdf5.transforms.stats.report import build_report, format_report

FILES = [InputFile(0, 0, "a.root", "t"), InputFile(0, 1, "b.root", "t"), InputFile(1, 0, "c.root", "t")]
SPLITS = ["train", "val", "test"]
NAMES = ["sig", "bkg"]


def stats():
    return [RangeStats(0, 0, {"events": 6, "jets": 12, "not_leading": 2, "cut": 1, "train": 6, "val": 2, "test": 1}),
            RangeStats(0, 0, {"events": 4, "jets": 8, "not_leading": 0, "cut": 2, "uncategorized": 1, "train": 4,
                              "val": 1, "test": 0}),
            RangeStats(0, 1, {"events": 5, "jets": 10, "not_leading": 0, "cut": 5, "train": 5, "val": 0, "test": 0}),
            RangeStats(1, 0, {"events": 8, "jets": 8, "not_leading": 0, "cut": 0, "train": 4, "val": 2, "test": 2})]


def shards():
    # rows: (sample, file, label, written, dropped by limits, dropped as unreadable)
    return [ShardResult("train", 0, "x", 12, [(0, 0, 1, 7, 1, 0), (0, 1, 1, 3, 0, 0), (1, 0, 0, 2, 0, 0)]),
            ShardResult("train", 1, "y", 6, [(0, 0, 1, 2, 0, 0), (0, 1, 1, 2, 0, 0), (1, 0, 0, 2, 0, 0)]),
            ShardResult("val", 0, "z", 5, [(0, 0, 1, 3, 0, 0), (1, 0, 0, 2, 0, 0)]),
            ShardResult("test", 0, "w", 3, [(0, 0, 1, 1, 0, 0), (1, 0, 0, 2, 0, 0)])]


def test_report_adds_up():
    report = build_report(stats(), shards(), FILES, NAMES, SPLITS, None)
    assert report["samples"]["sig"] == {
        "files": 2, "events": 15, "jets": 30, "not_leading": 2, "nonfinite": 0, "cut": 8, "uncategorized": 1,
        "limited": 1,
        "written": {"train": 14, "val": 3, "test": 1},
        "labels": {"train": {"1": 14}, "val": {"1": 3}, "test": {"1": 1}}}
    assert report["total"] == {"events": 23, "jets": 38, "not_leading": 2, "nonfinite": 0, "cut": 8,
                               "uncategorized": 1, "limited": 1, "written": 26}
    assert report["splits"]["train"] == {"jets": 18, "shards": 2, "labels": {"0": 4, "1": 14}}
    assert [(f["path"], f["limited"], f["written"]["train"]) for f in report["files"]] == [
        ("a.root", 1, 9), ("b.root", 0, 5), ("c.root", 0, 4)]
    table = format_report(report)
    assert "uncategorized" in table and "limited" in table and "labels: train 0: 4, 1: 14" in table


def test_lost_jets_are_detected():
    lost = shards()
    lost[1] = ShardResult("train", 1, "y", 5, [(0, 0, 1, 1, 0, 0), (0, 1, 1, 2, 0, 0), (1, 0, 0, 2, 0, 0)])
    with pytest.raises(Root2Hdf5Error, match="a.root sent 10 jets to train but 8 were written and 1 dropped"):
        build_report(stats(), lost, FILES, NAMES, SPLITS, None)


def test_unaccounted_jets_are_detected():
    bad = stats()
    bad[0].counts["cut"] = 0
    with pytest.raises(Root2Hdf5Error, match="a.root read 20 jets but 1 are neither written nor counted"):
        build_report(bad, shards(), FILES, NAMES, SPLITS, None)


def test_unread_file_is_detected():
    with pytest.raises(Root2Hdf5Error, match="c.root"):
        build_report(stats()[:3], shards(), FILES, NAMES, SPLITS, None)


def test_sample_with_no_selected_jets_is_an_error():
    empty = stats()
    empty[3] = RangeStats(1, 0, {"events": 8, "jets": 8, "not_leading": 0, "cut": 8})
    only_sig = [ShardResult(s.split, s.shard, s.path, s.num_jets, [r for r in s.rows if r[0] == 0]) for s in shards()]
    with pytest.raises(InputError, match=r"sample 'bkg': no jets passed the selection 'pt > 1'"):
        build_report(empty, only_sig, FILES, NAMES, SPLITS, "pt > 1")


def test_skipped_file_is_reported_and_its_jets_accounted():
    """b.root failed in two ranges (40 entries each) after one of its ranges was read: the 3 jets read from it
    are dropped and counted as skipped, its 80 entries never read are counted in events (and as unread), and
    jets = the sum of all outcomes for the file, the sample and the total."""
    stats_ = [RangeStats(0, 0, {"events": 5, "jets": 10, "cut": 2, "train": 8}),
              RangeStats(0, 1, {"events": 2, "jets": 4, "cut": 1, "train": 3}),
              RangeStats(1, 0, {"events": 5, "jets": 5, "train": 5})]
    rows = [ShardResult("train", 0, "x", 13, [(0, 0, 1, 8, 0, 0), (0, 1, 1, 0, 0, 3), (1, 0, 0, 5, 0, 0)])]
    skipped = [SkippedFile(0, 1, "b.root", "b.root: reading entries 40-80 failed", 40),
               SkippedFile(0, 1, "b.root", "b.root: reading entries 80-120 failed", 40)]  # two ranges failed
    report = build_report(stats_, rows, FILES, NAMES, SPLITS, None, skipped=skipped)
    assert report["skipped"] == [{"path": "b.root", "reason": "b.root: reading entries 40-80 failed"}]
    entry = next(f for f in report["files"] if f["path"] == "b.root")
    assert (entry["skipped"], entry["unread"], entry["events"], entry["jets"]) == (3, 80, 82, 4)
    assert entry["written"]["train"] == 0 and entry["skip_reason"] == "b.root: reading entries 40-80 failed"
    sig = report["samples"]["sig"]
    assert (sig["skipped_files"], sig["skipped"], sig["unread"], sig["events"], sig["jets"]) == (1, 3, 80, 87, 14)
    assert sig["jets"] == sig["cut"] + sig["skipped"] + sum(sig["written"].values())
    total = report["total"]
    assert (total["events"], total["jets"], total["skipped"], total["written"]) == (92, 19, 3, 13)
    table = format_report(report).splitlines()
    assert table[0].split() == ["sample", "files", "events", "jets", "not", "leading", "cut", "skipped", "train",
                                "val", "test"]
    assert table[1].split() == ["sig", "2", "87", "14", "0", "3", "3", "8", "0", "0"]
    assert table[3].split() == ["total", "3", "92", "19", "0", "3", "3", "13", "0", "0"]
    unopened = [SkippedFile(1, 0, "c.root", "c.root: not a ROOT file")]
    with pytest.raises(InputError, match="sample 'bkg': all its 1 file"):
        build_report(stats_[:2], [ShardResult("train", 0, "x", 8, rows[0].rows[:2])], FILES, NAMES, SPLITS, None,
                     skipped=unopened)


def test_rows_of_a_skipped_record_event_file_balance():
    """record: event: the entries never read are rows, so they are skipped too; a jets-layout file's unread
    entries are jets."""
    files = [InputFile(0, 0, "a.root", "t"), InputFile(0, 1, "b.root", "t")]
    stats_ = [RangeStats(0, 0, {"events": 6, "cut": 1, "train": 5}), RangeStats(0, 1, {"events": 4, "train": 4})]
    rows = [ShardResult("train", 0, "x", 5, [(0, 0, 0, 5, 0, 0), (0, 1, 0, 0, 0, 4)])]
    skipped = [SkippedFile(0, 1, "b.root", "b.root: damaged", 7)]
    report = build_report(stats_, rows, files, ["s"], SPLITS, None, skipped=skipped, record="event")
    assert report["total"] == {"events": 17, "nonfinite": 0, "cut": 1, "unmatched": 0, "uncategorized": 0,
                               "limited": 0, "skipped": 11, "unread": 7, "written": 5}
    jets = [RangeStats(0, 0, {"jets": 6, "cut": 1, "train": 5}), RangeStats(0, 1, {"jets": 4, "train": 4})]
    skipped = [SkippedFile(0, 1, "b.root", "b.root: damaged", 7, "jets")]
    report = build_report(jets, rows, files, ["s"], SPLITS, None, skipped=skipped)
    assert (report["total"]["events"], report["total"]["jets"], report["total"]["skipped"]) == (0, 17, 11)


def test_outcomes_that_do_not_add_up_are_detected():
    """The balance is checked, not only reported: a skipped count that disagrees with the rows fails."""
    entry = {"jets": 10, "cut": 2, "limited": 0, "skipped": 3, "written": {"train": 4}}
    with pytest.raises(Root2Hdf5Error, match="b.root counts 10 jets but its outcomes .* add up to 9"):
        report_module._check_balance("b.root", entry, ("jets", "cut"), "jets")
