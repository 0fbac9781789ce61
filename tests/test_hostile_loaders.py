"""Hostile and broken checkpoint files: each builds its bad file and expects one line, nothing run or allocated.

Unpickler opcodes (BUILD / SETITEM on allow-listed objects), calls that would allocate what
the file does not hold, storages that declare more than the file has, configs that describe a
network larger than memory, malformed DCGAN and StyleGAN contents, unusable cache folders,
a file replaced at the same path, formats told by content rather than by name, directories.
"""

from __future__ import annotations

import io
import os
import pickle
import time
import zipfile

import numpy as np
import pytest
import torch

from ilo.generators import (
    CacheError,
    CheckpointError,
    CheckpointTooLarge,
    DCGANGenerator,
    GeneratorUnavailable,
    StyleGAN2Generator,
    UnsafeCheckpointError,
    load_checkpoint,
    load_generator,
    save_checkpoint,
)
from ilo.generators import budget, registry
from ilo.generators.hub import fetch
from ilo.generators.unpickler import restricted_load


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and "weights_only" not in text, text
    return text


# ---------------------------------------------------------------------------------------------
# hand-written pickles (opcodes as pickletools names them)


def s(text: str) -> bytes:
    """BINUNICODE."""
    b = text.encode()
    return b"X" + len(b).to_bytes(4, "little") + b


def glob(module: str, name: str) -> bytes:
    """GLOBAL."""
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


PROTO2, STOP, NONE, TRUE, EMPTY_DICT, SETITEM, TUPLE1, TUPLE2, BUILD, REDUCE = (
    b"\x80\x02", b".", b"N", b"\x88", b"}", b"s", b"\x85", b"\x86", b"b", b"R")


def slotstate_build(target: bytes, attr: str, value: bytes) -> bytes:
    """``target`` then BUILD with state ``(None, {attr: value})``: ``setattr(target, attr, value)`` in pickle's BUILD."""
    return target + NONE + EMPTY_DICT + s(attr) + value + SETITEM + TUPLE2 + BUILD


def saved_tensor() -> tuple[torch.Tensor, bytes]:
    t = torch.arange(6.0).reshape(2, 3)
    buf = io.BytesIO()
    torch.save(t, buf)
    return t, buf.getvalue()


def test_build_cannot_change_torch_rebuild_defaults_for_the_process(tmp_path):
    """The attack of issue 11 item 1: new defaults for torch's tensor rebuild function."""
    real = torch._utils._rebuild_tensor_v2
    before = real.__defaults__
    neg = EMPTY_DICT + s("neg") + TRUE + SETITEM + TUPLE1  # ({"neg": True},)
    payload = PROTO2 + slotstate_build(glob("torch._utils", "_rebuild_tensor_v2"), "__defaults__", neg) + STOP
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    try:
        with pytest.raises(UnsafeCheckpointError, match="BUILD") as info:
            load_checkpoint(path)
        assert "nothing from the file was executed" in one_line(info.value)
        assert real.__defaults__ == before
        t, data = saved_tensor()
        assert torch.equal(torch.load(io.BytesIO(data), weights_only=True), t)
    finally:
        real.__defaults__ = before


@pytest.mark.parametrize("module,name", [("torch", "Tensor"), ("collections", "OrderedDict"), ("dnnlib.tflib.network", "Network"),
                                         ("torch._utils", "_rebuild_parameter")])
def test_build_cannot_set_attributes_on_allowed_classes_or_functions(module, name):
    payload = PROTO2 + slotstate_build(glob(module, name), "ilo_pwned", TRUE) + STOP
    targets = [torch.Tensor, torch._utils._rebuild_parameter]
    try:
        with pytest.raises(UnsafeCheckpointError, match="BUILD"):
            restricted_load(io.BytesIO(payload))
        assert not any(hasattr(t, "ilo_pwned") for t in targets)
    finally:
        for t in targets:
            if "ilo_pwned" in getattr(t, "__dict__", {}):
                delattr(t, "ilo_pwned")


def test_setitem_only_fills_plain_containers():
    # a tensor made by the file, then SETITEM on it (tensor[0] = 5): not a dict, refused
    t, _ = saved_tensor()
    tensor_pickle = pickle.dumps(t, protocol=2)[:-1]  # without STOP
    payload = tensor_pickle + b"K\x00" + b"K\x05" + SETITEM + STOP
    with pytest.raises(UnsafeCheckpointError, match="SETITEM"):
        restricted_load(io.BytesIO(payload))
    ok = pickle.dumps({"a": [1, 2], "b": {3}}, protocol=4)
    assert restricted_load(io.BytesIO(ok)) == {"a": [1, 2], "b": {3}}


