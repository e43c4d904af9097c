"""`python -m root2hdf5 ...` is the `root2hdf5` command."""
import sys

from root2hdf5.pipelines.cli import main

sys.exit(main())
