"""The benchmark: on the same input, in one go,

1. the bare uproot read of exactly the branches the job needs (bench/bare_read.py), the floor;
2. the full pipeline on the DirectRunner (FnApiRunner) with 1 and 2 workers;
3. the single-process uproot + numpy + h5py converter a physicist would write (bench/peer.py);

then the pipeline with each compression (size and speed), and peak memory against input size. Wall times
are whole processes (imports included); peak RSS is summed over the process and all its children (Beam
workers), sampled every 0.1 s.

    python bench/run.py                          # 1M jets, synthetic + real-format inputs
    python bench/run.py --jets 100000 --quick    # a smoke run
    python bench/run.py --write                  # also update the results section of BENCHMARKS.md

Inputs: `synthetic` = per-event RNTuple written by bench/generate.py (vector<vector<float>> fields, fast
to read); `real` = the ROOT-written Pythia TTrees of ../shared/data (vector<vector<float>> branches, as
users have them), copied under /tmp until they hold about --jets jets (skipped when the folder is absent);
`ttrees` = issue 19's side-by-side input: two ROOT-written per-event TTrees of 150k events each
(bench/make_ttrees.py, which needs ROOT: see there), measured side by side in --repeat interleaved rounds
(bare read with zlib and with libdeflate, the pipeline with lzf and with blosc-lz4, 2 workers; medians).

    python bench/run.py --input ttrees --repeat 3 --stages   # + the per-stage CPU table of one lzf run
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)
sys.path.insert(0, HERE)

import generate  # noqa: E402

SHARED = os.path.join(REPO, "..", "shared", "data")
BRANCHES = ["jet_pt", "jet_eta", "jet_phi", "jet_E", "jet_constit_pt", "jet_constit_eta", "jet_constit_phi",
            "jet_constit_e", "eventNumber", "rho", "NPV"]
STEP = 50_000
MARK_BEGIN, MARK_END = "<!-- bench:begin -->", "<!-- bench:end -->"


# ------------------------------------------------------------------------------------------- measuring


def _children(pid: int) -> list[int]:
    kids = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(stat.split("/")[2]))
        except (OSError, IndexError, ValueError):
            pass
    return kids


def _tree_rss(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/statm") as handle:
                total += int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            continue
        todo.extend(_children(p))
    return total


def measure(cmd: list[str], cwd: str = REPO) -> dict:
    begin = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample():
        while proc.poll() is None:
            peak[0] = max(peak[0], _tree_rss(proc.pid))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - begin
    sampler.join()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{err[-3000:]}")
    return {"wall": wall, "rss": peak[0], "stdout": out}


# ---------------------------------------------------------------------------------------------- inputs


def synthetic_input(jets: int, data: str) -> dict:
    path = generate.generate(jets, data, layouts=("events",))["events"]
    return {"name": "synthetic", "files": [path], "tree": "IsolatedJet_tree",
            "description": f"per-event RNTuple from bench/generate.py ({os.path.getsize(path) / 1e9:.2f} GB)"}


def real_input(jets: int) -> dict | None:
    sources = [os.path.join(SHARED, f"jets_events_{k}.root") for k in ("zprime", "dijet")]
    if not all(os.path.exists(s) for s in sources):
        return None
    copies = max(1, math.ceil(jets / 20_800))  # a zprime + dijet pair holds 20,813 jets
    folder = os.path.join(tempfile.gettempdir(), f"root2hdf5-bench-real-{copies}")
    os.makedirs(folder, exist_ok=True)
    files = []
    for i in range(copies):
        for source in sources:
            target = os.path.join(folder, f"{i:03d}_{os.path.basename(source)}")
            if not os.path.exists(target):
                shutil.copyfile(source, target)
            files.append(target)
    size = sum(os.path.getsize(f) for f in files) / 1e9
    return {"name": "real", "files": files, "tree": "IsolatedJet_tree",
            "description": f"{len(files)} copies of the ROOT-written Pythia TTrees in shared/data ({size:.2f} GB)"}


def ttrees_input(folder: str, root_path: str | None) -> dict | None:
    files = [os.path.join(folder, f"events_{k}_150000.root") for k in ("zprime", "dijet")]
    if not all(os.path.exists(f) for f in files):
        if not root_path:
            return None
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root_path, os.environ.get("PYTHONPATH")])))
        subprocess.run([sys.executable, os.path.join(HERE, "make_ttrees.py"), "--out", folder], env=env, check=True)
    size = sum(os.path.getsize(f) for f in files) / 1e9
    return {"name": "ttrees", "files": files, "tree": "IsolatedJet_tree",
            "description": f"2 ROOT-written per-event TTrees x 150k events, bench/make_ttrees.py ({size:.2f} GB)"}


def write_config(inp: dict, out_dir: str, compression: str, folder: str) -> str:
    cfg = {
        "samples": [{"name": "jets", "files": inp["files"], "tree": inp["tree"], "label": 1}],
        "input": {"layout": "events", "leading_jets": 2, "event_number": "eventNumber",
                  "jet_branches": BRANCHES[:4], "constituent_branches": BRANCHES[4:8], "event_branches": BRANCHES[9:],
                  "step_size": STEP},
        "constituents": {"max": 80},
        "preprocess": {"constituents": "cartesian", "jets": "raw", "unit_scale": 0.001},
        "shuffle": {"seed": 1, "shards": 16},
        "output": {"dir": out_dir, "compression": compression},
    }
    path = os.path.join(folder, f"bench-{inp['name']}-{compression}.yaml")
    with open(path, "w") as handle:
        yaml.safe_dump(cfg, handle)
    return path


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files)


# ------------------------------------------------------------------------------------------------ runs


def run_suite(inp: dict, work: str, compressions: list[str], jets_hint: int) -> dict:
    bare = measure([sys.executable, os.path.join(HERE, "bare_read.py"), "--tree", inp["tree"], "--branches",
                    ",".join(BRANCHES), "--step", str(STEP), *inp["files"]])
    results = {"bare": bare}
    default = compressions[0]
    for workers in (1, 2):
        out = os.path.join(work, f"{inp['name']}-w{workers}")
        mode = "in_memory" if workers == 1 else "multi_processing"
        results[f"pipeline{workers}"] = measure([
            "root2hdf5", "run", write_config(inp, out, default, work), "-q", "--overwrite",
            f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"])
        with open(os.path.join(out, "summary.json")) as handle:
            results["jets"] = json.load(handle)["total"]["written"]
    peer_out = os.path.join(work, f"{inp['name']}-peer")
    results["peer"] = measure([sys.executable, os.path.join(HERE, "peer.py"), "--out", peer_out, "--compression",
                               default, "--tree", inp["tree"], *inp["files"]])
    results["compression"] = {}
    for compression in compressions:
        out = os.path.join(work, f"{inp['name']}-{compression}")
        timing = results["pipeline2"] if compression == default else measure([
            "root2hdf5", "run", write_config(inp, out, compression, work), "-q", "--overwrite",
            "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
        size = dir_size(os.path.join(work, f"{inp['name']}-w2") if compression == default else out)
        results["compression"][compression] = {"wall": timing["wall"], "bytes": size}
    return results


def side_by_side(inp: dict, work: str, repeat: int, stages: bool) -> dict:
    """Bare reads and pipeline runs in turn, `repeat` rounds; medians of the wall times and peak RSS."""
    bare = [sys.executable, os.path.join(HERE, "bare_read.py"), "--tree", inp["tree"], "--branches",
            ",".join(BRANCHES), "--step", str(STEP), *inp["files"]]
    pipe = lambda c: ["root2hdf5", "run", write_config(inp, os.path.join(work, f"side-{c}"), c, work), "-q",  # noqa
                      "--overwrite", "--direct_num_workers=2", "--direct_running_mode=multi_processing"]
    variants = {"bare read, zlib": bare, "bare read, libdeflate": bare + ["--inflate", "deflate"],
                "pipeline, lzf": pipe("lzf"), "pipeline, blosc-lz4": pipe("blosc-lz4")}
    runs = {name: [] for name in variants}
    for _ in range(repeat):
        for name, cmd in variants.items():
            runs[name].append(measure(cmd))
    with open(os.path.join(work, "side-lzf", "summary.json")) as handle:
        jets = json.load(handle)["total"]["written"]
    result = {"jets": jets, "runs": {}}
    for name, rs in runs.items():
        result["runs"][name] = {"wall": statistics.median(r["wall"] for r in rs), "walls": [r["wall"] for r in rs],
                                "rss": statistics.median(r["rss"] for r in rs)}
    if stages:
        folder = os.path.join(work, "stages")
        os.makedirs(folder, exist_ok=True)
        os.environ["ROOT2HDF5_STAGE_TIMES"] = folder
        try:
            measure(pipe("lzf"))
        finally:
            del os.environ["ROOT2HDF5_STAGE_TIMES"]
        import stages as stage_table

        result["stages"] = stage_table.markdown(stage_table.table(stage_table.load(folder))[0])
    return result


def memory_growth(sizes: list[int], data: str, work: str, compression: str) -> list[dict]:
    rows = []
    for jets in sizes:
        inp = synthetic_input(jets, data)
        out = os.path.join(work, f"growth-{jets}")
        pipe = measure(["root2hdf5", "run", write_config(inp, out, compression, work), "-q", "--overwrite",
                        "--direct_num_workers=2", "--direct_running_mode=multi_processing"])
        peer = measure([sys.executable, os.path.join(HERE, "peer.py"), "--out", out + "-peer", "--compression",
                        compression, *inp["files"]])
        rows.append({"jets": jets, "pipeline": pipe, "peer": peer})
    return rows


# --------------------------------------------------------------------------------------------- report


def machine() -> str:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(l.split(":", 1)[1].strip() for l in handle if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        with open("/proc/meminfo") as handle:
            mem = int(handle.readline().split()[1]) / 2**20
    except OSError:
        mem = float("nan")
    from importlib import metadata
    versions = ", ".join(f"{p} {metadata.version(p)}" for p in ("apache-beam", "uproot", "awkward", "numpy", "h5py"))
    return (f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}; {versions}")


def gb(n: float) -> str:
    return f"{n / 2**30:.2f} GiB"


def report(suites: dict, growth: list[dict], args) -> str:
    lines = [f"Measured {time.strftime('%Y-%m-%d')} with `python bench/run.py --jets {args.jets}` on {machine()}.", ""]
    for name, (inp, r) in suites.items():
        if name == "ttrees":
            floor = r["runs"]["bare read, zlib"]["wall"]
            lines += [f"### Input `ttrees`: {inp['description']}, {r['jets']:,} jets written", "",
                      f"Side by side, {args.repeat} interleaved rounds, medians (2 DirectRunner workers):", "",
                      "| variant | wall (s), median | runs | peak RSS | / bare read (zlib) |", "|---|---|---|---|---|"]
            for variant, m in r["runs"].items():
                lines.append(f"| {variant} | {m['wall']:.1f} | {', '.join(f'{w:.1f}' for w in m['walls'])} | "
                             f"{gb(m['rss'])} | {m['wall'] / floor:.2f} |")
            if "stages" in r:
                lines += ["", "CPU seconds per stage of one lzf run, all processes:", "", r["stages"]]
            lines.append("")
            continue
        jets, bare, peer = r["jets"], r["bare"]["wall"], r["peer"]["wall"]
        lines += [f"### Input `{name}`: {inp['description']}, {jets:,} jets written", "",
                  "| variant | wall (s) | jets/s | peak RSS | / bare read | / peer |", "|---|---|---|---|---|---|"]
        for key, label in (("bare", "bare uproot read (floor)"), ("pipeline1", "pipeline, 1 worker"),
                           ("pipeline2", "pipeline, 2 workers"), ("peer", "single-process peer")):
            m = r[key]
            lines.append(f"| {label} | {m['wall']:.1f} | {jets / m['wall']:,.0f} | {gb(m['rss'])} | "
                         f"{m['wall'] / bare:.2f} | {m['wall'] / peer:.2f} |")
        lines += ["", "Compression (pipeline, 2 workers; output size of the shards):", "",
                  "| compression | wall (s) | size | bytes/jet |", "|---|---|---|---|"]
        for comp, c in r["compression"].items():
            lines.append(f"| {comp} | {c['wall']:.1f} | {gb(c['bytes'])} | {c['bytes'] / jets:,.0f} |")
        lines.append("")
    if growth:
        lines += ["### Peak memory against input size (synthetic input, 2 workers)", "",
                  "| jets in input | pipeline wall (s) | pipeline peak RSS | peer wall (s) | peer peak RSS |",
                  "|---|---|---|---|---|"]
        for row in growth:
            lines.append(f"| {row['jets']:,} | {row['pipeline']['wall']:.1f} | {gb(row['pipeline']['rss'])} | "
                         f"{row['peer']['wall']:.1f} | {gb(row['peer']['rss'])} |")
        lines.append("")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jets", type=int, default=1_000_000)
    parser.add_argument("--input", default="synthetic,real")
    parser.add_argument("--compression", default="lzf,none,gzip", help="the first is used for the main table")
    parser.add_argument("--growth", default="100000,300000,1000000", help="input sizes for the memory table")
    parser.add_argument("--quick", action="store_true", help="no compression and memory tables")
    parser.add_argument("--data", default=os.path.join(HERE, "data"))
    parser.add_argument("--ttrees", default=os.path.join(HERE, "data", "ttrees"), help="folder of the ttrees input")
    parser.add_argument("--root-path", help="folder with the ROOT wheel installed (--target), to build it")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of the side-by-side ttrees measurement")
    parser.add_argument("--stages", action="store_true", help="ttrees: also the per-stage CPU table")
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="root2hdf5-bench-")
    compressions = args.compression.split(",")[:1] if args.quick else args.compression.split(",")
    suites = {}
    try:
        for name in args.input.split(","):
            if name == "ttrees":
                inp = ttrees_input(args.ttrees, args.root_path)
                if inp is None:
                    print(f"skipping input ttrees: not in {args.ttrees} (see bench/make_ttrees.py)", file=sys.stderr)
                    continue
                print(f"running input {name}: {inp['description']}", file=sys.stderr)
                suites[name] = (inp, side_by_side(inp, work, args.repeat, args.stages))
                continue
            inp = synthetic_input(args.jets, args.data) if name == "synthetic" else real_input(args.jets)
            if inp is None:
                print(f"skipping input {name!r}: {SHARED} not found", file=sys.stderr)
                continue
            print(f"running input {name}: {inp['description']}", file=sys.stderr)
            suites[name] = (inp, run_suite(inp, work, compressions, args.jets))
        sizes = [] if args.quick or "synthetic" not in args.input.split(",") else args.growth.split(",")
        growth = memory_growth([int(x) for x in sizes], args.data, work, compressions[0]) if sizes else []
    finally:
        shutil.rmtree(work, ignore_errors=True)
    text = report(suites, growth, args)
    print(text)
    if args.write:
        path = os.path.join(REPO, "BENCHMARKS.md")
        with open(path) as handle:
            content = handle.read()
        head, _, rest = content.partition(MARK_BEGIN)
        _, _, tail = rest.partition(MARK_END)
        with open(path, "w") as handle:
            handle.write(f"{head}{MARK_BEGIN}\n{text}\n{MARK_END}{tail}")


if __name__ == "__main__":
    main()
