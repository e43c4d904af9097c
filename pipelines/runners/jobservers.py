"""Flink and Spark job servers built from Maven Central, for `--runner FlinkRunner` / `--runner SparkRunner`.

Beam's Python FlinkRunner and SparkRunner start a Java job server from a prebuilt shaded jar they download;
those jars are not on Maven Central. The driver classes live in the runner artifacts themselves, so the
job server is assembled from them instead: Maven resolves the classpath of a tiny POM shipped with this
package (pipelines/runners/jobserver/*.pom.xml, Beam 2.62.0 runners, which serve Python SDK 2.77 pipelines), once,
into ~/.cache/root2hdf5/jobserver/ (or $ROOT2HDF5_JOBSERVER_CACHE), and the job server runs as
`java -cp <classpath> <driver>` with exactly the arguments Beam would give the jar.

`--flink_job_server_jar` / `--spark_job_server_jar` or `--job_endpoint`, when given, are used as Beam
would use them.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from importlib import resources

from apache_beam.options import pipeline_options
from apache_beam.runners.portability import flink_runner, job_server, spark_runner
from apache_beam.utils import subprocess_server

from root2hdf5.transforms.core.errors import Root2Hdf5Error

KINDS = {
    "flink": ("flink.pom.xml", "org.apache.beam.runners.flink.FlinkJobServerDriver"),
    "spark": ("spark.pom.xml", "org.apache.beam.runners.spark.SparkJobServerDriver"),
}


def cache_dir() -> str:
    return os.environ.get("ROOT2HDF5_JOBSERVER_CACHE",
                          os.path.join(os.path.expanduser("~"), ".cache", "root2hdf5", "jobserver"))


def pom(kind: str) -> str:
    return str(resources.files("root2hdf5.pipelines.runners").joinpath("jobserver", KINDS[kind][0]))


def classpath_file(kind: str) -> str:
    return os.path.join(cache_dir(), f"{kind}.classpath")


def build_classpath(kind: str) -> str:
    """Resolve the job server's classpath with Maven (downloads ~200 MB the first time)."""
    if kind not in KINDS:
        raise Root2Hdf5Error(f"unknown job server {kind!r}; choose one of {', '.join(KINDS)}")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise Root2Hdf5Error(f"the {kind} job server is assembled with Maven, but `mvn` is not installed; install "
                             "Maven and Java 11+ (e.g. apt-get install maven openjdk-17-jre-headless)")
    os.makedirs(cache_dir(), exist_ok=True)
    target = classpath_file(kind)
    result = subprocess.run([mvn, "-q", "-B", "-f", pom(kind), "dependency:build-classpath",
                             f"-Dmdep.outputFile={target}.tmp"], capture_output=True, text=True)
    if result.returncode:
        raise Root2Hdf5Error(f"Maven could not resolve the {kind} job server:\n"
                             f"{result.stdout[-2000:]}{result.stderr[-2000:]}")
    os.replace(target + ".tmp", target)
    return target


def classpath(kind: str) -> str:
    """The job server classpath, resolved on first use (and again if a jar went missing)."""
    path = classpath_file(kind)
    if os.path.exists(path):
        with open(path) as handle:
            entries = handle.read().strip()
        if entries and all(os.path.exists(p) for p in entries.split(os.pathsep)):
            return entries
    with open(build_classpath(kind)) as handle:
        return handle.read().strip()


def java_command(kind: str, jvm_properties=()) -> list[str]:
    """`java <jvm properties> @<argument file with -cp ...> <driver>` (the classpath is ~20 kB; an
    argument file keeps it out of process listings and logs)."""
    java = shutil.which("java")
    if java is None:
        raise Root2Hdf5Error(f"the {kind} job server needs Java 11 or newer (`java` is not on the PATH)")
    argfile = classpath_file(kind) + ".args"
    entries = classpath(kind)
    with open(argfile, "w") as handle:
        handle.write(f'-cp "{entries}"\n')
    return [java, *jvm_properties, f"@{argfile}", KINDS[kind][1]]


class _FromClasspath:
    """JavaJarJobServer with `java -cp <maven classpath> <driver>` instead of `java -jar <job-server jar>`."""

    kind = ""

    def subprocess_cmd_and_endpoint(self):
        artifacts_dir = self._artifacts_dir or self.local_temp_dir(prefix="artifacts")
        (job_port,) = subprocess_server.pick_port(self._job_port)
        arguments = self.java_arguments(job_port, self._artifact_port, self._expansion_port, artifacts_dir)
        return java_command(self.kind, self._jvm_properties) + list(arguments), f"localhost:{job_port}"


class FlinkRestartOptions(pipeline_options.PipelineOptions):
    """A Flink option Beam's Python SDK does not declare: the configuration directory of the job server's
    Flink, e.g. for a restart strategy on the embedded cluster (a session cluster has its own)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--flink_conf_dir", default=None,
                            help="directory with a flink-conf.yaml for the job server's Flink")


class FlinkClasspathJobServer(_FromClasspath, flink_runner.FlinkJarJobServer):
    kind = "flink"

    def __init__(self, options):
        super().__init__(options)
        self._conf_dir = options.view_as(FlinkRestartOptions).flink_conf_dir

    def java_arguments(self, job_port, artifact_port, expansion_port, artifacts_dir):
        arguments = super().java_arguments(job_port, artifact_port, expansion_port, artifacts_dir)
        return arguments + (["--flink-conf-dir", self._conf_dir] if self._conf_dir else [])


class SparkClasspathJobServer(_FromClasspath, spark_runner.SparkJarJobServer):
    kind = "spark"


class FlinkRunner(flink_runner.FlinkRunner):
    """Beam's FlinkRunner, with the job server started from the Maven classpath unless a jar is given."""

    def default_job_server(self, options):
        flink = options.view_as(pipeline_options.FlinkRunnerOptions)
        if flink.flink_job_server_jar or flink.flink_submit_uber_jar:
            return super().default_job_server(options)
        flink.flink_master = self.add_http_scheme(flink.flink_master)
        return job_server.StopOnExitJobServer(FlinkClasspathJobServer(options))


class SparkRunner(spark_runner.SparkRunner):
    """Beam's SparkRunner, with the job server started from the Maven classpath unless a jar is given."""

    def default_job_server(self, options):
        spark = options.view_as(pipeline_options.SparkRunnerOptions)
        if spark.spark_job_server_jar or spark.spark_submit_uber_jar:
            return super().default_job_server(options)
        return job_server.StopOnExitJobServer(SparkClasspathJobServer(options))


RUNNERS = {"flinkrunner": FlinkRunner, "flink": FlinkRunner, "sparkrunner": SparkRunner, "spark": SparkRunner}
