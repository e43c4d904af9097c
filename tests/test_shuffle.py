"""The shuffle: pieces through GroupByKey (spilled or in memory) give the same shard contents and order."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from root2hdf5.transforms.core.batch import ColumnsCoder, RowBatch
from root2hdf5.transforms.output.shuffle import Piece, PieceCoder, ShuffleIntoShards, gather_shard
from root2hdf5.transforms.output.split import AssignSplits


def test_byte_form_round_trip():
    cols = {"a": np.arange(12, dtype=np.float32).reshape(3, 2, 2), "m": np.array([True, False, True]),
            "s": np.arange(12, dtype=np.int64).reshape(3, 4), "empty": np.zeros((0, 5), np.float32)}
    for coder in (ColumnsCoder(),):
        back = coder.decode(coder.encode(cols))
        assert list(back) == list(cols)
        for k in cols:
            assert back[k].dtype == cols[k].dtype and np.array_equal(back[k], cols[k])
    p = PieceCoder()
    assert p.decode(p.encode(Piece(path="/x/y.piece"))).path == "/x/y.piece"
    assert np.array_equal(p.decode(p.encode(Piece(columns=cols))).columns["s"], cols["s"])


def batches(n_batches=6, n=300):
    out = []
    splitter = AssignSplits(1, ["train", "val", "test"], [0.6, 0.2, 0.2], [3, 1, 1], by_event_number=False)
    for f in range(n_batches):
        b = RowBatch(f % 2, f)
        b.data["source"] = np.column_stack([np.full(n, f % 2), np.full(n, f), np.arange(n), np.zeros(n, int)])
        b.data["labels"] = np.full(n, f % 2, np.int32)
        b.data["x"] = np.random.default_rng(f).random((n, 3)).astype(np.float32)
        out.append([r for r in splitter.process(b) if isinstance(r, RowBatch)][0])
    return out


def expected_shards(bs):
    rows = {}
    for b in bs:
        for i in range(len(b)):
            key = (int(b.data["_split"][i]), int(b.data["_shard"][i]))
            rows.setdefault(key, []).append((int(b.data["_order"][i]), tuple(b.data["source"][i])))
    return {k: [src for _, src in sorted(v)] for k, v in rows.items()}


@pytest.mark.parametrize("spill", [True, False])
def test_shards_hold_the_right_jets_in_hash_order(tmp_path, spill):
    bs = batches()
    expected = expected_shards(bs)

    def check(groups):
        got = {}
        for key, pieces in groups:
            assert key not in got
            columns = gather_shard(pieces)
            assert "_order" not in columns and set(columns) == {"source", "labels", "x"}
            got[key] = [tuple(s) for s in columns["source"]]
        assert got == expected

    with TestPipeline() as p:
        groups = (p | beam.Create(bs) | ShuffleIntoShards(["source", "labels", "x"], str(tmp_path) if spill else None)
                  | beam.MapTuple(lambda k, v: (k, list(v))))
        assert_that(groups, check)
    if spill:
        assert len(list(tmp_path.iterdir())) > 0  # the pieces went through files


def test_gather_is_independent_of_piece_grouping():
    bs = batches(2, 50)
    cols = [{k: b.data[k] for k in ("source", "x", "_order")} for b in bs]
    whole = gather_shard([Piece(columns={k: np.concatenate([c[k] for c in cols]) for k in cols[0]})])
    split = gather_shard([Piece(columns={k: v[::-1] for k, v in c.items()}) for c in reversed(cols)])
    for k in whole:
        np.testing.assert_array_equal(whole[k], split[k])