@pytest.mark.parametrize("call", [
    glob("builtins", "bytearray") + b"\x8a\x06" + (2**44).to_bytes(6, "little") + TUPLE1 + REDUCE,      # bytearray(16 TiB)
    glob("numpy.core.multiarray", "_reconstruct") + glob("numpy", "ndarray") + b"\x8a\x05" + (10**12).to_bytes(5, "little")
    + TUPLE1 + s("b") + b"\x87" + REDUCE,                                                                # ndarray of 1e12 bytes
    glob("torch", "Tensor") + b"\x8a\x05" + (10**12).to_bytes(5, "little") + TUPLE1 + REDUCE,          # torch.Tensor(1e12)
])
def test_calls_that_would_allocate_what_the_file_does_not_hold_are_refused(call):
    with pytest.raises(UnsafeCheckpointError):
        restricted_load(io.BytesIO(PROTO2 + call + STOP))


def test_length_fields_beyond_the_file_are_refused_before_reading():
    payload = PROTO2 + b"\x8e" + (2**40).to_bytes(8, "little") + b"abc"  # BINBYTES8 of 1 TiB, 3 bytes follow
    with pytest.raises(CheckpointError, match="declares 1099511627776 bytes"):
        restricted_load(io.BytesIO(payload))


def test_regular_numpy_and_tensor_pickles_still_load():
    data = {"a": np.arange(5, dtype=np.float32), "t": torch.arange(4.0), "p": torch.nn.Parameter(torch.ones(2)),
            "dt": np.dtype("float64"), "x": np.float32(2.5)}
    for protocol in (2, 4):
        out = restricted_load(io.BytesIO(pickle.dumps(data, protocol=protocol)))
        assert np.array_equal(out["a"], data["a"]) and torch.equal(out["t"], data["t"]) and torch.equal(out["p"], data["p"])
        assert out["dt"] == np.float64 and out["x"] == np.float32(2.5)


# ---------------------------------------------------------------------------------------------
# sizes checked before anything is allocated


@pytest.fixture
def no_torch_load(monkeypatch):
    """Records calls of torch.load: storages are allocated only inside it."""
    calls: list = []
    real = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: calls.append(a) or real(*a, **k))
    return calls


def test_zip_checkpoint_that_inflates_is_refused_before_loading(tmp_path, no_torch_load):
    zeros = torch.zeros(2**22)  # 16 MiB of zeros
    plain = tmp_path / "plain.pt"
    torch.save({"w": zeros}, plain)
    bomb = tmp_path / "bomb.pt"
    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
    assert bomb.stat().st_size < 2**20  # the record compresses to a few KiB
    with pytest.raises(CheckpointError, match="inflates to 16.0 MiB") as info:
        load_checkpoint(bomb)
    one_line(info.value)
    assert no_torch_load == []


def _with_numel(data: bytes, old: int, new: int) -> bytes:
    """Replace the first BININT2 ``old`` (the storage's declared numel) by a BININT ``new``."""
    code = b"M" + old.to_bytes(2, "little")
    assert code in data
    return data.replace(code, b"J" + new.to_bytes(4, "little"), 1)


def test_legacy_checkpoint_whose_storage_claims_gibs_is_refused_before_loading(tmp_path, no_torch_load):
    buf = io.BytesIO()
    torch.save({"w": torch.ones(12345)}, buf, _use_new_zipfile_serialization=False)
    path = tmp_path / "claims.pt"
    path.write_bytes(_with_numel(buf.getvalue(), 12345, 2**29))  # 2 GiB of float32 declared, 48 KiB present
    with pytest.raises(CheckpointError, match=r"declare 2.0 GiB but the file holds only") as info:
        load_checkpoint(path)
    one_line(info.value)
    assert no_torch_load == []


def test_zip_checkpoint_whose_storage_claims_more_than_its_record_is_refused(tmp_path, no_torch_load):
    path = tmp_path / "claims.pt"
    torch.save({"w": torch.ones(12345)}, path)
    forged = tmp_path / "forged.pt"
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(forged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, _with_numel(data, 12345, 2**29) if info.filename.endswith("data.pkl") else data)
    with pytest.raises(CheckpointError, match=r"declares 2.0 GiB but the file holds 48.2 KiB"):
        load_checkpoint(forged)
    assert no_torch_load == []


