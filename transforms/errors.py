"""Errors a user can act on. Each message names the file, tree, branch or config key at fault."""


class Root2Hdf5Error(Exception):
    """Base class; the command line prints these without a traceback."""


class ConfigError(Root2Hdf5Error):
    """The YAML config is invalid: unknown key, wrong type, impossible value."""


class InputError(Root2Hdf5Error):
    """An input file, tree or branch cannot be used as configured."""


class OutputError(Root2Hdf5Error):
    """The output location cannot be written, or already holds a result."""
