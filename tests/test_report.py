"""Accounting: the report adds up, and any loss or duplication is caught."""
import pytest

from transforms.errors import InputError, Root2Hdf5Error
from transforms.report import ShardResult, build_report, format_report
from transforms.sources import InputFile

FILES = [InputFile(0, 0, "a.root", "t"), InputFile(0, 1, "b.root", "t"), InputFile(1, 0, "c.root", "t")]
SPLITS = ["train", "val", "test"]


def stats():
    return [((0, 0), {"events": 10, "jets": 20, "not_leading": 2, "cut": 3, "train": 10, "val": 3, "test": 2}),
            ((0, 1), {"events": 5, "jets": 10, "not_leading": 0, "cut": 5, "train": 5, "val": 0, "test": 0}),
            ((1, 0), {"events": 8, "jets": 8, "not_leading": 0, "cut": 0, "train": 4, "val": 2, "test": 2})]


def shards():
    return [ShardResult("train", 0, "x", 12, [9, 3]), ShardResult("train", 1, "y", 7, [6, 1]),
            ShardResult("val", 0, "z", 5, [3, 2]), ShardResult("test", 0, "w", 4, [2, 2])]


def test_report_adds_up():
    report = build_report(stats(), shards(), FILES, ["sig", "bkg"], SPLITS, None)
    assert report["samples"]["sig"] == {"files": 2, "events": 15, "jets": 30, "not_leading": 2, "cut": 8,
                                        "written": {"train": 15, "val": 3, "test": 2}}
    assert report["total"] == {"events": 23, "jets": 38, "not_leading": 2, "cut": 8, "written": 28}
    assert report["splits"]["train"] == {"jets": 19, "shards": 2}
    assert [f["path"] for f in report["files"]] == ["a.root", "b.root", "c.root"]
    assert "total" in format_report(report)


def test_lost_jets_are_detected():
    lost = shards()
    lost[0] = ShardResult("train", 0, "x", 11, [8, 3])
    with pytest.raises(Root2Hdf5Error, match="lost or duplicated"):
        build_report(stats(), lost, FILES, ["sig", "bkg"], SPLITS, None)


def test_unaccounted_jets_are_detected():
    bad = stats()
    bad[0] = ((0, 0), {**bad[0][1], "cut": 4})
    with pytest.raises(Root2Hdf5Error, match="read 30 jets"):
        build_report(bad, shards(), FILES, ["sig", "bkg"], SPLITS, None)


def test_unread_file_is_detected():
    with pytest.raises(Root2Hdf5Error, match="c.root"):
        build_report(stats()[:2], shards(), FILES, ["sig", "bkg"], SPLITS, None)


def test_sample_with_no_selected_jets_is_an_error():
    empty = stats()
    empty[2] = ((1, 0), {"events": 8, "jets": 8, "not_leading": 0, "cut": 8})
    shards_sig = [ShardResult(s.split, s.shard, s.path, s.per_sample[0], [s.per_sample[0], 0]) for s in shards()]
    with pytest.raises(InputError, match=r"sample 'bkg': no jets passed the selection 'pt > 1'"):
        build_report(empty, shards_sig, FILES, ["sig", "bkg"], SPLITS, "pt > 1")
