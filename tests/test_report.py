"""Accounting: the report adds up, and any loss or duplication is caught."""
import pytest

from root2hdf5.transforms.core.errors import InputError, Root2Hdf5Error
from root2hdf5.transforms.core.records import RangeStats, ShardResult, SkippedFile
from root2hdf5.transforms.read.sources import InputFile
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
    """b.root failed after one of its ranges was read: those 3 jets are dropped, and listed as such."""
    stats_ = [RangeStats(0, 0, {"events": 5, "jets": 10, "cut": 2, "train": 8}),
              RangeStats(0, 1, {"events": 2, "jets": 4, "cut": 1, "train": 3}),
              RangeStats(1, 0, {"events": 5, "jets": 5, "train": 5})]
    rows = [ShardResult("train", 0, "x", 13, [(0, 0, 1, 8, 0, 0), (0, 1, 1, 0, 0, 3), (1, 0, 0, 5, 0, 0)])]
    skipped = [SkippedFile(0, 1, "b.root", "b.root: reading entries 40-80 failed")] * 2  # two ranges failed
    report = build_report(stats_, rows, FILES, NAMES, SPLITS, None, skipped=skipped)
    assert report["skipped"] == [{"path": "b.root", "reason": "b.root: reading entries 40-80 failed"}]
    entry = next(f for f in report["files"] if f["path"] == "b.root")
    assert entry["dropped"] == 3 and entry["written"]["train"] == 0
    assert report["samples"]["sig"]["skipped_files"] == 1 and report["total"]["written"] == 13
    unopened = [SkippedFile(1, 0, "c.root", "c.root: not a ROOT file")]
    with pytest.raises(InputError, match="sample 'bkg': all its 1 file"):
        build_report(stats_[:2], [ShardResult("train", 0, "x", 8, rows[0].rows[:2])], FILES, NAMES, SPLITS, None,
                     skipped=unopened)
