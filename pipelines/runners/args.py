"""What the Beam options of a run say about where it runs, read from the arguments as Beam parses them but
without importing Beam: the command starts the workers' interpreter (pipelines.runners.forks) before Beam
loads in the driver."""
from __future__ import annotations

import argparse

LOCAL = (None, "DirectRunner", "direct", "FnApiRunner")


def _options(beam_args: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--runner")
    parser.add_argument("--direct_running_mode", default="in_memory")  # Beam's default (DirectOptions)
    return parser.parse_known_args(beam_args)[0]


def runs_locally(beam_args: list[str]) -> bool:
    """Whether the pipeline runs on this machine (the FnApiRunner), so its workers share our disk."""
    return _options(beam_args).runner in LOCAL


def worker_processes(beam_args: list[str]) -> bool:
    """Whether the run's workers are processes of this machine (the FnApiRunner's multi_processing mode)."""
    options = _options(beam_args)
    return options.runner in LOCAL and options.direct_running_mode == "multi_processing"
