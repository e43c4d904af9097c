"""The output vocabulary every stage shares: split names, the jet identity columns, dataset names.

Here rather than in `output/` because reading creates the identity columns and physics keys random numbers
on them; the stages below `output/` must not import it.
"""
from __future__ import annotations

import re

SPLITS = ("train", "val", "test")

# `source`: where a row came from, enough to find it again in the ntuple; also the key of every random number
SOURCE_COLUMNS = ("sample", "file", "entry", "jet_index")

# datasets holding features: their statistics go to norm.yaml and standardization applies to them
FEATURE_DATASETS = ("constituents", "jets", "jet_collections")

# the columns of a written row, as the pipeline names them; with `record: event` the feature matrix `jets`
# is written as `events` and the padded collection under its own name
DATASETS = ("constituents", "mask", "jets", "jet_collections", "labels", "weights", "event_number", "source",
            "jets_int")
PER_ROW = ("labels", "weights", "event_number", "source")

# names a configured dataset (an image, the model's output, an event collection) may not take
RESERVED = (*DATASETS, "events")

# what names of samples, categories, datasets and variations may hold: they name counters, files and folders
NAME = re.compile(r"[A-Za-z0-9_.+-]+")
