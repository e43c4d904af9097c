"""Throughput of the jet-image kernels (transforms/physics/images.py) on padded jets, single process.

    python bench/images.py                   # the Pythia jets of ../shared/data, else synthetic ones
    python bench/images.py --synthetic --jets 200000 --batch 20000

Times, per batch of --batch jets (best of --repeat), and prints jets/s for:
  pad        pad_constituents (sort + pad to --max), the step images come after, for scale;
  pixels     raw-frame coordinates + pixel_indices, 64 x 64 over [-2, 2]^2 (the old converter's grid);
  angular    the angular frame alone (transforms.physics.library.angular);
  dense      dense_images alone, 32 x 32 x 2 (pt, count), normalized, float16, on angular coordinates;
  dense_all  compute() of that image: angular frame + channels + dense_images.
plus the bytes per jet of both datasets raw and as stored (lzf + shuffle, 256-jet chunks, as the pipeline
writes). The numbers are one core's; the pipeline runs one batch per worker.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from root2hdf5.transforms.core.batch import Jagged  # noqa: E402
from root2hdf5.transforms.output.hdf5_files import Storage  # noqa: E402
from root2hdf5.transforms.physics import images  # noqa: E402
from root2hdf5.transforms.physics.padding import pad_constituents  # noqa: E402
from root2hdf5.transforms.physics.preprocess import Inputs  # noqa: E402

SHARED = os.environ.get("ROOT2HDF5_SHARED_DATA", os.path.join(REPO, "..", "shared", "data"))
FILES = ["jets_flat_zprime.root", "jets_flat_dijet.root"]
TREE = "FlatSubstructureJetTree"
CONSTITUENTS = ["fjet_clus_pt", "fjet_clus_eta", "fjet_clus_phi", "fjet_clus_E"]
JETS = ["fjet_eta", "fjet_phi"]
ROLES = {"pt": "fjet_clus_pt", "eta": "fjet_clus_eta", "phi": "fjet_clus_phi", "e": "fjet_clus_E"}
JET_ROLES = {"eta": "fjet_eta", "phi": "fjet_phi"}

PIXELS = images.ImageSpec.from_dict({"name": "pixels", "kind": "pixels", "bins": [64, 64],
                                     "range": [[-2, 2], [-2, 2]], "frame": "raw"})
DENSE = images.ImageSpec.from_dict({"name": "image", "kind": "dense", "bins": [32, 32], "range": [[-1, 1], [-1, 1]],
                                    "frame": "angular", "channels": ["pt", "count"], "normalize": True,
                                    "dtype": "float16"})


def real_jets() -> tuple[dict[str, Jagged], dict[str, np.ndarray]] | None:
    paths = [os.path.join(SHARED, f) for f in FILES]
    if not all(os.path.exists(p) for p in paths):
        return None
    import awkward as ak
    import uproot

    parts = [uproot.open(p)[TREE].arrays(CONSTITUENTS + JETS) for p in paths]
    arrays = ak.concatenate(parts)
    return ({n: Jagged.from_awkward(arrays[n]) for n in CONSTITUENTS},
            {n: np.asarray(arrays[n], np.float32) for n in JETS})


def synthetic_jets(n: int, seed: int = 0) -> tuple[dict[str, Jagged], dict[str, np.ndarray]]:
    """Jets shaped like the shared ones: ~60 constituents (up to ~150), R = 1 around a random axis, MeV."""
    rng = np.random.default_rng(seed)
    counts = np.clip(rng.normal(60, 20, n).astype(np.int64), 1, 160)
    total = int(counts.sum())
    jet = np.repeat(np.arange(n), counts)
    jet_eta, jet_phi = rng.uniform(-2, 2, n).astype(np.float32), rng.uniform(-np.pi, np.pi, n).astype(np.float32)
    eta = jet_eta[jet] + rng.normal(0, 0.3, total)
    phi = (jet_phi[jet] + rng.normal(0, 0.3, total) + np.pi) % (2 * np.pi) - np.pi
    pt = rng.exponential(8000, total) + 400
    content = {"fjet_clus_pt": pt, "fjet_clus_eta": eta, "fjet_clus_phi": phi, "fjet_clus_E": pt * np.cosh(eta)}
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return ({k: Jagged(v.astype(np.float32), starts, counts) for k, v in content.items()},
            {"fjet_eta": jet_eta, "fjet_phi": jet_phi})


def tile(jagged: dict[str, Jagged], jets: dict[str, np.ndarray], n: int):
    """At least n jets by repeating the sample (the kernels' cost does not depend on repeats)."""
    index = np.resize(np.arange(len(jets["fjet_eta"])), n)
    return {k: v.take(index) for k, v in jagged.items()}, {k: v[index] for k, v in jets.items()}


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        begin = time.perf_counter()
        fn()
        times.append(time.perf_counter() - begin)
    return min(times)


def stored_bytes(name: str, data: np.ndarray) -> int:
    import h5py

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "x.h5")
        with h5py.File(path, "w") as f:
            f.create_dataset(name, data=data, **Storage().options(len(data), data.shape[1:]))
        return os.path.getsize(path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jets", type=int, default=100_000, help="jets timed in total")
    parser.add_argument("--batch", type=int, default=10_000, help="jets per kernel call")
    parser.add_argument("--max", type=int, default=100, help="constituent slots per jet")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synthetic", action="store_true", help="ignore ../shared/data")
    args = parser.parse_args()

    loaded = None if args.synthetic else real_jets()
    source = "shared Pythia jets (" + ", ".join(FILES) + ")" if loaded else "synthetic jets"
    jagged, jets = tile(*(loaded or synthetic_jets(min(args.jets, 50_000))), args.jets)
    batches = []
    for start in range(0, args.jets, args.batch):
        part = slice(start, min(start + args.batch, args.jets))
        batches.append(({k: v.take(part) for k, v in jagged.items()}, {k: v[part] for k, v in jets.items()}))

    seconds = {"pad": 0.0, "pixels": 0.0, "angular": 0.0, "dense": 0.0, "dense_all": 0.0}
    inputs_list = []
    for jag, jet in batches:
        seconds["pad"] += best(lambda: pad_constituents(jag, "fjet_clus_pt", args.max), args.repeat)
        padded, mask = pad_constituents(jag, "fjet_clus_pt", args.max)
        padded = {k: v * np.float32(0.001) if k in ("fjet_clus_pt", "fjet_clus_E") else v for k, v in padded.items()}
        inputs = Inputs(padded, ROLES, mask, jet, JET_ROLES)
        inputs_list.append(inputs)
        seconds["pixels"] += best(lambda: images.compute(PIXELS, inputs), args.repeat)
        seconds["angular"] += best(lambda: images.coordinates(DENSE, inputs), args.repeat)
        eta, phi = images.coordinates(DENSE, inputs)
        channels = images.channel_values(DENSE, inputs)
        seconds["dense"] += best(lambda: images.dense_images(eta, phi, mask, channels, DENSE.bins, DENSE.range,
                                                             DENSE.normalize, DENSE.dtype), args.repeat)
        seconds["dense_all"] += best(lambda: images.compute(DENSE, inputs), args.repeat)

    # sizes on the first batch (what a file of those jets would hold)
    first = inputs_list[0]
    pixels, clipped = images.compute(PIXELS, first)
    dense, dropped = images.compute(DENSE, first)
    n, valid = len(first.mask), int(first.mask.sum())
    result = {
        "source": source, "jets": args.jets, "batch": args.batch, "max_constituents": args.max,
        "valid_constituents_per_jet": round(valid / n, 1),
        "jets_per_second": {k: round(args.jets / v) for k, v in seconds.items()},
        "bytes_per_jet": {
            "pixels_raw": pixels[0].nbytes, "pixels_stored_lzf": round(stored_bytes("pixels", pixels) / n, 1),
            "dense_raw": dense[0].nbytes, "dense_stored_lzf": round(stored_bytes("image", dense) / n, 1),
        },
        "outside_fraction": {"pixels_clipped": round(clipped / valid, 4), "dense_dropped": round(dropped / valid, 4)},
    }
    for name, value in result["jets_per_second"].items():
        print(f"{name:>10}: {value:>12,} jets/s")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
