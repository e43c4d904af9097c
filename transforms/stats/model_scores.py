"""Per-jet scores (or weights) from a trained ONNX model, with Beam's RunInference.

Each written shard becomes one RunInference element: its model inputs (`model.inputs`: ONNX input name ->
dataset, read from the shard file), keyed by the shard. The ONNX handler runs the session on the whole
shard at once (one element per batch) and the scores, 4 bytes a jet, are joined back to their shard by
key. The model sees the features as written (before any standardization). onnxruntime runs with
`model.threads` threads (1 by default) so that its float sums, and the output, do not vary between runs.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import KeyedModelHandler, RunInference

from root2hdf5.transforms.core.errors import ConfigError


@dataclass(frozen=True)
class ModelSpec:
    path: str
    inputs: tuple[tuple[str, str], ...] = ()  # (ONNX input name, dataset as the pipeline names it)
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


@dataclass(frozen=True)
class ModelFile:
    """What the plan needs to know of a model file, read once on the driver: its input names, the per-row
    shape of its first output (() for one score per row, (K,) for K) and its SHA-256."""

    inputs: tuple[str, ...]
    output_shape: tuple[int, ...]
    sha256: str


def describe(path: str) -> ModelFile:
    import onnxruntime as ort

    try:
        with FileSystems.open(path) as handle:
            content = handle.read()
    except FileNotFoundError:
        raise ConfigError(f"model.path: {path} does not exist (looked in {os.path.dirname(os.path.abspath(path))})") \
            from None
    except OSError:
        if not os.path.exists(path) and "://" not in path:
            raise ConfigError(f"model.path: {path} does not exist (looked in "
                              f"{os.path.dirname(os.path.abspath(path))})") from None
        raise
    session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    shape = session.get_outputs()[0].shape
    width = () if len(shape) < 2 or shape[1] in (1, None) or isinstance(shape[1], str) else (int(shape[1]),)
    return ModelFile(tuple(i.name for i in session.get_inputs()), width, hashlib.sha256(content).hexdigest())


def input_datasets(configured: dict[str, str], model: ModelFile, path: str) -> tuple[tuple[str, str], ...]:
    """(ONNX input name, dataset) pairs: as configured, or the model's only input fed with `jets`."""
    if configured:
        return tuple(configured.items())
    if len(model.inputs) != 1:
        raise ConfigError(f"model {path} has inputs {list(model.inputs)}; map each to a dataset under model.inputs")
    return ((model.inputs[0], "jets"),)


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
        names = dict(spec.inputs)

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
