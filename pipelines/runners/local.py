"""Which Beam runner executes the pipeline.

Beam's DirectRunner first tries Prism, a Go runner it downloads from GitHub at run time, and falls back to
the Python FnApiRunner when it cannot. What runs (and how fast, and whether --direct_num_workers and
--direct_running_mode mean anything) would then depend on network access. For the local case we always
use the FnApiRunner, configured as the DirectRunner would configure it. FlinkRunner and SparkRunner start
their job server from Maven artifacts (pipelines/runners/jobservers.py); any other --runner (PortableRunner,
PrismRunner, DataflowRunner ...) is used as given.
"""
from __future__ import annotations

import sys

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from root2hdf5.pipelines.runners import forks
from root2hdf5.pipelines.runners.args import LOCAL


def is_local(options: PipelineOptions) -> bool:
    """Whether the pipeline runs on this machine (the FnApiRunner), so its workers share our disk."""
    return options.view_as(StandardOptions).runner in LOCAL


def make_pipeline(options: PipelineOptions) -> beam.Pipeline:
    name = options.view_as(StandardOptions).runner
    if isinstance(name, str) and name.lower() in ("flinkrunner", "flink", "sparkrunner", "spark"):
        from root2hdf5.pipelines.runners.jobservers import RUNNERS  # job servers from Maven Central (see that module)

        return beam.Pipeline(runner=RUNNERS[name.lower()](), options=options)
    if not is_local(options):
        return beam.Pipeline(options=options)
    from apache_beam.portability.api import beam_provision_api_pb2
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.runners.portability.portable_runner import JobServiceHandle

    _stop_workers_together()
    _no_ipython_import()
    forks.install()
    # as DirectRunner.run_pipeline does, so that worker processes receive the pipeline options
    encoded = JobServiceHandle.encode_pipeline_options(options.get_all_options())
    provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(pipeline_options=encoded))
    return beam.Pipeline(runner=_runner_class()(provision_info=provision), options=options)


def _runner_class():
    """The FnApiRunner, whose worker processes (multi_processing) run pipelines.runners.worker instead of Beam's
    sdk_worker_main: the same, with a quieter failure. The runner sets its environment when the pipeline
    starts; an environment of another kind, or another command, is left as it is."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from apache_beam.transforms.environments import SubprocessSDKEnvironment

    from root2hdf5.pipelines.runners.worker import COMMAND

    class Runner(fn_runner.FnApiRunner):
        @property
        def _default_environment(self):
            return self.__dict__["_environment"]

        @_default_environment.setter
        def _default_environment(self, environment):
            beams = " -m apache_beam.runners.worker.sdk_worker_main"
            if isinstance(environment, SubprocessSDKEnvironment) and \
                    getattr(environment, "command_string", "").endswith(beams):
                environment = SubprocessSDKEnvironment.from_command_string(COMMAND)
            self.__dict__["_environment"] = environment

    return Runner


def _no_ipython_import() -> None:
    """Beam asks whether it runs inside IPython for every transform applied, by importing IPython when it is
    installed (0.6 s of the driver's start-up in an environment with Jupyter). A process that has not imported
    IPython is not inside an IPython session: then the question is answered without the import."""
    import apache_beam.pipeline
    from apache_beam.utils import interactive_utils

    asked = interactive_utils.is_in_ipython
    if getattr(asked, "_root2hdf5", False):
        return

    def is_in_ipython() -> bool:
        return "IPython" in sys.modules and asked()

    is_in_ipython._root2hdf5 = True
    interactive_utils.is_in_ipython = is_in_ipython
    if getattr(apache_beam.pipeline, "is_in_ipython", None) is asked:
        apache_beam.pipeline.is_in_ipython = is_in_ipython


def _stop_workers_together() -> None:
    """At the end of a run the FnApiRunner closes its workers one after the other: each close() sends the
    worker its end-of-stream and waits for the process to exit (~0.5 s each) before telling the next. Tell
    them all first, then close as Beam does: they exit together. Beam internals: if they are not as expected,
    nothing is changed."""
    from apache_beam.runners.portability.fn_api_runner import worker_handlers as wh

    manager, conn, servicer = wh.WorkerHandlerManager, wh.ControlConnection, wh.BeamFnControlServicer
    if getattr(manager.close_all, "_root2hdf5", False) or not all(
            hasattr(obj, name) for obj, name in ((manager, "close_all"), (conn, "_lock"), (conn, "push"),
                                                 (servicer, "STARTED_STATE"), (servicer, "_DONE_MARKER"))):
        return
    close_all = manager.close_all

    def close_all_together(self):
        try:
            handlers = {h for hs in getattr(self, "_cached_handlers", {}).values() for h in hs}
            with conn._lock:
                for handler in handlers:
                    control = getattr(handler, "control_conn", None)
                    if isinstance(control, conn) and getattr(control, "_state", None) == servicer.STARTED_STATE:
                        control.push(servicer._DONE_MARKER)  # close() pushes another; it is never read
        except Exception:  # noqa: BLE001 - an optimisation only: Beam's own close follows in any case
            pass
        return close_all(self)

    close_all_together._root2hdf5 = True
    manager.close_all = close_all_together
