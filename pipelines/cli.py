"""The `root2hdf5` command.

    root2hdf5 run CONFIG [--overwrite] [--set key=value ...] [Beam pipeline options ...]
    root2hdf5 inspect PATH [--max-jets N] [--plots DIR | --no-plots] [--logy]
    root2hdf5 init ROOTFILE [--tree NAME] [-o CONFIG]
    root2hdf5 make-example DIR [--events N]
    root2hdf5 jobserver build flink|spark|all
    root2hdf5 flink-cluster start|stop DIR [--port 8081]

Options the command does not know are Beam pipeline options (`--runner`, `--direct_num_workers`,
`--flink_master`, ...). Without any, the DirectRunner runs with one worker process per core.
"""
from __future__ import annotations

import argparse
import logging
import os
import re
import sys
import traceback

import yaml

from root2hdf5.transforms.core.errors import Root2Hdf5Error

log = logging.getLogger("root2hdf5")


def user_error(err: BaseException) -> str | None:
    """The message of a Root2Hdf5Error, also when a runner wrapped it into another exception's text."""
    if isinstance(err, Root2Hdf5Error):
        return re.sub(r" \[while running .*?\]$", "", str(err), flags=re.S)
    text = str(err)
    hits = [m for m in re.finditer(r"(?:ConfigError|InputError|OutputError|Root2Hdf5Error): ", text)]
    if not hits:
        return None
    tail = text[hits[-1].end():]
    tail = re.split(r" \[while running |\n\n|\nTraceback ", tail)[0]
    return tail.strip()


def worker_error(err: BaseException) -> str | None:
    """The last line of a traceback that a worker sent with its failure (the exception and its message)."""
    text = str(err)
    if "Traceback (most recent call last)" not in text:
        return None
    causes = re.findall(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Fault)\b.*)$", text, flags=re.M)
    return re.sub(r" \[while running .*?\]$", "", causes[-1]) if causes else None


def default_beam_args(beam_args: list[str], quiet: bool = False, verbose: bool = False) -> list[str]:
    """Multi-process DirectRunner unless told otherwise; quiet Beam worker logs."""
    from root2hdf5.pipelines.runners.args import runs_locally

    args = list(beam_args)
    given = " ".join(args)
    if runs_locally(args):
        if "--direct_num_workers" not in given:
            args.append(f"--direct_num_workers={os.cpu_count() or 1}")
        if "--direct_running_mode" not in given:
            args.append("--direct_running_mode=multi_processing")
    if "--default_sdk_harness_log_level" not in given:
        args.append("--default_sdk_harness_log_level=WARN")  # a name both the Python and Java SDKs accept
    if "--sdk_harness_log_level_overrides" not in given:
        level = "WARN" if quiet else "DEBUG" if verbose else "INFO"
        # a failing worker logs its traceback (~170 lines with Beam's frames); the driver prints the cause
        beam = "" if verbose else ', "apache_beam": "CRITICAL"'
        args.append(f'--sdk_harness_log_level_overrides={{"root2hdf5": "{level}"{beam}}}')
    return args


def _parse_overrides(items: list[str]) -> dict:
    overrides = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise Root2Hdf5Error(f"--set {item!r}: expected key=value, e.g. --set output.dir=out/test")
        overrides[key.strip()] = yaml.safe_load(value)
    return overrides


def cmd_run(args, beam_args) -> int:
    from root2hdf5.pipelines.runners import forks

    beam_args = default_beam_args(beam_args, args.quiet, args.verbose)
    with forks.warm(beam_args):  # the workers' interpreter loads while this one loads Beam and the config
        from root2hdf5.pipelines.config import load_config
        from root2hdf5.pipelines.run import run

        cfg = load_config(args.config, overrides=_parse_overrides(args.set))
        report = run(cfg, beam_args, overwrite=args.overwrite, progress_every=args.progress_every)
    try:
        _print_run(report, cfg)
    except KeyboardInterrupt:
        print(f"root2hdf5: interrupted after the output was finalized: {cfg.output.dir} is complete (summary.json)",
              file=sys.stderr)
        return 130
    return 0


