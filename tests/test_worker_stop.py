"""Local runs stop their worker processes together, not one after the other."""
from __future__ import annotations

import collections

from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import worker_handlers as wh

from root2hdf5.pipelines.runners.local import make_pipeline


def test_every_worker_is_told_to_stop_before_the_first_is_waited_for():
    make_pipeline(PipelineOptions(["--direct_num_workers=2"]))  # installs the change
    events = []

    class Handler:
        def __init__(self, name):
            self.name = name
            self.control_conn = wh.ControlConnection()
            self.control_conn._state = wh.BeamFnControlServicer.STARTED_STATE

        def close(self):  # Beam's close waits for the process; here: record what each worker had been sent
            queued = self.control_conn._push_queue.qsize()
            events.append((self.name, queued))

    manager = wh.WorkerHandlerManager.__new__(wh.WorkerHandlerManager)
    manager._cached_handlers = collections.defaultdict(list, {"env": [Handler("a"), Handler("b"), Handler("c")]})
    manager._workers_by_id, manager._grpc_server = {}, None
    manager.close_all()
    assert sorted(events) == [("a", 1), ("b", 1), ("c", 1)]  # each had its end-of-stream before any close
    assert manager._cached_handlers == {}