def test_storage_inside_a_network_pickle_is_size_checked():
    buf = io.BytesIO()
    torch.save(torch.ones(12345).untyped_storage(), buf, _use_new_zipfile_serialization=False)
    inner = _with_numel(buf.getvalue(), 12345 * 4, 2**31 - 1)  # UntypedStorage: numel in bytes
    payload = PROTO2 + glob("torch.storage", "_load_from_bytes") + b"B" + len(inner).to_bytes(4, "little") + inner + TUPLE1 + REDUCE + STOP
    with pytest.raises(CheckpointError, match="declare 2.0 GiB"):
        restricted_load(io.BytesIO(payload))


def huge_config_file(tmp_path, **cfg) -> str:
    """Our format with a config for a large network and a tiny state dict (a 1 KiB file)."""
    path = tmp_path / "huge.pt"
    torch.save({"format": "ilo-stylegan2", "config": cfg, "name": "huge", "state_dict": {"mapping.w_avg": torch.zeros(4)}}, path)
    assert path.stat().st_size < 4096
    return path


def test_config_of_a_network_larger_than_memory_is_refused_before_building(tmp_path, monkeypatch):
    """Issue 11's 1.4 KB checkpoint: 4096 px, 16384-wide latents; refused with need vs available, fast."""
    path = huge_config_file(tmp_path, img_resolution=4096, z_dim=16384, w_dim=16384)
    monkeypatch.setattr(budget, "meminfo_kib", lambda key: 4 * 2**20 if key == "MemAvailable" else None)  # 4 GiB
    start = time.perf_counter()
    with pytest.raises(CheckpointTooLarge, match=r"would need ([\d.]+) GiB of memory; 4.0 GiB is available") as info:
        load_checkpoint(path)
    assert time.perf_counter() - start < 20
    need = float(one_line(info.value).split("would need ")[1].split(" GiB")[0])
    assert need >= 8 * 16384 * 16384 * 4 / 2**30  # at least the 8 mapping layers' weights


def test_config_larger_than_any_machine_is_refused_with_the_real_memory(tmp_path):
    path = huge_config_file(tmp_path, img_resolution=4096, z_dim=512, w_dim=512, channel_base=2**30, channel_max=2**16)
    if budget.available_bytes() is None:
        pytest.skip("no /proc/meminfo")
    with pytest.raises(CheckpointTooLarge, match=r"would need [\d.]+ TiB of memory; [\d.]+ [GMT]iB is available"):
        load_checkpoint(path)


def test_meminfo_reader_matches_proc():
    if not os.path.exists("/proc/meminfo"):
        pytest.skip("no /proc/meminfo")
    with open("/proc/meminfo") as f:
        total = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
    assert budget.meminfo_kib("MemTotal") == total
    assert 0 < budget.available_bytes() <= total * 1024


# ---------------------------------------------------------------------------------------------
# malformed contents: one line, a ValueError


@pytest.fixture
def dcgan_sd(tiny_dcgan):
    return {k: v.clone() for k, v in tiny_dcgan.state_dict().items()}


@pytest.mark.parametrize("damage,match", [
    (lambda sd: sd.update({"main.0.weight": sd["main.0.weight"].flatten()}), r"main.0.weight is \[\d+\], not a 4-D"),
    (lambda sd: sd.update({"main.3.weight": sd["main.3.weight"].flatten()}), r"main.3.weight has shape"),
    (lambda sd: sd.update({"main.99.extra": torch.zeros(1)}), r"unexpected \['main.99.extra'\]"),
    (lambda sd: sd.pop("main.1.running_var"), r"missing \['main.1.running_var'\]"),
    (lambda sd: sd.update({"main.1.bias": "text"}), r"main.1.bias is a str, not a tensor"),
])
def test_broken_dcgan_state_dicts(tmp_path, dcgan_sd, damage, match):
    damage(dcgan_sd)
    path = tmp_path / "dcgan.pt"
    torch.save({"netG_state_dict": dcgan_sd}, path)
    with pytest.raises(CheckpointError, match=match) as info:
        load_generator(str(path))
    assert isinstance(info.value, ValueError)
    one_line(info.value)


