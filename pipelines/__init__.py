"""Pipeline assembly, the config, and the root2hdf5 command line."""
