"""Split by event and shuffle keys: deterministic, event-consistent, with the configured fractions."""
import apache_beam as beam
import numpy as np
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from root2hdf5.transforms.core.batch import RowBatch
from root2hdf5.transforms.core.hashing import hash_columns
from root2hdf5.transforms.output.split import AssignSplits, split_index
from tests.reference import expected_split, hash_ints


def test_hash_matches_a_pure_python_splitmix64():
    rng = np.random.default_rng(0)
    a, b = rng.integers(-2**62, 2**62, 50), rng.integers(0, 2**40, 50)
    got = hash_columns(12345, a, b)
    assert [int(x) for x in got] == [hash_ints(12345, int(x), int(y)) for x, y in zip(a, b)]


def test_split_matches_reference_and_fractions():
    events = np.arange(200_000, dtype=np.int64) * 7 + 3
    fractions = [0.7, 0.2, 0.1]
    split = split_index(42, events, fractions)
    assert [int(s) for s in split[:500]] == [expected_split(42, int(e), fractions) for e in events[:500]]
    observed = np.bincount(split, minlength=3) / len(events)
    np.testing.assert_allclose(observed, fractions, atol=0.005)  # ~5 sigma at this size


def test_zero_fraction_split_gets_nothing():
    split = split_index(1, np.arange(10_000), [0.9, 0.0, 0.1])
    assert set(np.unique(split)) == {0, 2}


def make_batch(sample, file, n, events):
    b = RowBatch(sample, file)
    b.data["source"] = np.column_stack([np.full(n, sample), np.full(n, file), np.arange(n) // 2, np.arange(n) % 2])
    b.data["event_number"] = np.asarray(events, np.int64)
    b.data["labels"] = np.full(n, sample, np.int32)
    return b


def test_assign_splits_keeps_events_together_and_counts():
    batches = [make_batch(s, f, 400, np.repeat(np.arange(200) + 1000 * (2 * s + f), 2))
               for s in range(2) for f in range(2)]
    splitter = AssignSplits(9, ["train", "val", "test"], [0.6, 0.2, 0.2], [3, 1, 1], by_event_number=True)
    with TestPipeline() as p:
        out = p | beam.Create(batches) | beam.ParDo(splitter).with_outputs("stats", main="batches")

        def events_in_one_split(rows):
            seen = {}
            for event, split in rows:
                assert seen.setdefault(event, split) == split
            assert len(seen) == 800

        pairs = out.batches | beam.FlatMap(lambda b: zip(b.data["event_number"].tolist(), b.data["_split"].tolist()))
        assert_that(pairs, events_in_one_split, label="together")
        assert_that(out.batches | beam.FlatMap(lambda b: [
            bool(np.all(b.data["_shard"] < np.array([3, 1, 1])[b.data["_split"]]))]), equal_to([True] * 4),
            label="shards")
        assert_that(out.stats | beam.Map(lambda rs: (rs.counts["train"] + rs.counts["val"] + rs.counts["test"],
                                                     sum(rs.cells.values()))),
                    equal_to([(400, 400)] * 4), label="stats")


def test_keys_depend_only_on_jet_identity():
    a = make_batch(0, 3, 10, np.arange(10))
    b = a.take(np.arange(9, -1, -1))  # same jets, other order and batch
    splitter = AssignSplits(5, ["train", "val", "test"], [0.8, 0.1, 0.1], [6, 1, 1], True)
    (_, out_a), (_, out_b) = list(splitter.process(a)), list(splitter.process(b))
    np.testing.assert_array_equal(out_a.data["_order"], out_b.data["_order"][::-1])
    np.testing.assert_array_equal(out_a.data["_shard"], out_b.data["_shard"][::-1])
