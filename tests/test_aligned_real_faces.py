"""Real faces aligned to the generator's template (``realfaces_eval --crops aligned``): which faces
are kept, what the benchmark records, and the self-tuning's choice of Gaussian prior."""

from __future__ import annotations

import json

import pytest
import torch

from ilo.bench import faces as bf
from ilo.bench import realfaces_eval as rfe
from ilo.images import photo


def test_faces_whose_frame_leaves_the_photo_are_dropped_and_recorded(monkeypatch):
    from ilo.data.realfaces import faces

    split = faces("tuning")
    outside = {f.name: (0.2 if i % 3 == 1 else 0.004 * (i % 2)) for i, f in enumerate(split)}

    def fake(f, G):
        return torch.full((1, 3, 4, 4), float(len(f.name))), {"face": f.name, "outside": outside[f.name]}

    monkeypatch.setattr(bf, "aligned_real_face", fake)
    x, names, records = bf.aligned_real_faces(None, "tuning", max_outside=0.01)
    expected = [f.name for f in split if outside[f.name] <= 0.01]
    assert names == expected and 0 < len(names) < len(split)
    assert x.shape == (len(names), 3, 4, 4) and x[:, 0, 0, 0].tolist() == [float(len(n)) for n in names]
    assert [r["face"] for r in records] == [f.name for f in split]  # every face of the split has a record
    dropped = [r for r in records if not r["kept"]]
    assert all("20.0% of the aligned frame lies outside" in r["why"] for r in dropped)
    monkeypatch.setattr(bf, "aligned_real_face", lambda f, G: (torch.zeros(1, 3, 4, 4), {"face": f.name, "outside": 0.5}))
    with pytest.raises(ValueError, match="no face of the 'tuning' split aligns inside its photo"):
        bf.aligned_real_faces(None, "tuning")


def test_the_benchmark_on_aligned_crops_records_them(tiny_dcgan, one_thread, monkeypatch, tmp_path):
    faces = torch.cat([photo("astronaut", 16), photo("grace_hopper", 16)])
    records = [{"face": "astronaut", "kept": True, "outside": 0.0}, {"face": "x", "kept": False, "outside": 0.3}]
    calls = []

    def fake(G, split):
        calls.append(split)
        return faces, ["astronaut", "grace_hopper"], records

    monkeypatch.setattr(bf, "aligned_real_faces", fake)
    monkeypatch.setattr("ilo.data.realfaces.real_faces", lambda split, size: pytest.fail("the registry boxes were read"))
    monkeypatch.setattr("ilo.generators.load_generator", lambda name: tiny_dcgan)
    path = tmp_path / "r.json"
    rfe.main(["--split", "tuning", "--crops", "aligned", "--steps", "4", "--restarts", "1", "--keys", "superres 4",
              "--json", str(path)])
    meta = json.loads(path.read_text())["meta"]
    assert calls == ["tuning"] and meta["crops"] == "aligned" and meta["crop_records"] == records
    assert meta["faces"] == ["astronaut", "grace_hopper"]


@pytest.mark.parametrize("augment", [True, False])
def test_the_self_tuning_fits_the_prior_it_is_told_to(tiny_dcgan, one_thread, monkeypatch, augment):
    from dataclasses import replace

    import ilo.solvers.gaussian as gm
    from ilo.operators import Inpainting
    from ilo.solvers import preset_for, solve

    asked = []
    real = gm.prior_for

    def spy(G, *a, augment=gm.AUGMENT, **k):
        asked.append(augment)
        return real(G, 256, 16, augment=augment)

    monkeypatch.setattr(gm, "prior_for", spy)
    op = Inpainting.random((3, 16, 16), observed=0.05, generator=torch.Generator().manual_seed(0))
    y = op(photo("astronaut", 16))
    cfg = preset_for("ilo", tiny_dcgan, op, total_steps=4, restarts=1)
    cfg = replace(cfg, selection=replace(cfg.selection, gaussian_augment=augment))
    res = solve(y, op, tiny_dcgan, "ilo", cfg, seeds=0)
    assert asked == [gm.AUGMENT if augment else gm.PLAIN]
    assert "gaussian" in res.selection["candidates"]


