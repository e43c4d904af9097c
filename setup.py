"""root2hdf5: ROOT jet ntuples -> globally shuffled, padded HDF5 training sets, with Apache Beam."""
from setuptools import find_packages, setup

# One import root, root2hdf5, over the two folders the repository shows: pipelines/ and transforms/ are
# installed as root2hdf5.pipelines and root2hdf5.transforms (nothing generic lands in site-packages).
FOLDERS = ("pipelines", "transforms")
PACKAGES = ["root2hdf5"] + [f"root2hdf5.{p}" for p in find_packages(include=[f"{f}*" for f in FOLDERS])]

# Optional speed-ups and codecs (see docs/outputs.md "Compression" and BENCHMARKS.md); each falls back cleanly.
DEFLATE, LZF, BLOSC = "deflate>=0.8", "lzf>=0.1", "hdf5plugin>=4"
FAST = [DEFLATE, LZF, BLOSC]

setup(
    name="root2hdf5",
    version="0.1.0",
    description="Apache Beam pipeline turning ROOT jet ntuples into shuffled, padded HDF5 training sets",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=PACKAGES,
    package_dir={"root2hdf5": "root2hdf5", **{f"root2hdf5.{f}": f for f in FOLDERS}},
    package_data={"root2hdf5.pipelines.runners": ["jobserver/*.xml"]},
    install_requires=[
        "apache-beam>=2.60",
        "uproot>=5.4",
        "awkward>=2.6",
        "numpy>=1.24",
        "h5py>=3.8",
        "pyarrow>=14",
        "pyyaml>=6",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-xdist>=3", "ruff>=0.6", "xrootd>=5.6", "fsspec-xrootd>=0.3", "onnx>=1.14",
                 "onnxruntime>=1.16", "matplotlib>=3.7", "atlas-ftag-tools>=0.2", "pandas>=2", "polars>=1", *FAST],
        "fast": FAST,  # all three below
        "deflate": [DEFLATE],  # libdeflate inflates ROOT's zlib baskets ~1.7x faster than zlib (wheels)
        "lzf": [LZF],  # byte-reproducible lzf chunks (liblzf 3.6 via CFFI; built with a C compiler at install)
        "blosc": [BLOSC],  # output.compression blosc-lz4 / blosc-zstd (HDF5 filter plugins, wheels)
        "inspect": ["matplotlib>=3.7"],  # root2hdf5 inspect: plots (mplhep style when installed)
        "xrootd": ["xrootd>=5.6", "fsspec-xrootd>=0.3"],  # root:// inputs
        "onnx": ["onnx>=1.14", "onnxruntime>=1.16"],  # model: scores or weights from an ONNX model
    },
    entry_points={"console_scripts": ["root2hdf5=root2hdf5.pipelines.cli:main"]},
)
