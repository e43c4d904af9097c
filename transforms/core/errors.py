"""Errors a user can act on. Each message names the file, tree, branch or config key at fault."""

import errno
from contextlib import contextmanager


class Root2Hdf5Error(Exception):
    """Base class; the command line prints these without a traceback."""


class ConfigError(Root2Hdf5Error):
    """The YAML config is invalid: unknown key, wrong type, impossible value."""


class InputError(Root2Hdf5Error):
    """An input file, tree or branch cannot be used as configured."""


class OutputError(Root2Hdf5Error):
    """The output location cannot be written, or already holds a result."""


@contextmanager
def output_errors(path: str):
    """Turn an OS-level failure while writing `path` (no space, no permission, ...) into an OutputError."""
    try:
        yield
    except Root2Hdf5Error:
        raise
    except OSError as err:  # includes Beam's BeamIOError and h5py's write errors
        if err.errno == errno.ENOSPC or "No space left on device" in str(err):  # Beam wraps it in its own text
            raise OutputError(f"no space left on device writing {path}") from None
        raise OutputError(f"writing {path} failed: {err}") from None
