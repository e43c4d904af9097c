import h5py
import numpy as np

try:
    import hdf5plugin  # noqa: F401  (only needed for output.compression blosc-lz4 / blosc-zstd)
except ImportError:
    pass


class Batches:
    """(inputs, labels, weights) batches of a split file as NumPy arrays: batch k = rows [k*size, (k+1)*size).
    The interface of keras.utils.PyDataset: `class KerasBatches(Batches, keras.utils.PyDataset)` then
    `model.fit(KerasBatches("out/example/train.h5"))`."""

    def __init__(self, path, size=1024, inputs=("constituents", "mask", "jets"), **kwargs):
        super().__init__(**kwargs)
        self.path, self.size, self.inputs, self.file = path, size, inputs, None
        with h5py.File(path) as f:
            self.n = len(f["labels"])

    def __len__(self):
        return -(-self.n // self.size)

    def __getitem__(self, k):
        self.file = self.file or h5py.File(self.path)
        rows = slice(k * self.size, (k + 1) * self.size)
        x = {name: self.file[name][rows] for name in self.inputs}
        return x, self.file["labels"][rows].astype(np.int64), self.file["weights"][rows]