@pytest.mark.parametrize("config", [[("img_resolution", 16)], "img_resolution=16", 16, {"img_resolution": "big"}, {"bogus": 1}])
def test_stored_stylegan_config_that_is_not_a_dict_of_settings(tmp_path, config):
    path = tmp_path / "bad.pt"
    torch.save({"format": "ilo-stylegan2", "config": config, "name": "bad", "state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="config") as info:
        load_checkpoint(path)
    one_line(info.value)


def test_state_dict_that_does_not_fit_its_config(tmp_path):
    g = StyleGAN2Generator(8, z_dim=4, w_dim=4, channel_base=32, channel_max=4, mapping_layers=1)
    path = tmp_path / "g.pt"
    save_checkpoint(g, path)
    obj = torch.load(path, weights_only=True)
    obj["state_dict"]["mapping.fc0.weight"] = torch.zeros(3, 3)
    torch.save(obj, path)
    with pytest.raises(CheckpointError, match=r"mapping.fc0.weight has shape \[3, 3\], the network needs \[4, 4\]"):
        load_checkpoint(path)


def test_cache_folder_that_is_a_file(tmp_path, monkeypatch):
    blocker = tmp_path / "cache"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ILO_CACHE", str(blocker / "sub"))
    monkeypatch.delenv("ILO_OFFLINE", raising=False)
    with pytest.raises(CacheError, match="is a file, not a directory") as info:
        fetch("http://127.0.0.1:9/never-contacted.pkl", "x.pkl")
    assert isinstance(info.value, OSError) and isinstance(info.value, GeneratorUnavailable)
    one_line(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_cache_folder_that_is_read_only(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    monkeypatch.setenv("ILO_CACHE", str(folder))
    monkeypatch.delenv("ILO_OFFLINE", raising=False)
    try:
        with pytest.raises(CacheError, match="is not writable"):
            fetch("http://127.0.0.1:9/never-contacted.pkl", "x.pkl")
    finally:
        folder.chmod(0o700)


# ---------------------------------------------------------------------------------------------
# the in-process cache, formats by content, directories


def dcgan(seed: int) -> DCGANGenerator:
    torch.manual_seed(seed)
    return DCGANGenerator(nz=4, ngf=4, size=8, name="g").eval()


def test_file_replaced_at_the_same_path_is_read_again(tmp_path, monkeypatch):
    monkeypatch.setattr(registry, "_CACHE", {})
    path = tmp_path / "g.pt"
    z = torch.randn(2, 4)
    a, b = dcgan(1), dcgan(2)
    torch.save(a.state_dict(), path)
    assert torch.equal(load_generator(str(path))(z), a(z))
    assert load_generator(str(path)) is load_generator(str(path))  # unchanged file: cached
    new = tmp_path / "g.new"
    torch.save(b.state_dict(), new)
    os.replace(new, path)  # same path, same size
    assert torch.equal(load_generator(str(path))(z), b(z))
    torch.save(a.state_dict(), path)  # overwritten in place, later modification time
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert torch.equal(load_generator(str(path))(z), a(z))


@pytest.mark.parametrize("name", ["weights.pkl", "weights.bin", "weights"])
def test_torch_file_under_any_name(tmp_path, name, monkeypatch):
    monkeypatch.setattr(registry, "_CACHE", {})
    g = dcgan(3)
    path = tmp_path / name
    torch.save({"netG_state_dict": g.state_dict()}, path)
    z = torch.randn(1, 4)
    assert torch.equal(load_checkpoint(path).eval()(z), g(z))
    assert torch.equal(load_generator(str(path))(z), g(z))


def test_file_of_another_kind_named_pt(tmp_path):
    path = tmp_path / "photo.pt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(CheckpointError, match="photo.pt is not a checkpoint this loader reads") as info:
        load_checkpoint(path)
    one_line(info.value)


def test_directory_is_not_reported_missing(tmp_path):
    folder = tmp_path / "model.pt"
    folder.mkdir()
    for target in (str(folder), str(tmp_path)):
        with pytest.raises(CheckpointError, match="is a directory, not a checkpoint file"):
            load_generator(target)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(str(tmp_path / "absent.pt"))


@pytest.mark.parametrize("module", ["budget", "pickling", "torchfile", "unpickler", "files", "convert", "hub", "registry"])
def test_module_doctests(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"ilo.generators.{module}"))
    assert result.failed == 0
