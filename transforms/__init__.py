"""The Beam transforms of the conversion and the kernels they use, one subpackage per stage of the dataflow:

    read     ROOT files -> entry ranges -> rows (jets or events), checked for non-finite values; friend trees
    rows     expressions, selections, labels and event variables on those rows
    physics  kinematic roles, constituent padding, preprocessing functions, images, systematic variations
    output   train/val/test split, global shuffle, shard writing, formats, the second pass, finalize
    stats    composition (limits, sample weights), reweighting, moments, model scores, the accounting
    core     the batch and its coders, errors, hashing, exact sums, progress markers, fault hooks, vocabulary

Imports run downward only: no module here imports root2hdf5.pipelines.
"""
import os as _os

if _os.environ.get("ROOT2HDF5_STAGE_TIMES"):  # per-stage CPU seconds for bench/run.py --stages; inert otherwise
    from root2hdf5.transforms.core import stage_times as _stage_times

    _stage_times.install()
