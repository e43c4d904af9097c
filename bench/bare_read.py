"""The floor: read exactly the branches the conversion needs with uproot, in the same entry ranges,
single process, doing nothing with them.

    python bench/bare_read.py --tree IsolatedJet_tree --branches a,b,c --step 50000 FILE [FILE ...]

--inflate deflate inflates ROOT's zlib baskets with libdeflate, as the pipeline does when `deflate` is
installed (transforms/read/inflate.py): the floor the pipeline itself reads at.
"""
from __future__ import annotations

import argparse
import json
import time

import uproot


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("files", nargs="+")
    parser.add_argument("--tree", required=True)
    parser.add_argument("--branches", required=True)
    parser.add_argument("--step", type=int, default=50_000)
    parser.add_argument("--inflate", choices=("zlib", "deflate"), default="zlib")
    args = parser.parse_args()
    if args.inflate == "deflate":
        from root2hdf5.transforms.read import inflate

        if inflate.install() != "libdeflate":
            raise SystemExit("--inflate deflate: the deflate package is not installed")
    begin = time.perf_counter()
    branches = args.branches.split(",")
    entries = 0
    for path in args.files:
        tree = uproot.open(path)[args.tree]
        for start in range(0, tree.num_entries, args.step):
            arrays = tree.arrays(branches, entry_start=start, entry_stop=min(tree.num_entries, start + args.step),
                                 array_cache=None)
            entries += len(arrays)
    print(json.dumps({"entries": entries, "seconds": time.perf_counter() - begin}))


if __name__ == "__main__":
    main()
