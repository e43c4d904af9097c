"""Per-jet scores (or weights) from a trained ONNX model, with Beam's RunInference.

Each written shard becomes one RunInference element: its model inputs (`model.inputs`: ONNX input name ->
dataset, read from the shard file), keyed by the shard. The ONNX handler runs the session on the whole
shard at once (one element per batch) and the scores, 4 bytes a jet, are joined back to their shard by
key. The model sees the features as written (before any standardization). onnxruntime runs with
`model.threads` threads (1 by default) so that its float sums, and the output, do not vary between runs.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from root2hdf5.transforms.core.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    path: str
    inputs: tuple[tuple[str, str], ...] = ()  # (ONNX input name, dataset)
    output: str = "scores"
    as_weight: bool = False
    threads: int = 1


def _handler_class():
    """Defined on first use so that onnxruntime is only needed when a model is configured."""
    import onnxruntime as ort
    from apache_beam.ml.inference.onnx_inference import OnnxModelHandlerNumpy

    def run_whole(session, batch, inference_args=None):
        return [session.run(None, element)[0] for element in batch]

    class ShardModelHandler(OnnxModelHandlerNumpy):
        """An element is one shard's inputs {ONNX input name: array}; its prediction, the model's
        first output for every jet of the shard."""

        def __init__(self, spec: ModelSpec):
            super().__init__(spec.path, providers=["CPUExecutionProvider"], inference_fn=run_whole,
                             max_batch_size=1)
            self._threads = spec.threads

        def load_model(self):
            # built on the worker: SessionOptions cannot be pickled with the pipeline
            options = ort.SessionOptions()
            options.intra_op_num_threads = self._threads
            options.inter_op_num_threads = 1
            self._session_options = options
            return super().load_model()

        def get_num_bytes(self, batch) -> int:
            return sum(array.nbytes for element in batch for array in element.values())

    return ShardModelHandler


def input_names(spec: ModelSpec) -> dict[str, str]:
    """ONNX input name -> dataset, the default being the model's only input fed with `jets`."""
    if spec.inputs:
        return dict(spec.inputs)
    import onnxruntime as ort

    with FileSystems.open(spec.path) as handle:
        session = ort.InferenceSession(handle.read(), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    if len(names) != 1:
        raise ConfigError(f"model {spec.path} has inputs {names}; map each to a dataset under model.inputs")
    return {names[0]: "jets"}


def fingerprint(path: str) -> str:
    with FileSystems.open(path) as handle:
        return hashlib.sha256(handle.read()).hexdigest()


class ModelScores(beam.PTransform):
    """ShardResult elements -> ((split, shard), float32 scores) from the ONNX model.

    Args:
        spec: the model and its inputs.
        read: function (ShardResult, [dataset names]) -> {dataset: array}, reading a written shard.
    """

    def __init__(self, spec: ModelSpec, read):
        super().__init__()
        self.spec = spec
        self.read = read

    def expand(self, results):
        spec, read = self.spec, self.read
        names = input_names(spec)

        def model_inputs(result):
            columns = read(result, sorted(set(names.values())))
            return (result.split, result.shard), {name: columns[dataset] for name, dataset in names.items()}

        return (
            results
            | "ModelInputs" >> beam.Map(model_inputs)
            | "RunInference" >> RunInference(KeyedModelHandler(_handler_class()(spec)))
            | "Scores" >> beam.MapTuple(lambda key, prediction: (key, _scores(prediction.inference)))
        )


def _scores(values) -> np.ndarray:
    values = np.asarray(values, np.float32)
    return values[:, 0] if values.ndim == 2 and values.shape[1] == 1 else values
