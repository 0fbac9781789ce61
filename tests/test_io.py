"""ilo.io: the private output folder, leftover cleaning, strict JSON, arrays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from ilo.io import (
    OutputError,
    OutputFolder,
    clean_leftovers,
    dumps,
    finite_json,
    load_array,
    prepare_output_folder,
)


def test_commit_moves_every_file_and_removes_the_private_folder(tmp_path):
    with OutputFolder(tmp_path) as w:
        w.json("a.json", {"x": 1})
        w.path("b.txt").write_text("b")
        private = w.path("c.bin").parent
        assert private.parent == tmp_path and private.name.startswith(".ilo-tmp-")
        assert oct(private.stat().st_mode & 0o777) == oct(0o700)
        with open(private / "c.bin", "wb") as f:
            f.write(b"c")
        assert not (tmp_path / "a.json").exists()  # nothing visible before the commit
    assert json.loads((tmp_path / "a.json").read_text()) == {"x": 1}
    assert (tmp_path / "b.txt").read_text() == "b" and (tmp_path / "c.bin").read_bytes() == b"c"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.txt", "c.bin"]


def test_error_inside_leaves_nothing(tmp_path):
    (tmp_path / "a.json").write_text("old")
    with pytest.raises(RuntimeError):
        with OutputFolder(tmp_path) as w:
            w.json("a.json", {"x": 1})
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"] and (tmp_path / "a.json").read_text() == "old"


def test_a_symlink_at_the_destination_is_replaced_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.json").symlink_to(victim)
    with OutputFolder(out) as w:
        w.json("a.json", [1])
    assert victim.read_text() == "precious" and not (out / "a.json").is_symlink()


@pytest.mark.parametrize("name", ["", ".", "..", "../x", "a/b", ".ilo-tmp-1-x"])
def test_names_must_be_plain(tmp_path, name):
    with pytest.raises(OutputError):
        OutputFolder(tmp_path).path(name)


def test_inputs_are_protected_by_path_and_by_inode(tmp_path):
    photo = tmp_path / "truth.png"
    photo.write_bytes(b"photo")
    link_dir = tmp_path / "link"
    link_dir.symlink_to(tmp_path)
    w = OutputFolder(link_dir, protect=[photo])
    with pytest.raises(OutputError, match="would replace the input"):
        w.path("truth.png")
    other = tmp_path / "other"
    other.mkdir()
    os.link(photo, other / "same.png")  # a hard link: the same file under another name
    with pytest.raises(OutputError, match="would replace the input"):
        OutputFolder(tmp_path, protect=[other / "same.png"]).path("truth.png")
    assert photo.read_bytes() == b"photo"


def test_open_refuses_an_existing_file(tmp_path):
    w = OutputFolder(tmp_path)
    p = w.path("a.txt")
    p.write_text("planted")
    w.pending.remove("a.txt")
    with pytest.raises(FileExistsError):
        w.open("a.txt")
    w.abort()
    assert list(tmp_path.iterdir()) == []


def test_clean_leftovers_only_removes_stale_folders_of_dead_processes(tmp_path):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    import ilo.io

    old = ilo.io._STARTED - 600  # before this process imported ilo.io, however long the suite has run
    stale, fresh = tmp_path / f".ilo-tmp-{p.pid}-a", tmp_path / f".ilo-tmp-{p.pid}-b"
    alive = tmp_path / f".ilo-tmp-{os.getpid()}-c"
    for d in (stale, fresh, alive):
        d.mkdir()
        (d / "x").write_text("x")
    os.utime(stale, (old, old))
    os.utime(alive, (old, old))
    os.utime(fresh, (time.time() + 60,) * 2)  # changed after this process started
    assert clean_leftovers(tmp_path) == [stale.name]
    assert fresh.is_dir() and alive.is_dir()


def test_prepare_output_folder_reports_what_it_created(tmp_path):
    created = prepare_output_folder(tmp_path / "a" / "b")
    assert created == [tmp_path / "a" / "b", tmp_path / "a"]
    assert prepare_output_folder(tmp_path / "a" / "b") == []
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the write test leaves nothing


def test_strict_json_converts_numpy_and_torch():
    import torch

    obj = {"a": np.float32(1.5), "b": torch.tensor([1.0, float("inf")]), "c": np.arange(2), "d": (1, "x")}
    clean, bad = finite_json(obj)
    assert clean == {"a": 1.5, "b": [1.0, None], "c": [0, 1], "d": [1, "x"]} and bad == {"b[1]": "inf"}
    assert "Infinity" not in dumps(obj) and json.loads(dumps(obj))["non_finite"] == {"b[1]": "inf"}
    assert dumps([float("nan")]) == "[\n  null\n]"  # a list has no place for the reasons


def test_load_array_refuses_pickles(tmp_path):
    p = tmp_path / "obj.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="obj.npy"):
        load_array(p)
    np.save(p, np.arange(3.0))
    assert load_array(p).tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("module", ["ilo.io", "ilo.runtime"])
def test_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
