"""Detection and alignment with dlib (the ``faces`` extra; skipped without it): synthetic photos
made by pasting digiface-dcgan faces into larger backgrounds with known similarity transforms,
real photographs (astronaut, Grace Hopper), the shipped template, and the ``ilo restore`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

pytest.importorskip("dlib")
from ilo.faces import detect as D
from ilo.faces.align import Similarity, align_face, ffhq_transform, sampling_grid
from ilo.faces.template import find_template, generator_fingerprint, template_for
from ilo.faces.warp import warp

try:
    D.check_available("5")
except D.DetectorUnavailable:  # dlib without the model files
    pytest.skip("face-recognition-models is not installed", allow_module_level=True)

S = 64


def own_alignment(G, x, template):
    """Align a generated face in its own frame (detected at 4x, landmarks scaled back), or None."""
    big = F.interpolate(x, size=(4 * S, 4 * S), mode="bicubic", align_corners=False).clamp(-1, 1)
    faces = D.detect_faces(big, upsample=0)
    if len(faces) != 1:
        return None
    faces[0].landmarks = faces[0].landmarks / 4
    return align_face(faces[0], template)


def paste_into_photo(faces, transforms, hw=(240, 320), background=-0.2):
    """A photo [1, 3, H, W] with each face [1, 3, S, S] placed by its photo -> face-frame transform."""
    photo = torch.full((1, 3, *hw), background)
    for x, T in zip(faces, transforms):
        grid = sampling_grid(T, (S, S), (0, 0, hw[1], hw[0]))
        cov = warp(torch.ones(1, 1, S, S), grid)
        photo = cov * warp(x, grid) + (1 - cov) * photo
    return photo


def placement(width, angle, centre):
    """Photo -> face-frame similarity putting an S-px face ``width`` pixels wide, rotated by
    ``angle`` degrees, centred at ``centre``."""
    L = Similarity.from_params(S / width, angle, (0.0, 0.0)).matrix[:, :2]
    return Similarity(np.c_[L, S / 2 - L @ np.asarray(centre, float)])


def corner_error(T_a, T_b, width):
    """Largest distance, in units of the face's width in the photo, between where two photo ->
    aligned transforms put the aligned frame's corners and centre."""
    q = np.array([[0, 0], [S, 0], [0, S], [S, S], [S / 2, S / 2]], dtype=float)
    return float(np.abs(T_a.inverse().apply(q) - T_b.inverse().apply(q)).max() / width)


@pytest.fixture(scope="module")
def samples(digiface):
    """The first 8 digiface faces (seed 123) that the detector finds on their own, with their own alignment."""
    tpl = template_for(digiface)
    with torch.no_grad():
        xs = digiface(digiface.sample_latent(24, torch.Generator().manual_seed(123)))
    out = []
    for i in range(len(xs)):
        al = own_alignment(digiface, xs[i : i + 1], tpl)
        if al is not None:
            out.append((xs[i : i + 1], al))
    assert len(out) >= 8, "the detector should find most generated faces enlarged to 256 px"
    return tpl, out[:8]


def test_shipped_template_matches_the_installed_generator(digiface):
    tpl = find_template(digiface)
    assert tpl is not None and tpl.source["fingerprint"] == generator_fingerprint(digiface)
    lm = tpl.landmarks["5"]  # [5, 2] in [0, 1]: eyes level and symmetric about the centre, nose below
    assert abs(lm[0, 1] - lm[2, 1]) < 0.03 and abs((lm[0, 0] + lm[2, 0]) / 2 - 0.5) < 0.03
    assert lm[4, 1] > lm[:4, 1].max() + 0.1
    assert tpl.source["with_one_face"] >= 100


def test_estimate_template_refuses_a_generator_without_faces(tiny_dcgan):
    from ilo.faces.template import estimate_template

    with pytest.raises(ValueError, match="exactly one detected face"):
        estimate_template(tiny_dcgan, samples=4, detect_size=64)