def _print_run(report: dict, cfg) -> None:
    from root2hdf5.transforms.stats.report import format_report

    print(format_report(report))
    written = report["total"]["written"]
    rows = "events" if report.get("record") == "event" else "jets"
    print(f"\nwrote {written:,} {rows} to {cfg.output.dir} in {report['seconds']:.1f} s "
          f"({written / max(report['seconds'], 1e-9):,.0f} {rows}/s); accounting in {cfg.output.dir}/summary.json")
    for name, varied in report.get("variations", {}).items():
        print(f"variation {name}: wrote {varied['total']['written']:,} {rows} to {varied['dir']} "
              f"(cut {varied['total']['cut']:,}); accounting in {varied['dir']}/summary.json")


def cmd_inspect(args, beam_args) -> int:
    from root2hdf5.pipelines.tools.inspection import open_output, summary

    views = open_output(args.path, args.max_jets)
    print(summary(views))
    if not args.no_plots:
        from root2hdf5.pipelines.tools.inspection_plots import matplotlib_or_none, save_plots

        if matplotlib_or_none() is None:
            print("\n(no plots: matplotlib is not installed; pip install 'root2hdf5[inspect]')")
        else:
            base = args.path.rstrip("/")
            out = args.plots or (os.path.join(base, "plots") if os.path.isdir(base) else
                                 os.path.splitext(base)[0] + "-plots")
            written = save_plots(views[0], out, logy=args.logy)
            _record_plots(base, out, written)
            print(f"\n{len(written)} plots of the {views[0].name} split in {out}/ (overview.png has them all)")
    return 1 if any(v.missing for v in views) else 0


def _record_plots(base: str, out: str, written: list[str]) -> None:
    """Plots inside an output directory join its manifest: a rerun with --overwrite replaces them too."""
    from root2hdf5.transforms.output.finalize import record_files

    inside = [os.path.relpath(p, base) for p in written if os.path.isdir(base) and
              os.path.abspath(p).startswith(os.path.abspath(base) + os.sep)]
    if inside:
        record_files(base, [p.replace(os.sep, "/") for p in inside])


def cmd_init(args, beam_args) -> int:
    from root2hdf5.pipelines.tools.init_config import guess
    from root2hdf5.pipelines.tools.init_render import render

    to_file = args.output not in (None, "-")
    if to_file and os.path.exists(args.output) and not args.force:
        raise Root2Hdf5Error(f"{args.output} exists; pass --force to replace it")
    g = guess(args.rootfile, args.tree)
    text = render(g, args.rootfile, args.output if to_file else None)
    for note in g.unsure:
        print(f"root2hdf5 init: unsure: {note}", file=sys.stderr)
    if not to_file:
        print(text)
        return 0
    with open(args.output, "w") as handle:
        handle.write(text)
    print(f"wrote {args.output}; check the lines marked GUESS{' and UNSURE' if g.unsure else ''} and the labels, "
          f"then: root2hdf5 run {args.output}")
    return 0


def cmd_make_example(args, beam_args) -> int:
    from root2hdf5.pipelines.tools.synthetic import write_example

    if beam_args:
        raise Root2Hdf5Error(f"make-example: unknown options {beam_args}")
    for path in write_example(args.dir, events=args.events, seed=args.seed):
        print(path)
    return 0


def cmd_jobserver(args, beam_args) -> int:
    from root2hdf5.pipelines.runners import jobservers

    kinds = list(jobservers.KINDS) if args.kind == "all" else [args.kind]
    for kind in kinds:
        path = jobservers.build_classpath(kind)
        with open(path) as handle:
            jars = len(handle.read().strip().split(os.pathsep))
        print(f"{kind}: {jars} jars, classpath in {path}")
    return 0


