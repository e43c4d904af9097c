"""Fault injection, a test hook for retries and accounting. Inert unless ROOT2HDF5_FAULTS is set.

ROOT2HDF5_FAULTS is JSON, e.g. {"dir": "/tmp/faults", "fail_once": ["flatten", "write_shard"], "every": 2}:
the first time a listed point is reached for a key selected by `every` (about 1 in `every` keys: entry
ranges for "flatten", shards for "write_shard"), it raises InjectedFault; a marker file in `dir` makes
the retry succeed. {"lose_jet": true} makes every shard writer drop one jet, to show that the accounting
catches a loss. {"pause": "write_shard"} makes that point write `dir/paused` and wait, so a test can kill
the run there. {"exit_at": "publish"} ends the process at that point of the finalize step at once, as a
kill would (transforms.output.finalize names its points). Points reached in worker processes see the variable
too (it is inherited).
"""
from __future__ import annotations

import json
import os
import time
import zlib

ENV = "ROOT2HDF5_FAULTS"


class InjectedFault(RuntimeError):
    """Raised on purpose by the fault-injection hook."""


def _spec() -> dict | None:
    text = os.environ.get(ENV)
    return json.loads(text) if text else None


def step(point: str) -> None:
    """A point where a test may pause the run ({"pause": point}) or end the process ({"exit_at": point})."""
    spec = _spec()
    if spec and spec.get("pause") == point:
        with open(os.path.join(spec["dir"], "paused"), "w"):
            pass
        time.sleep(600)
    if spec and spec.get("exit_at") == point:
        os._exit(137)  # no cleanup, no finally: as SIGKILL


def fail_once(point: str, key: str) -> None:
    step(point)
    spec = _spec()
    if not spec or point not in spec.get("fail_once", ()):
        return
    if zlib.crc32(key.encode()) % int(spec.get("every", 1)):
        return
    marker = os.path.join(spec["dir"], f"{point}-{zlib.crc32(key.encode()):08x}")
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return  # this is the retry
    raise InjectedFault(f"injected fault at {point} for {key} (retries must make this harmless)")


def lose_jet() -> bool:
    spec = _spec()
    return bool(spec and spec.get("lose_jet"))
