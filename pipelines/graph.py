"""The Beam graph of a conversion, built from a Plan alone:

    files -> entry ranges -> read ──> JetRows:   flatten to jets -> non-finite -> [vary] -> select -> label
                                 └──> EventRows: one row per event -> non-finite -> select -> friends -> label
                                                 -> variables
          rows -> pad -> preprocess -> non-finite (written features) -> split & shard keys -> shuffle (GroupByKey)
          -> write shards -> finalize

The input is read once; the nominal set and every variation's set are converted and written from it.
"""
from __future__ import annotations

import apache_beam as beam

from root2hdf5.pipelines.plan import Plan, VariationPlan
from root2hdf5.transforms.core.names import SPLITS
from root2hdf5.transforms.output.finalize import SinkSpec
from root2hdf5.transforms.output.sink import WriteShuffledShards
from root2hdf5.transforms.output.split import AssignSplits
from root2hdf5.transforms.physics.padding import PadConstituents
from root2hdf5.transforms.physics.preprocess import Preprocess
from root2hdf5.transforms.physics.variations import ApplyVariation
from root2hdf5.transforms.read.finite import CheckFinite, CheckWrittenFinite, SplitBatches
from root2hdf5.transforms.read.flatten import FlattenEvents, FlattenJets
from root2hdf5.transforms.read.friends import FriendRows, JoinFriend
from root2hdf5.transforms.read.ranges import ReadRootRanges
from root2hdf5.transforms.rows.event_variables import EventVariables
from root2hdf5.transforms.rows.label import LabelRows
from root2hdf5.transforms.rows.select import SelectRows


def build(pipeline: beam.Pipeline, plan: Plan, sink: SinkSpec, variations: list[tuple[VariationPlan, SinkSpec]] = ()):
    """Add the conversion to `pipeline`; returns the PCollection holding the nominal set's final report."""
    chunks, skipped = pipeline | "ReadRoot" >> ReadRootRanges(list(plan.files), plan.branches, plan.step_size,
                                                               skip=plan.skip_errors, progress_dir=sink.progress_dir)
    report = chunks | "Convert" >> ConvertRows(plan, sink, skipped)
    for variation, variation_sink in variations:
        chunks | f"Convert[{variation.spec.name}]" >> ConvertRows(plan, variation_sink, skipped, variation)
    return report


class ConvertRows(beam.PTransform):
    """Entry-range chunks -> one output set: rows, padding, preprocessing, split, shuffle, written and finalized
    by `sink`. With `variation`, the constituents are varied right after they are read."""

    def __init__(self, plan: Plan, sink: SinkSpec, skipped, variation: VariationPlan | None = None):
        super().__init__()
        self.plan, self.sink, self.skipped, self.variation = plan, sink, skipped, variation

    def expand(self, chunks):
        plan, pad, split = self.plan, self.plan.pad, self.plan.split
        rows = chunks | ("EventRows" >> EventRows(plan) if plan.record == "event" else
                         "JetRows" >> JetRows(plan, self.variation))
        routed, stats = (
            rows
            | "PadConstituents" >> beam.ParDo(PadConstituents(pad.branches, pad.sort_by, pad.max_len, pad.pt,
                                                              pad.min_pt))
            | "Preprocess" >> beam.ParDo(Preprocess(plan.preprocess))
            | "CheckWrittenFinite" >> beam.ParDo(CheckWrittenFinite(
                plan.rows.on_nonfinite, plan.rows.nonfinite_value, plan.features, plan.format.columns.collections))
            | "AssignSplits" >> beam.ParDo(AssignSplits(
                split.seed, list(SPLITS), list(split.fractions), list(split.shards), split.by_event_number,
                list(split.sample_names), split.modulo, list(split.residue_splits or ()) or None, split.rows))
            .with_outputs("stats", main="batches")
        )
        return routed | "WriteShards" >> WriteShuffledShards(
            self.sink, stats, spill=plan.spill, composition=plan.composition, skipped=self.skipped,
            finish=plan.finish, model=plan.model)


class JetRows(beam.PTransform):
    """Chunks -> labelled jet rows: the leading jets of each event (or each entry of a per-jet ntuple), the
    non-finite policy, the variation if any, the selections, labels and weights."""

    def __init__(self, plan: Plan, variation: VariationPlan | None = None):
        super().__init__()
        self.plan, self.variation = plan, variation

    def expand(self, chunks):
        r = self.plan.rows
        rows = (chunks
                | "FlattenJets" >> beam.ParDo(FlattenJets(r.layout, r.leading_jets, r.leading_by, r.event_number,
                                                          r.sum_weights, r.links, r.constituent_branches,
                                                          self.plan.branches.jet[0] if r.links else None))
                | "CheckFinite" >> beam.ParDo(CheckFinite(r.on_nonfinite, r.nonfinite_value)))
        if self.variation is not None:
            v = self.variation
            rows = rows | "Vary" >> beam.ParDo(ApplyVariation(v.spec, list(r.constituent_branches),
                                                              dict(r.constituent_roles), dict(r.jet_roles),
                                                              self.plan.split.seed, v.recompute_jets))
        return (rows
                | "SplitBatches" >> beam.ParDo(SplitBatches())
                | "Select" >> beam.ParDo(SelectRows(r.selection, list(r.sample_selections), r.record))
                | "Label" >> beam.ParDo(LabelRows(list(r.labelings), r.weight_branch, r.record)))


class EventRows(beam.PTransform):
    """Chunks -> labelled event rows (`record: event`): one row per entry, the non-finite policy, the
    selections, each friend tree joined, labels (categories) and weights, then the event variables."""

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan

    def expand(self, chunks):
        plan, r = self.plan, self.plan.rows
        rows = (chunks
                | "FlattenEvents" >> beam.ParDo(FlattenEvents(r.event_number, r.sum_weights, r.padded))
                | "CheckFinite" >> beam.ParDo(CheckFinite(r.on_nonfinite, r.nonfinite_value))
                | "SplitBatches" >> beam.ParDo(SplitBatches())
                | "Select" >> beam.ParDo(SelectRows(r.selection, list(r.sample_selections), r.record)))
        for friend in plan.friends:
            name = friend.spec.name
            friend_rows = chunks.pipeline | f"ReadFriend[{name}]" >> FriendRows(
                list(friend.files), friend.branches, plan.step_size, r.on_nonfinite, r.nonfinite_value)
            rows = (rows
                    | f"JoinFriend[{name}]" >> JoinFriend(friend.spec, friend_rows)
                    | f"SplitJoined[{name}]" >> beam.ParDo(SplitBatches()))
        return (rows
                | "Label" >> beam.ParDo(LabelRows(list(r.labelings), r.weight_branch, r.record))
                | "EventVariables" >> beam.ParDo(EventVariables(r.variables, r.unit_scale)))