def test_detect_accepts_tensors_arrays_and_pil_alike():
    from skimage import data

    a = data.astronaut()
    t = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 127.5 - 1
    for img in (Image.fromarray(a), t):  # a tensor's array view is not contiguous: dlib must get a copy
        assert [f.box for f in D.detect_faces(img)] == [f.box for f in D.detect_faces(a)]


def test_synthetic_photos_transform_recovered(samples):
    """Faces pasted with a known transform P (width 110-160 px, rotation -12..12 degrees) are found
    (at least half of them: dlib finds about 70 % of this generator's faces at any one size) and
    their alignment equals (own alignment) o P: within 10 % of the face's width for every face and
    2 % for the median; and within 20 % of P itself (a face differs from the generator's mean face)."""
    tpl, faces = samples
    rng = np.random.default_rng(0)
    errors, found = [], 0
    for x, own in faces:
        width, angle = rng.uniform(110, 160), rng.uniform(-12, 12)
        P = placement(width, angle, (rng.uniform(110, 210), rng.uniform(100, 140)))
        det = D.detect_faces(paste_into_photo([x], [P]))
        if len(det) != 1:
            continue
        found += 1
        al = align_face(det[0], tpl)
        expected = Similarity(own.transform.matrix @ np.vstack([P.matrix, [0, 0, 1]]))
        errors.append(corner_error(al.transform, expected, width))
        assert corner_error(al.transform, P, width) < 0.2
    assert found >= len(faces) // 2, f"found {found} of {len(faces)} pasted faces"
    assert max(errors) < 0.10 and np.median(errors) < 0.02, errors


def test_several_faces_in_one_photo(samples):
    """Three faces that the detector finds where each is pasted alone are all found together, each
    aligned to where it was put (within 10 % of its width)."""
    tpl, faces = samples
    spots = [((80, 80), -8.0), ((240, 80), 0.0), ((160, 250), 8.0)]
    chosen = []
    for x, own in faces:
        centre, angle = spots[len(chosen)]
        P = placement(120, angle, centre)
        if len(D.detect_faces(paste_into_photo([x], [P], hw=(330, 320)))) == 1:
            chosen.append((x, own, P))
        if len(chosen) == 3:
            break
    assert len(chosen) == 3
    det = D.detect_faces(paste_into_photo([c[0] for c in chosen], [c[2] for c in chosen], hw=(330, 320)))
    assert len(det) == 3
    for _, own, P in chosen:
        expected = Similarity(own.transform.matrix @ np.vstack([P.matrix, [0, 0, 1]]))
        assert min(corner_error(align_face(d, tpl).transform, expected, 120) for d in det) < 0.1


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_ffhq_five_point_approximates_68_point_on_real_photos(name):
    """The FFHQ square from 5 points (mouth estimated from the nose) against the recipe's own
    68-point square: within 8 % of the square's side everywhere."""

    if name == "astronaut":
        from skimage import data

        img = data.astronaut()
    else:
        from matplotlib import cbook

        with cbook.get_sample_data("grace_hopper.jpg") as f:
            img = np.asarray(Image.open(f).convert("RGB"))
    f5, f68 = D.detect_faces(img, landmarks="5")[0], D.detect_faces(img, landmarks="68")[0]
    T5, T68 = ffhq_transform(f5.landmarks, "5", 1024), ffhq_transform(f68.landmarks, "68", 1024)
    side = 1024 / T68.scale
    assert corner_error(T5, T68, side) < 0.08


def test_detector_unavailable_names_the_extra(monkeypatch):
    import sys

    D._detector.cache_clear()
    D._predictor.cache_clear()
    monkeypatch.setitem(sys.modules, "dlib", None)
    try:
        with pytest.raises(D.DetectorUnavailable, match="faces"):
            D.detect_faces(np.zeros((32, 32, 3), np.uint8))
    finally:
        D._detector.cache_clear()
        D._predictor.cache_clear()


