"""The side-by-side input of issue 19: ROOT-written per-event TTrees, 2 files x 150k events, built by ROOT
itself from the shared Pythia files (TTree::CloneTree(0) + Fill: same 20 branches and types, ZLIB level 1,
ROOT's own basket sizes and clusters), 30 copies each; eventNumber += copy * 10**9 keeps events unique.

uproot cannot write vector<vector<float>> TTree branches, so this needs ROOT. The PyPI wheel is enough and
needs no system install; put it in a folder of its own:

    pip install --pre --target bench/data/rootpkg ROOT          # ROOT 6.40 as a wheel (~400 MB)
    PYTHONPATH=bench/data/rootpkg python bench/make_ttrees.py [--copies 30] [--out bench/data/ttrees]

bench/run.py does this itself when the files are missing and --root-path points to such a folder.
"""
from __future__ import annotations

import argparse
import os

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.join(HERE, "..", "..", "shared", "data")
TREE = "IsolatedJet_tree"


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--copies", type=int, default=30)
    parser.add_argument("--out", default=os.path.join(HERE, "data", "ttrees"))
    parser.add_argument("--shared", default=SHARED)
    args = parser.parse_args()
    import ROOT

    ROOT.gROOT.SetBatch(True)
    ROOT.gInterpreter.Declare(r'''
    void root2hdf5_replicate(const char* src, const char* out, int copies) {
      TFile fin(src);
      TTree* in = (TTree*) fin.Get("IsolatedJet_tree");
      TFile fout(out, "RECREATE");
      fout.SetCompressionSettings(101);  // ZLIB level 1, as the shared files
      TTree* tree = in->CloneTree(0);
      ULong64_t ev = 0;
      in->SetBranchAddress("eventNumber", &ev);
      tree->SetBranchAddress("eventNumber", &ev);
      Long64_t n = in->GetEntries();
      for (int c = 0; c < copies; ++c)
        for (Long64_t i = 0; i < n; ++i) { in->GetEntry(i); ev += (ULong64_t) c * 1000000000ULL; tree->Fill(); }
      tree->Write();
      fout.Close();
    }''')
    os.makedirs(args.out, exist_ok=True)
    for kind in ("zprime", "dijet"):
        out = os.path.join(args.out, f"events_{kind}_{args.copies * 5000}.root")
        ROOT.root2hdf5_replicate(os.path.join(args.shared, f"jets_events_{kind}.root"), out + ".part", args.copies)
        os.replace(out + ".part", out)
        print(out, os.path.getsize(out))


if __name__ == "__main__":
    main()
