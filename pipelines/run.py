"""Running a conversion: what happens on the driver around the Beam pipeline.

    expand the inputs -> make the plan -> check the first file of every sample (common mistakes fail in a
    second, with a clear message) -> prepare the output directories -> run the pipeline (progress lines on
    local runs) -> the report; after a failure, the temporary directories are removed. On Ctrl-C or SIGTERM
    the worker processes are killed and the same cleanup runs (pipelines.supervise).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time

import awkward as ak
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions

from root2hdf5.pipelines.config import Config
from root2hdf5.pipelines.graph import build
from root2hdf5.pipelines.output_dir import OutputDir, check_inputs_outside, prepare_output
from root2hdf5.pipelines.plan import Plan, make_plan
from root2hdf5.pipelines.runners import forks
from root2hdf5.pipelines.runners.args import runs_locally
from root2hdf5.pipelines.runners.local import make_pipeline
from root2hdf5.pipelines.supervise import Supervisor
from root2hdf5.transforms.core import progress
from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.output.finalize import SUMMARY
from root2hdf5.transforms.output.hdf5_files import is_local
from root2hdf5.transforms.physics.kinematics import describe_roles
from root2hdf5.transforms.read.sources import expand_files
from root2hdf5.transforms.read.trees import check_branches, one_value_per_entry, open_tree, read_arrays
from root2hdf5.transforms.stats.degenerate import event_number_problem

log = logging.getLogger("root2hdf5")


def run(cfg: Config, beam_args: list[str] | None = None, overwrite: bool = False,
        progress_every: float = 10.0) -> dict:
    """Run the conversion; returns the report (also written to <output.dir>/summary.json).

    On a local run, a progress line is logged every `progress_every` seconds (0: never)."""
    started = time.perf_counter()
    outputs: list[OutputDir] = []
    beam_args = beam_args or []
    with Supervisor(lambda signum: _interrupted(outputs, cfg.output.dir)) as supervisor, forks.warm(beam_args):
        files = expand_files(cfg.samples)
        log.info("%d input files in %d samples", len(files), len(cfg.samples))
        plan = make_plan(cfg, files)
        check_inputs_outside(cfg.output.dir, [(f.path, f"sample {f.sample_name!r}") for f in files] +
                             [(f.path, f"friend {p.spec.name!r}") for p in plan.friends for f in p.files])
        _log_roles(cfg)
        warnings = check_inputs(plan, cfg.checks.allow)
        try:
            with supervisor.deferred():  # an interrupt's cleanup sees every output directory made
                outputs.append(prepare_output(cfg.output.dir, overwrite))
            out = outputs[0]
            watch = progress_every > 0 and is_local(out.tmp) and runs_locally(beam_args)
            progress_dir = os.path.join(out.tmp, progress.FOLDER) if watch else None
            sink = plan.sink(out.path, out.tmp, overwrite, progress_dir=progress_dir, warnings=warnings)
            variations = []
            for variation in plan.variations:
                with supervisor.deferred():
                    outputs.append(prepare_output(variation_dir(cfg.output.dir, variation.spec.name), overwrite))
                variations.append((variation, plan.sink(outputs[-1].path, outputs[-1].tmp, overwrite, variation,
                                                        progress_dir, warnings)))
            log.info("constituent features: %s", plan.features.get("constituents", []))
            log.info("jet features: %s", plan.features["jets"])
            shards = len(outputs) * sum(n for _, n in plan.shards)
            with progress.Watcher(progress_dir, len(files), shards, progress_every) if watch else \
                    contextlib.nullcontext():
                with make_pipeline(PipelineOptions(beam_args)) as pipeline:
                    build(pipeline, plan, sink, variations)
        except BaseException:
            for o in outputs:
                o.cleanup_after_failure()
            raise
        finally:
            for o in outputs:
                o.lock.release()
        report = _read_report(out.path)
        if variations:
            report["variations"] = {v.spec.name: {"dir": s.out_dir, **_read_report(s.out_dir)}
                                    for v, s in variations}
    report["seconds"] = round(time.perf_counter() - started, 2)
    if watch:
        total = report["total"]
        log.info("progress: done: read %s entries of %d files, wrote %s %s in %s shards [%s]",
                 f"{total['events']:,}", len(files), f"{total['written']:,}", plan.split.rows, shards,
                 progress.duration(report["seconds"]))
    _fail_on_problems(report, cfg.output.dir)
    return report


def _interrupted(outputs: list[OutputDir], out_dir: str) -> str:
    """The line printed on Ctrl-C, true to what is on disk once the cleanup is done."""
    published = [o.path for o in outputs if o.settle()]
    if not published:
        return "interrupted; no output was finalized"
    if len(published) == len(outputs):
        return f"interrupted after the output was finalized: {out_dir} is complete (summary.json)"
    return (f"interrupted; finalized: {', '.join(published)}; not finalized: "
            f"{', '.join(o.path for o in outputs if o.path not in published)}")


def _fail_on_problems(report: dict, out_dir: str) -> None:
    """A degenerate result the config does not accept fails the run (exit code != 0), after it is written."""
    problems = report.get("problems", [])
    if problems:
        checks = sorted({p["check"] for p in problems})
        raise InputError(f"{'; '.join(p['message'] for p in problems)}. The output in {out_dir} is complete but "
                         f"not usable as a training set; fix the input, or accept this with checks.allow: {checks}")


def _log_roles(cfg: Config) -> None:
    """Which branch plays which kinematic role, and which are unit-scaled: the choices inferred from names."""
    if cfg.record == "jet":
        log.info("kinematic roles of the jets: %s", describe_roles(cfg.jet_roles))
    if cfg.constituent_roles:
        log.info("kinematic roles of the %s: %s", "constituents" if cfg.record == "jet" else "collection",
                 describe_roles(cfg.constituent_roles))
    scaled = cfg.preprocess.scaled_branches or []
    if cfg.preprocess.unit_scale != 1:
        log.info("preprocess.unit_scale %g applies to %s", cfg.preprocess.unit_scale,
                 ", ".join(scaled) if scaled else "no branch (none is energy-like by name; list them in "
                 "preprocess.scaled_branches)")


def variation_dir(out_dir: str, name: str) -> str:
    """Each variation is a complete output set of its own, beside the nominal one."""
    return FileSystems.join(out_dir.rstrip("/") or "/", "variations", name)


def check_inputs(plan: Plan, allow=()) -> tuple[str, ...]:
    """Open the first file of every sample on the driver and check its tree and branches (with
    `input.on_error: skip`, problems are left to the workers, which skip the file), and its event numbers
    (transforms.stats.degenerate). Friend files are never skipped: a missing partner file would silently
    turn into unmatched events. Returns the warnings for the report (degenerate input `allow` accepts)."""
    warnings = []
    for first in _first_files(plan.files):
        try:
            problem = _check_file(first, plan.branches)
        except InputError as err:
            if not plan.skip_errors:
                raise
            log.warning("%s (the file will be skipped)", err)
            continue
        if problem and "few_event_numbers" not in allow:
            raise InputError(f"{problem}; or accept it with checks.allow: [few_event_numbers]")
        if problem:
            log.warning("%s", problem)
            warnings.append(problem)
    for friend in plan.friends:
        for first in _first_files(friend.files):
            _check_file(first, friend.branches)
    return tuple(warnings)


def _first_files(files):
    seen = {}
    for f in files:
        seen.setdefault(f.sample, f)
    return list(seen.values())


# event numbers read from the first file to see whether they number the events
EVENT_NUMBER_PEEK = 100_000


def _check_file(spec, branches) -> str | None:
    """Check a file's tree and branches; returns a message when its event numbers are degenerate."""
    tree = open_tree(spec.path, spec.tree)
    try:
        check_branches(tree, branches, spec.path)
        if not branches.event_number:
            return None
        where = f"{spec.path}: tree {spec.tree!r}"
        values = read_arrays(tree, [branches.event_number], entry_stop=min(tree.num_entries, EVENT_NUMBER_PEEK))
        values = one_value_per_entry(values, [branches.event_number], where)[branches.event_number]
        return event_number_problem(ak.to_numpy(values), branches.event_number, where)
    finally:
        tree.file.close()


def _read_report(out_dir: str) -> dict:
    with FileSystems.open(FileSystems.join(out_dir, SUMMARY)) as handle:
        return json.loads(handle.read())