def test_aligned_real_face_measures_the_frame_outside_the_photo(monkeypatch):
    pytest.importorskip("dlib")
    from dataclasses import replace

    from ilo.data.realfaces import face, locate
    from ilo.faces import detect as D
    from ilo.generators import load_generator

    try:
        D.check_available("5")
    except D.DetectorUnavailable:
        pytest.skip("face-recognition-models is not installed")
    G = load_generator("digiface-dcgan")
    f = face("astronaut")
    crop, rec = bf.aligned_real_face(f, G)
    assert crop.shape == (1, 3, 64, 64) and float(crop.abs().max()) <= 1
    assert rec["outside"] == 0.0 and rec["face"] == "astronaut" and rec["landmark_fit_rms_px"] < 3
    # the same face in a photo cut tightly around its box: part of the aligned frame has no photo under it
    im = bf._photo(locate(f))
    x0, y0, x1, y1 = f.box
    m = (x1 - x0) // 8
    tight = im.crop((x0 + m, y0 + m, x1 - m, y1 - m))
    monkeypatch.setattr(bf, "_photo", lambda path: tight)
    crop2, rec2 = bf.aligned_real_face(replace(f, box=(0, 0, tight.width, tight.height)), G)
    assert 0.05 < rec2["outside"] < 0.9
    flat = (crop2 == 0).all(1)  # zeros where the frame leaves the photo
    assert abs(float(flat.float().mean()) - rec2["outside"]) < 0.05


def test_framing_follows_where_the_truth_came_from(tiny_dcgan):
    from ilo.pipeline import ProblemSpec, build_problem

    spec = ProblemSpec("inpaint", observed=0.1)
    assert build_problem(spec, tiny_dcgan, truth_seed=3).framing == "generator"  # the generator's own sample
    x = photo("astronaut", 16)
    assert build_problem(spec, tiny_dcgan, truth=x).framing == "free"
    prob = build_problem(spec, tiny_dcgan, truth=x, framing="generator")  # e.g. aligned to its template
    assert prob.framing == "generator" and prob.describe()["framing"] == "generator"
    with pytest.raises(ValueError, match="unknown framing 'centred'"):
        build_problem(spec, tiny_dcgan, truth=x, framing="centred")


def test_the_prior_fit_follows_the_framing(tiny_dcgan):
    from ilo.pipeline import ProblemSpec, build_problem, for_framing, method_config
    from ilo.solvers.gaussian import GaussianConfig

    assert for_framing(GaussianConfig(), "generator").augment is False
    assert for_framing(GaussianConfig(), "free").augment is True
    spec = ProblemSpec("inpaint", observed=0.1)
    x = photo("astronaut", 16)
    for framing, augment in (("generator", False), ("free", True)):
        prob = build_problem(spec, tiny_dcgan, truth=x, framing=framing)
        assert method_config(prob, tiny_dcgan, "ilo").selection.gaussian_augment is augment
        assert method_config(prob, tiny_dcgan, "csgm") == method_config(build_problem(spec, tiny_dcgan, truth=x), tiny_dcgan, "csgm")
    assert method_config(build_problem(spec, tiny_dcgan, truth=x, framing="generator"), tiny_dcgan, "ilo",
                         extend=False).selection is None  # nothing to fit without the self-tuning


def test_a_batch_keeps_its_items_framing_and_refuses_a_mix(tiny_dcgan, tmp_path):
    from ilo.images import save_image
    from ilo.pipeline import ProblemSpec
    from ilo.runs.pipeline_job import image_item, item_problem, stack_problems, truth_item

    spec = ProblemSpec("inpaint", observed=0.1)
    spec.validate()
    save_image(photo("astronaut", 16), tmp_path / "a.png")
    seeds = [truth_item(5, 0), truth_item(6, 1)]
    # generated truths are framed as the generator's, alone and stacked (as `ilo solve --truth-seed` frames them)
    assert stack_problems([item_problem(spec, tiny_dcgan, it, 0) for it in seeds]).framing == "generator"
    photo_item = image_item("a.png", tmp_path / "a.png", 2)
    assert item_problem(spec, tiny_dcgan, photo_item, 0).framing == "free"
    assert item_problem(spec, tiny_dcgan, photo_item, 0, "generator").framing == "generator"  # batch --framing generator
    mixed = [item_problem(spec, tiny_dcgan, seeds[0], 0), item_problem(spec, tiny_dcgan, seeds[1], 0, "free")]
    with pytest.raises(ValueError, match="a batch mixes framings"):
        stack_problems(mixed)


@pytest.mark.parametrize("source,framing,expected", [
    (["--truth-seed", "3"], [], "generator"),
    (["--image", "PHOTO"], [], "free"),
    (["--image", "PHOTO"], ["--framing", "generator"], "generator"),
    (["--truth-seed", "3"], ["--framing", "free"], "free"),
])
def test_solve_records_the_framing_it_solved_with(tmp_path, capsys, source, framing, expected):
    from ilo.cli import main
    from ilo.images import save_image

    save_image(photo("astronaut", 64), tmp_path / "p.png")
    source = [str(tmp_path / "p.png") if v == "PHOTO" else v for v in source]
    out = tmp_path / "o"
    with pytest.raises(SystemExit) as e:
        main(["solve", "--task", "inpaint", "--observed", "0.1", "--method", "gaussian", "--quiet", *source, *framing,
              "--out", str(out)])
    assert e.value.code == 0, capsys.readouterr().err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["problem"]["framing"] == expected
    assert cfg["solver"]["augment"]["flip"] is (expected == "free")  # the prior's fit: augmented for a free crop only
