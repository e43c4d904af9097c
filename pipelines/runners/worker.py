"""A worker process of local multi-process runs: Beam's sdk_worker_main, which prints a failing bundle's
traceback (~90 lines) to stderr besides logging it; here it is printed only when the worker logs errors
(`root2hdf5 run -v`). Without -v the driver prints the cause on one line."""
from __future__ import annotations

import logging
import sys

from apache_beam.runners.worker import sdk_worker, sdk_worker_main

COMMAND = f"{sys.executable} -m root2hdf5.pipelines.runners.worker"


def _print(*args, **kwargs):
    quiet = not logging.getLogger(sdk_worker.__name__).isEnabledFor(logging.ERROR)
    if quiet and kwargs.get("file") is sys.stderr and args and str(args[0]).startswith("Traceback"):
        return
    print(*args, **kwargs)


if __name__ == "__main__":
    sdk_worker.print = _print  # the module's own name shadows the builtin it calls
    sdk_worker_main.main(sys.argv)