# --- the command ------------------------------------------------------------------------------
def run_cli(args, capsys):
    from ilo.cli import main

    with pytest.raises(SystemExit) as e:
        main(args)
    return e.value.code, capsys.readouterr()


def test_cli_no_face_exits_2_with_one_line(tmp_path, capsys):
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "wall.png")
    code, out = run_cli(["restore", str(tmp_path / "wall.png"), "--task", "denoise", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and out.err.strip().count("\n") == 0 and "no face" in out.err
    assert not (tmp_path / "o").exists()  # nothing written, not even the folder


def test_cli_folder_without_faces_and_overwrite_refused(tmp_path, capsys):
    d = tmp_path / "photos"
    d.mkdir()
    for n in ("a.png", "b.jpg"):
        Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(d / n)
    code, out = run_cli(["restore", str(d), "--task", "denoise", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "no face found in any photo" in out.err and "a.png: no face found, skipped" in out.err
    assert not (tmp_path / "o").exists()
    # an input named like an output, inside the output folder, is never overwritten
    Image.fromarray(np.full((64, 80, 3), 90, np.uint8)).save(tmp_path / "restored.png")
    code, out = run_cli(["restore", str(tmp_path / "restored.png"), "--task", "denoise", "--out", str(tmp_path)], capsys)
    assert code == 2 and "overwrite" in out.err


@pytest.mark.parametrize("extra,match", [
    ([], "needs --mask"),
    (["--mask", "MASK"], "mask is 10x10"),
])
def test_cli_inpaint_mask_errors(tmp_path, capsys, extra, match):
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "p.png")
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(tmp_path / "m.png")
    extra = [str(tmp_path / "m.png") if a == "MASK" else a for a in extra]
    code, out = run_cli(["restore", str(tmp_path / "p.png"), "--task", "inpaint", *extra, "--out", str(tmp_path / "o")],
                        capsys)
    assert code == 2 and match in out.err and out.err.strip().count("\n") == 0


@pytest.mark.slow
def test_cli_restores_a_real_photo(tmp_path, capsys):
    """End to end: the astronaut at 256 px, noise simulated, 30 ILO steps; outputs complete and scored."""
    from skimage import data

    Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS).save(tmp_path / "astro.png")
    code, out = run_cli(["restore", str(tmp_path / "astro.png"), "--task", "denoise", "--sigma", "25", "--simulate",
                         "--steps", "30", "--restarts", "1", "--quiet", "--out", str(tmp_path / "o")], capsys)
    assert code == 0, out.err
    o = tmp_path / "o"
    assert {p.name for p in o.iterdir()} == {"restored.png", "observation.png", "faces.json", "config.json",
                                            "metrics.json", "face-0.png"}
    assert Image.open(o / "restored.png").size == (256, 256)
    faces = json.loads((o / "faces.json").read_text())["faces"]
    assert len(faces) == 1 and faces[0]["landmark_fit_rms_px"] < 3
    m = json.loads((o / "metrics.json").read_text())
    assert m["psnr"] > 20 and m["faces_region"]["pixels"] > 1000
    # the face's weight was chosen on held-out pixels; the result is never worse than the background there
    chosen = faces[0]["weight_choice"]
    assert chosen["weight"] == faces[0]["weight"] == m["faces"][0]["weight"] and len(chosen["estimated_mse"]) == 9
    assert chosen["held_out_pixels"] > 100
    assert m["faces_region"]["psnr"] > m["faces_region"]["psnr_background"] - 0.3
    assert json.loads((o / "config.json").read_text())["face_weight"]["z"] == 0.0
    code, out = run_cli(["restore", str(tmp_path / "astro.png"), "--task", "denoise", "--simulate", "--face-weight", "2",
                         "--quiet", "--out", str(tmp_path / "o2")], capsys)
    assert code == 2 and "--face-weight" in out.err and out.err.strip().count("\n") == 0
    assert not (tmp_path / "o2").exists()


def test_aligned_face_of_a_rotated_face_in_a_photo_matches_its_own_alignment(samples, digiface):
    """Generated faces pasted 150 px wide, rotated by 10 degrees, off centre: the aligned crop is the
    face as its own alignment sees it, and much nearer to it than the photo's centre crop."""
    from ilo.faces.align import aligned_crop
    from ilo.faces.crop import aligned_face
    from ilo.images import fit_to_size, pil_to_tensor, tensor_to_pil

    tpl, found = samples
    errors = []
    for x, own in found:
        photo = paste_into_photo([x], [placement(150, 10.0, (200, 130))])
        try:
            crop, face, al = aligned_face(photo, digiface)
        except D.NoFaceFound:  # dlib finds about 70 % of this generator's faces
            continue
        expected = aligned_crop(x, own.transform, S)
        centre = pil_to_tensor(fit_to_size(tensor_to_pil(photo), S))
        errors.append(((crop - expected).abs().mean().item(), (centre - expected).abs().mean().item()))
        assert crop.shape == (1, 3, S, S)
    assert len(errors) >= len(found) // 2, errors
    assert all(e < c / 2 for e, c in errors) and np.median([e for e, _ in errors]) < 0.05, errors


def test_cli_solve_align(samples, tmp_path, capsys):
    tpl, found = samples
    photo = paste_into_photo([found[0][0]], [placement(150, 10.0, (200, 130))])
    from ilo.images import save_image

    save_image(photo, tmp_path / "p.png")
    args = ["solve", "--task", "denoise", "--method", "csgm", "--steps", "2", "--restarts", "1", "--quiet",
            "--image", str(tmp_path / "p.png"), "--align", "--out", str(tmp_path / "o")]
    code, out = run_cli(args, capsys)
    assert code == 0, out.err
    cfg = json.loads((tmp_path / "o" / "config.json").read_text())
    assert cfg["alignment"]["landmark_fit_rms_px"] < 3 and abs(cfg["alignment"]["transform"]["angle_deg"] - 10.0) < 4
    assert cfg["problem"]["framing"] == "generator"  # aligned to the template: the prior fitted to plain samples
    Image.fromarray(np.full((96, 128, 3), 120, np.uint8)).save(tmp_path / "flat.png")
    code, out = run_cli([*args[:-4], str(tmp_path / "flat.png"), "--align", "--out", str(tmp_path / "o2")], capsys)
    assert code == 2 and "no face found" in out.err and out.err.strip().count("\n") == 0
    assert not (tmp_path / "o2").exists()


@pytest.mark.usefixtures("one_thread")
def test_restore_solves_a_photos_faces_in_worker_processes_as_in_one(samples, digiface):
    """Two faces of one photo solved in two worker processes (``jobs=2``) give the photo that one
    process gives solving them one after another on one thread, bit for bit; the number of
    processes is in the restoration's config."""
    from ilo.faces.restore import RestoreConfig, degrade, restore_photo

    tpl, faces = samples
    spots, chosen = [(100, 120), (300, 120)], []
    for x, _ in faces:
        P = placement(150, 0.0, spots[len(chosen)])
        if len(D.detect_faces(paste_into_photo([x], [P], hw=(240, 400)))) == 1:
            chosen.append((x, P))
        if len(chosen) == 2:
            break
    photo = paste_into_photo([c[0] for c in chosen], [c[1] for c in chosen], hw=(240, 400))
    cfg = RestoreConfig(task="denoise", sigma255=10, steps=8, restarts=1)
    noisy = degrade(photo, cfg, seed=0)
    one = restore_photo(noisy, digiface, cfg, jobs=1)
    two = restore_photo(noisy, digiface, cfg, jobs=2)
    assert len(one.faces) == len(two.faces) == 2
    assert torch.equal(one.image, two.image)
    for a, b in zip(one.faces, two.faces):
        assert torch.equal(a.restored, b.restored) and a.region == b.region and b.seconds > 0
    assert (one.config["jobs"], two.config["jobs"]) == (1, 2)
    assert restore_photo(noisy, digiface, cfg, jobs=5).config["jobs"] == 2  # at most one per face
