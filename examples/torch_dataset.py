import h5py
import torch

try:
    import hdf5plugin  # noqa: F401  (only needed for output.compression blosc-lz4 / blosc-zstd)
except ImportError:
    pass


class JetChunks(torch.utils.data.Dataset):
    """Item k = jets [k*chunk, (k+1)*chunk) of a split file. The rows are globally shuffled, so a contiguous
    chunk is a random batch read at sequential speed; shuffle=True in the DataLoader varies the order."""

    def __init__(self, path, chunk=1024, names=("constituents", "mask", "jets", "labels", "weights")):
        self.path, self.chunk, self.names, self.file = path, chunk, names, None
        with h5py.File(path) as f:
            self.n = len(f["labels"])

    def __len__(self):
        return -(-self.n // self.chunk)

    def __getitem__(self, k):
        self.file = self.file or h5py.File(self.path)  # opened in each DataLoader worker, not inherited
        rows = slice(k * self.chunk, (k + 1) * self.chunk)
        return {name: torch.from_numpy(self.file[name][rows]) for name in self.names}


# loader = torch.utils.data.DataLoader(JetChunks("out/example/train.h5"), batch_size=None, shuffle=True,
#                                      num_workers=2)