def cmd_flink_cluster(args, beam_args) -> int:
    from root2hdf5.pipelines.runners import flink_cluster

    if args.action == "start":
        info = flink_cluster.start(args.dir, rest_port=args.port, taskmanagers=args.taskmanagers, slots=args.slots)
        print(f"Flink {info['flink-version']} session cluster: {info['taskmanagers']} TaskManager(s), "
              f"{info['slots-total']} slots, http://localhost:{args.port}; use --runner FlinkRunner "
              f"--flink_master localhost:{args.port} --environment_type LOOPBACK")
    else:
        flink_cluster.stop(args.dir)
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="root2hdf5", description=__doc__,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="convert ROOT ntuples to HDF5 as a config says")
    run.add_argument("config", help="YAML config (see configs/example.yaml)")
    run.add_argument("--overwrite", action="store_true", help="replace the results in an existing output directory")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a config value, e.g. --set output.dir=out/x (repeatable)")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    run.add_argument("-v", "--verbose", action="store_true",
                     help="also log every entry range read, and print the traceback of an error")
    run.add_argument("--progress-every", type=float, default=10.0, metavar="SECONDS",
                     help="seconds between progress lines on local runs (default 10; 0: none)")
    run.set_defaults(func=cmd_run)
    ins = sub.add_parser("inspect", help="summarise an output (jets per split and label, feature ranges) and plot it")
    ins.add_argument("path", help="output directory, a split file (train.h5) or a Parquet split directory")
    ins.add_argument("--max-jets", type=int, default=100_000,
                     help="jets per split sampled for feature statistics and plots (default 100000)")
    ins.add_argument("--plots", metavar="DIR", help="where the PNGs go (default PATH/plots)")
    ins.add_argument("--no-plots", action="store_true", help="only print the summary")
    ins.add_argument("--logy", action="store_true", help="logarithmic y axes")
    ins.set_defaults(func=cmd_inspect, quiet=True)
    ini = sub.add_parser("init", help="write a starter config from a ROOT file's trees and branches")
    ini.add_argument("rootfile")
    ini.add_argument("--tree", help="the tree to use (default: the one with the most entries, metadata trees aside)")
    ini.add_argument("-o", "--output", help="config file to write (default: print it)")
    ini.add_argument("--force", action="store_true", help="replace an existing config file")
    ini.set_defaults(func=cmd_init, quiet=True)
    ex = sub.add_parser("make-example", help="write small synthetic ntuples (both layouts) to DIR")
    ex.add_argument("dir")
    ex.add_argument("--events", type=int, default=2000, help="events per file (default 2000)")
    ex.add_argument("--seed", type=int, default=1)
    ex.set_defaults(func=cmd_make_example, quiet=False)
    js = sub.add_parser("jobserver", help="resolve the Flink/Spark job server classpath from Maven Central")
    js.add_argument("action", choices=["build"])
    js.add_argument("kind", choices=["flink", "spark", "all"])
    js.set_defaults(func=cmd_jobserver, quiet=False)
    fc = sub.add_parser("flink-cluster", help="start or stop a local multi-process Flink session cluster")
    fc.add_argument("action", choices=["start", "stop"])
    fc.add_argument("dir", help="directory for its configuration, logs and process ids")
    fc.add_argument("--port", type=int, default=8081, help="REST port (the --flink_master port)")
    fc.add_argument("--taskmanagers", type=int, default=1)
    fc.add_argument("--slots", type=int, default=2)
    fc.set_defaults(func=cmd_flink_cluster, quiet=False)
    return top


def _setup_logging(quiet: bool, verbose: bool = False):
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Importing Beam warns about optional Google Cloud clients we do not use.
    for handler in logging.getLogger().handlers:
        handler.addFilter(lambda record: not record.getMessage().startswith("apitools not found"))
    # The DirectRunner re-logs every worker message on the driver; the workers print their own. A worker's
    # failure comes back as an exception, whose cause main() prints (with -v: the traceback, and Beam's logs).
    logging.getLogger("apache_beam").setLevel(logging.ERROR if verbose else logging.CRITICAL)
    log.setLevel(logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO)


def main(argv: list[str] | None = None) -> int:
    args, beam_args = parser().parse_known_args(argv)
    _setup_logging(args.quiet, getattr(args, "verbose", False))
    try:
        return args.func(args, beam_args)
    except KeyboardInterrupt:
        print("root2hdf5: interrupted; no output was finalized", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - translate to a one-line message when it is the user's to fix
        verbose = getattr(args, "verbose", False)
        message = user_error(err)
        if message is None and (verbose or worker_error(err) is None):
            raise
        if verbose:
            traceback.print_exception(err, file=sys.stderr)
        if message is None:  # a worker failed on something that is not the user's to fix: a bug, or the machine
            print(f"root2hdf5: error: {worker_error(err)} (on a worker; -v prints the traceback)", file=sys.stderr)
            return 1
        print(f"root2hdf5: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
