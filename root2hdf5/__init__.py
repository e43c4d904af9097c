"""root2hdf5: ROOT jet ntuples -> globally shuffled, padded HDF5 training sets, with Apache Beam.

One import root over the repository's two folders (setup.py maps them here):

    root2hdf5.pipelines    assembly: the config, the plan, the Beam graph, the driver, runners, the command line
    root2hdf5.transforms   the Beam transforms and their kernels, one subpackage per stage of the dataflow:
                           read -> rows -> physics -> output, with stats beside and core beneath
"""
__version__ = "0.1.0"
