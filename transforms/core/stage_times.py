"""CPU seconds per stage of a run, summed over all its processes: on only when ROOT2HDF5_STAGE_TIMES names
a folder (bench/run.py --stages sets it; bench/stages.py prints the table). Inert otherwise: nothing is
wrapped and nothing is written.

When on, the package's import installs an import hook that wraps the functions of STAGES (ours and uproot's)
as their modules load; each call (each step of a generator, so that fused downstream stages are not
counted twice) adds its thread CPU time and wall time to its label. Worker processes inherit the variable
and do the same. At exit every process appends one JSON line (role, rusage CPU, CPU when the package was
first imported, CPU when the runner started, the stages) to <folder>/stages.jsonl.
"""
from __future__ import annotations

import atexit
import functools
import importlib.abc
import importlib.machinery
import inspect
import json
import os
import resource
import sys
import threading
import time

ENV = "ROOT2HDF5_STAGE_TIMES"

_T = "root2hdf5.transforms."
STAGES = {  # module -> [(qualified name, label)]; nested labels are parts of their parent ("read: ...")
    _T + "read.ranges": [("ReadRange._read", "read"), ("SplitIntoRanges.process", "plan ranges")],
    "uproot.compression": [("decompress", "read: inflate")],
    "uproot.interpretation.objects": [("AsObjects.basket_array", "read: vector<vector> decode"),
                                      ("AsObjects.final_array", "read: basket join")],
    "uproot.interpretation.jagged": [("AsJagged.basket_array", "read: jagged decode"),
                                     ("AsJagged.final_array", "read: basket join")],
    "uproot.interpretation.numerical": [("AsDtype.final_array", "read: basket join")],
    _T + "read.basket_join": [("join", "read: basket join")],
    _T + "read.flatten": [("FlattenJets.process", "flatten"), ("FlattenEvents.process", "flatten")],
    _T + "read.finite": [("CheckFinite.process", "non-finite check"),
                              ("CheckWrittenFinite.process", "non-finite check: written features"),
                              ("SplitBatches.process", "split batches")],
    _T + "rows.select": [("SelectRows.process", "select")],
    _T + "rows.label": [("LabelRows.process", "label")],
    _T + "physics.padding": [("pad_constituents", "padding")],
    _T + "physics.preprocess": [("Preprocess.process", "features")],
    _T + "output.split": [("AssignSplits.process", "split and shard keys")],
    _T + "output.shuffle": [("CutIntoPieces.process", "spill: cut"), ("CutIntoPieces._piece", "spill: write"),
                            ("gather_shard", "spill: read back and reorder")],
    _T + "output.sink": [("WriteShard.process", "write shards"), ("_count_rows", "accounting (_count_rows)")],
    _T + "output.hdf5_files": [("write_jets_file", "HDF5 write"), ("write_split_file", "finalize: split files")],
    _T + "stats.moments": [("shard_moments", "statistics (shard_moments)")],
    _T + "output.finalize": [("Finalize.process", "finalize")],
    "apache_beam.runners.portability.fn_api_runner.fn_runner": [("FnApiRunner.run_pipeline", "driver: run")],
    "apache_beam.runners.portability.fn_api_runner.worker_handlers": [
        ("WorkerHandlerManager.close_all", "driver: stop workers")],
}

_totals: dict[str, list[float]] = {}  # label -> [calls, cpu, wall]
_marks: dict[str, float] = {}
_lock = threading.Lock()
_local = threading.local()
_installed = False
_role: str | None = None


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _add(label: str, cpu: float, wall: float, calls: int) -> None:
    with _lock:
        entry = _totals.setdefault(label, [0, 0.0, 0.0])
        entry[0] += calls
        entry[1] += cpu
        entry[2] += wall


def _wrap(fn, label: str):
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def steps(*args, **kwargs):
            iterator = fn(*args, **kwargs)
            while True:
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    _add(label, time.thread_time() - cpu, time.perf_counter() - wall, 1)
                    return
                _add(label, time.thread_time() - cpu, time.perf_counter() - wall, 0)
                yield item  # what the consumer does with it (the fused stages after this one) is theirs

        return steps

    @functools.wraps(fn)
    def call(*args, **kwargs):
        active = _local.__dict__.setdefault("active", set())
        if label in active:  # recursion: counted once, by the outer call
            return fn(*args, **kwargs)
        if label.startswith("driver:"):
            _marks.setdefault(f"{label} (start)", _cpu())
        active.add(label)
        cpu, wall = time.thread_time(), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            _add(label, time.thread_time() - cpu, time.perf_counter() - wall, 1)
            active.discard(label)

    return call


def _patch(module) -> None:
    for qualified, label in STAGES.get(module.__name__, []):
        *path, name = qualified.split(".")
        owner = module
        for part in path:
            owner = getattr(owner, part, None)
        fn = getattr(owner, name, None) if owner is not None else None
        if fn is not None and not getattr(fn, "_stage_timed", False):
            wrapped = _wrap(fn, label)
            wrapped._stage_timed = True
            setattr(owner, name, wrapped)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in STAGES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def forked() -> None:
    """In a worker forked from the fork server (pipelines/runners/worker.py): its CPU and stages are its own
    from here (the kernel starts a child's rusage at zero); what the server spent is the server's record."""
    global _role
    _role = "worker"
    with _lock:
        _totals.clear()
        _marks.clear()
    _marks["package imported"] = 0.0


def _dump(folder: str) -> None:
    # Beam's worker module, or the project's wrapper of it (pipelines/runners/worker.py), or its fork server
    role = _role or ("fork server" if "--serve" in sys.argv else
                     "worker" if any(w in arg for arg in sys.argv for w in ("sdk_worker_main", "runners/worker"))
                     else "driver")
    record = {"pid": os.getpid(), "role": role, "cpu": _cpu(), "marks": _marks, "stages": _totals}
    with open(os.path.join(folder, "stages.jsonl"), "a") as handle:
        handle.write(json.dumps(record) + "\n")


def install() -> None:
    """Start timing in this process if ROOT2HDF5_STAGE_TIMES is set (idempotent)."""
    global _installed
    folder = os.environ.get(ENV)
    if not folder or _installed:
        return
    _installed = True
    _marks["package imported"] = _cpu()
    sys.meta_path.insert(0, _Finder())
    for name in STAGES:
        if name in sys.modules:
            _patch(sys.modules[name])
    atexit.register(_dump, folder)
