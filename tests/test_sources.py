"""Expanding sample inputs: globs, list files, URLs, and mistakes."""
import os
from types import SimpleNamespace

import pytest

from root2hdf5.transforms.core.errors import InputError
from root2hdf5.transforms.read.sources import expand_files


def sample(name, *files):
    return SimpleNamespace(name=name, files=list(files), tree="t")


def test_globs_are_sorted_and_lists_resolved_relative_to_themselves(tmp_path):
    for name in ("b.root", "a.root", "c.root"):
        (tmp_path / name).write_bytes(b"")
    sub = tmp_path / "lists"
    sub.mkdir()
    (sub / "bkg.txt").write_text("# comment\n\n../c.root  # trailing comment\nroot://eos.example//x.root\n")
    files = expand_files([sample("s", str(tmp_path / "*.root")), sample("b", str(sub / "bkg.txt"))])
    assert [(f.sample, f.file, os.path.basename(f.path)) for f in files] == [
        (0, 0, "a.root"), (0, 1, "b.root"), (0, 2, "c.root"), (1, 0, "c.root"), (1, 1, "x.root")]
    assert files[4].path == "root://eos.example//x.root"


@pytest.mark.parametrize("entry, message", [
    ("nothing_*.root", "no files match"),
    ("missing.root", "does not exist"),
    ("missing.txt", "list file"),
])
def test_missing_inputs_name_the_sample_and_path(tmp_path, entry, message):
    with pytest.raises(InputError, match=f"sample 'sig'.*{message}"):
        expand_files([sample("sig", str(tmp_path / entry))])


def test_a_file_listed_twice_is_refused(tmp_path):
    (tmp_path / "a.root").write_bytes(b"")
    with pytest.raises(InputError, match="listed twice"):
        expand_files([sample("s", str(tmp_path / "a.root"), str(tmp_path / "*.root"))])
