"""The output directory of a run: locked against other runs, refused when it already holds a result (unless
overwriting, which replaces only what earlier runs recorded as theirs), a temporary directory of the run's
own inside it, and the cleanup after a failure or an interrupt."""
from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from root2hdf5.transforms.core.errors import ConfigError, OutputError
from root2hdf5.transforms.core.names import SPLITS
from root2hdf5.transforms.output.finalize import (
    PUBLISHING,
    SHARDS_DIR,
    SUMMARY,
    TMP_PREFIX,
    foreign_files_message,
    previous_outputs,
    recover,
)
from root2hdf5.transforms.output.hdf5_files import children, is_local

log = logging.getLogger("root2hdf5")
LOCK = ".root2hdf5.lock"


class RunLock:
    """<out>/.root2hdf5.lock, holding the pid and host of the run writing to <out>. Created exclusively on a
    local disk; a lock whose process is gone (same host) is taken over. On object stores the check and the
    creation are two steps: two runs started within the same second may both pass."""

    def __init__(self, out: str):
        self.out, self.path = out, FileSystems.join(out, LOCK)
        self.text = f"{os.getpid()} {socket.gethostname()} {uuid.uuid4().hex[:12]}\n"
        self.held = False

    def acquire(self) -> None:
        for _ in range(3):
            if self._create():
                self.held = True
                return
            holder = self._read()
            if not _gone(holder):
                pid, host = (holder.split() + ["?", "?"])[:2]
                raise OutputError(f"another run (pid {pid} on {host}) is writing to {self.out}; wait for it to end, "
                                  f"or remove {self.path} if that run is gone")
            self._take_over(holder)
        raise OutputError(f"{self.path}: cannot take over the lock of an ended run; remove it by hand")

    def release(self) -> None:
        if self.held and self._read() == self.text:
            FileSystems.delete([self.path])
        self.held = False

    def _create(self) -> bool:
        if is_local(self.path):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                return False
            with os.fdopen(fd, "w") as handle:
                handle.write(self.text)
            return True
        if FileSystems.exists(self.path):
            return False
        with FileSystems.create(self.path) as handle:
            handle.write(self.text.encode())
        return True

    def _read(self) -> str:
        try:
            with FileSystems.open(self.path, compression_type="uncompressed") as handle:
                return handle.read().decode(errors="replace")
        except Exception:  # noqa: BLE001 - gone in between: nobody holds it
            return ""

    def _take_over(self, stale: str) -> None:
        """Move the ended run's lock aside; if what was moved is not that lock (another run took it over in
        between and holds it now), put it back."""
        if not is_local(self.path):
            FileSystems.delete([self.path])
            return
        aside = f"{self.path}.{uuid.uuid4().hex[:12]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        with open(aside) as handle:
            moved = handle.read()
        if moved == stale:
            os.remove(aside)
        else:
            os.rename(aside, self.path)


def _gone(holder: str) -> bool:
    """Whether the run that wrote this lock text has ended: its process is no longer there on this host."""
    parts = holder.split()
    if not holder:
        return True
    if len(parts) < 2 or not parts[0].isdigit() or parts[1] != socket.gethostname():
        return False  # another host's run: we cannot tell
    try:
        os.kill(int(parts[0]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass
class OutputDir:
    path: str
    tmp: str
    created: bool
    lock: RunLock

    def cleanup_after_failure(self) -> bool:
        """Complete or undo a finalize that was under way (transforms.output.finalize.recover), remove the run's
        temporary directory, and the output directory if this run created it and it is empty; unlock. Returns
        whether this run's output was published."""
        published = False
        try:
            if FileSystems.exists(self.tmp):
                outcome = recover(self.path, self.tmp)
                published = outcome == "published"
                if outcome:
                    log.warning("the finalize step was interrupted halfway; %s", "it is now complete" if published
                                else "the previous output in %s is back in place" % self.path)
                FileSystems.delete([self.tmp])
            else:  # the finalize step removes the temporary directory once it has published
                published = FileSystems.exists(FileSystems.join(self.path, SUMMARY))
            self.lock.release()
            if self.created and FileSystems.exists(self.path) and not children(self.path):
                FileSystems.delete([self.path])
        except Exception as err:  # cleanup must not hide the original error; a rerun recovers the rest
            log.warning("could not clean up %s: %s", self.tmp, err)
        return published

    def settle(self) -> bool:
        """The cleanup after an interrupt, once the worker processes are stopped. A finalize running in this
        process (in_memory runs) finishes its renames first; PUBLISHING is not given back, so that it starts no
        other: the process is about to end."""
        PUBLISHING.acquire(timeout=30)
        return self.cleanup_after_failure()


def prepare_output(path: str, overwrite: bool, split_names=SPLITS) -> OutputDir:
    """Lock the output directory; complete or undo finalize steps that interrupted runs left; refuse a non-empty
    directory unless overwriting, and with --overwrite files no earlier run recorded as its own where this one
    writes; make the run's temporary directory."""
    path = path.rstrip("/") or "/"
    created = False
    lock = RunLock(path)
    try:
        if not FileSystems.exists(path):
            FileSystems.mkdirs(path)
            created = True
        lock.acquire()
        _recover_interrupted(path)
        existing = [e for e in children(path) if not _name(e).startswith(TMP_PREFIX) and _name(e) != LOCK]
        if existing and not overwrite:
            raise OutputError(f"output directory {path} already holds {len(existing)} entries (e.g. "
                              f"{existing[0]}); pass --overwrite to replace its train/val/test files")
        foreign = previous_outputs(path, list(split_names))[1] if existing else []
        if foreign:
            raise OutputError(foreign_files_message(path, foreign))
        tmp = FileSystems.join(path, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
        for sub in ("", SHARDS_DIR, "pieces"):
            FileSystems.mkdirs(FileSystems.join(tmp, sub) if sub else tmp)
        probe = FileSystems.join(tmp, "probe")
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except Exception as err:
        _undo(path, created, lock)
        if isinstance(err, OutputError):
            raise
        raise OutputError(f"output directory {path} cannot be written: {err}") from None
    return OutputDir(path, tmp, created, lock)


def _undo(path: str, created: bool, lock: RunLock) -> None:
    try:
        lock.release()
        if created and FileSystems.exists(path) and not children(path):
            FileSystems.delete([path])
    except Exception:  # noqa: BLE001 - the error that brought us here is the one to report
        pass


def _recover_interrupted(path: str) -> None:
    """A finalize step killed halfway leaves a journal in its temporary directory: completed or undone here, so
    that the directory holds one complete result again; that temporary directory is then removed."""
    for entry in children(path):
        if _name(entry).startswith(TMP_PREFIX):
            outcome = recover(path, entry)
            if outcome:
                FileSystems.delete([entry])
                log.warning("an interrupted run had begun to publish its output into %s; %s (its temporary "
                            "directory %s is removed)", path, "its output is now complete" if outcome == "published"
                            else "the previous output is back in place", _name(entry))


def check_inputs_outside(out_dir: str, paths: list[tuple[str, str]]) -> None:
    """Refuse an output directory that holds an input file (at any depth): --overwrite could replace it, and a
    file read while it is being written is garbage. `paths`: (path, what it is)."""
    base = _resolved(out_dir)
    for path, what in paths:
        if _resolved(path) == base or _resolved(path).startswith(base.rstrip("/") + "/"):
            raise ConfigError(f"output.dir {out_dir} contains the input file {path} ({what}); write the output "
                              f"somewhere else")


def _resolved(path: str) -> str:
    return os.path.realpath(path) if is_local(path) else path.rstrip("/")


def _name(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]
