"""The loaders in examples/ (shown verbatim in docs/outputs.md) read a split file completely and in order."""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from tests.conftest import IN_MEMORY, events_config, run_config

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def train_file(ntuples, tmp_path_factory):
    out = tmp_path_factory.mktemp("examples") / "out"
    run_config(events_config(ntuples, out), IN_MEMORY)
    path = os.path.join(out, "train.h5")
    with h5py.File(path) as handle:
        return path, {name: handle[name][...] for name in handle}


def test_numpy_batches_cover_the_file_in_order(train_file):
    path, data = train_file
    batches = _load("numpy_batches").Batches(path, size=64)
    n = len(data["labels"])
    assert n > 64 and len(batches) == -(-n // 64)
    parts = [batches[k] for k in range(len(batches))]
    assert all(len(y) == 64 for _, y, _ in parts[:-1]) and len(parts[-1][1]) == n - 64 * (len(parts) - 1)
    for name in ("constituents", "mask", "jets"):
        np.testing.assert_array_equal(np.concatenate([x[name] for x, _, _ in parts]), data[name])
    np.testing.assert_array_equal(np.concatenate([y for _, y, _ in parts]), data["labels"])
    np.testing.assert_array_equal(np.concatenate([w for _, _, w in parts]), data["weights"])


def test_torch_dataset_through_a_dataloader(train_file):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (not part of the test extra)")
    path, data = train_file
    dataset = _load("torch_dataset").JetChunks(path, chunk=50)
    loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=2)
    batches = list(loader)
    assert len(batches) == -(-len(data["labels"]) // 50)
    for name in ("constituents", "mask", "jets", "labels", "weights"):
        np.testing.assert_array_equal(torch.cat([b[name] for b in batches]).numpy(), data[name])
    shuffled = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=True,
                                           generator=torch.Generator().manual_seed(1))
    rows = np.concatenate([b["jets"].numpy() for b in shuffled])
    assert sorted(map(tuple, rows)) == sorted(map(tuple, data["jets"]))


@pytest.mark.parametrize("name", ["torch_dataset", "numpy_batches"])
def test_docs_show_the_tested_code(name):
    docs = (EXAMPLES.parent / "docs" / "outputs.md").read_text()
    assert (EXAMPLES / f"{name}.py").read_text() in docs, f"docs/outputs.md must include examples/{name}.py verbatim"
