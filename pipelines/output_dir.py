"""The output directory of a run: refused when it already holds a result (unless overwriting), a temporary
directory of the run's own inside it, and the cleanup after a failure."""
from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

from apache_beam.io.filesystems import FileSystems

from root2hdf5.transforms.core.errors import OutputError
from root2hdf5.transforms.output.finalize import SHARDS_DIR, TMP_PREFIX
from root2hdf5.transforms.output.hdf5_files import children

log = logging.getLogger("root2hdf5")


@dataclass
class OutputDir:
    path: str
    tmp: str
    created: bool

    def cleanup_after_failure(self):
        """Remove the run's temporary directory, and the output directory if this run created it."""
        try:
            if FileSystems.exists(self.tmp):
                FileSystems.delete([self.tmp])
            if self.created and FileSystems.exists(self.path) and not children(self.path):
                FileSystems.delete([self.path])
        except Exception as err:  # cleanup must not hide the original error
            log.warning("could not clean up %s: %s", self.tmp, err)


def prepare_output(path: str, overwrite: bool) -> OutputDir:
    """Refuse a non-empty output directory unless overwriting; make the run's temporary directory."""
    path = path.rstrip("/") or "/"
    created = False
    try:
        if FileSystems.exists(path):
            existing = [e for e in children(path) if not e.rstrip("/").rsplit("/", 1)[-1].startswith(TMP_PREFIX)]
            if existing and not overwrite:
                raise OutputError(f"output directory {path} already holds {len(existing)} entries (e.g. "
                                  f"{existing[0]}); pass --overwrite to replace its train/val/test files")
        else:
            FileSystems.mkdirs(path)
            created = True
        tmp = FileSystems.join(path, f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}")
        for sub in ("", SHARDS_DIR, "pieces"):
            FileSystems.mkdirs(FileSystems.join(tmp, sub) if sub else tmp)
        probe = FileSystems.join(tmp, "probe")
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except OutputError:
        raise
    except Exception as err:
        raise OutputError(f"output directory {path} cannot be written: {err}") from None
    return OutputDir(path, tmp, created)
