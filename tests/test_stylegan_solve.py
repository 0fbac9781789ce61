"""StyleGAN-2 through the common solver signature and the CLI (tiny random network)."""

import json

import pytest
import torch

from ilo.cli import main
from ilo.generators.files import save_checkpoint
from ilo.generators.stylegan2 import StyleGAN2Generator
from ilo.operators import Inpainting
from ilo.solvers import default_config, solve


@pytest.fixture(scope="module")
def tiny_sg():
    torch.manual_seed(0)
    return StyleGAN2Generator(32, z_dim=16, w_dim=16, channel_base=256, channel_max=32, mapping_layers=2).eval().requires_grad_(False)


def test_preset_follows_the_paper(tiny_sg):
    cfg = default_config("ilo", tiny_sg, "inpaint", total_steps=150, restarts=1, level=0.5)
    assert cfg.csgm.keys == ("ws", "noise0", "noise1", "noise2", "noise3", "noise4")
    assert [r.layer for r in cfg.rounds] == [1, 3, 5]
    # more noise maps as the rounds go deeper; radii grow with depth
    assert [r.keys[-1] for r in cfg.rounds] == ["noise6", "noise6", "noise6"] or len(cfg.rounds[0].keys) >= len(cfg.rounds[-1].keys)
    assert [r.radius_for("ws") for r in cfg.rounds] == [100.0, 1000.0, 6000.0]
    assert cfg.rounds[0].radius_for("noise3") == 1000.0
    assert cfg.loss.geocross == 0.01 and cfg.loss.perceptual > 0
    assert cfg.total_steps == 150
    scarce = default_config("ilo", tiny_sg, "inpaint", total_steps=150, level=0.05)
    assert scarce.loss.perceptual == 0


def test_ilo_on_stylegan_improves_and_keeps_unselected_noise(tiny_sg):
    G = tiny_sg
    x = G(G.sample_latent(1, torch.Generator().manual_seed(5)))
    op = Inpainting.random(G.image_shape, 0.5, torch.Generator().manual_seed(0))
    y = op(x)
    cfg = default_config("ilo", G, "cs", total_steps=40, restarts=1)
    res = solve(y, op, G, "ilo", cfg, seeds=3)
    first = torch.tensor(res.history[0]["measurement_loss"])
    assert (res.measurement_loss < first).all()
    assert {h["layer"] for h in res.history} == {0, 1, 3, 5}
    torch.testing.assert_close(G.tail(res.layer)(res.latents), G.tail(5)(res.latents))


def test_pulse_on_stylegan_keeps_ws_on_sphere(tiny_sg):
    G = tiny_sg
    op = Inpainting.random(G.image_shape, 0.5, torch.Generator().manual_seed(0))
    y = op(G(G.sample_latent(1, torch.Generator().manual_seed(6))))
    res = solve(y, op, G, "pulse", default_config("pulse", G, "superres", total_steps=10, restarts=1))
    norms = res.latents["ws"].norm(dim=-1)
    torch.testing.assert_close(norms, torch.full_like(norms, 16**0.5), rtol=1e-4, atol=1e-4)


def test_cli_solve_with_checkpoint_path(tmp_path, capsys, tiny_sg):
    path = tmp_path / "tiny-sg.pt"
    save_checkpoint(tiny_sg, path)
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as e:
        main(["solve", "--generator", str(path), "--task", "superres", "--factor", "4", "--truth-seed", "1",
              "--steps", "8", "--restarts", "1", "--quiet", "--out", str(out)])
    assert e.value.code == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    # the self-tuned ILO's steps for super-resolution: ILO's own CSGM stage, then the rounds (8 in all; the CSGM
    # method that challenges the choice is not in the history)
    first = cfg["solver"]["csgm"]["steps"]
    assert cfg["solver"]["selection"]["csgm"] == "challenge" and cfg["solver"]["selection"]["csgm_steps"] == first
    assert m["task"] == "superres" and m["steps"] == first + sum(r["steps"] for r in cfg["solver"]["rounds"]) == 8
    assert "true_mse" in m
    assert cfg["solver"]["rounds"][0]["layer"] == 1


def test_gaussianised_parameterisation(tiny_sg):
    from ilo.generators.gaussianised import GaussianisedGenerator

    G = GaussianisedGenerator(tiny_sg, n_fit=500)
    s = G.sample_latent(2, torch.Generator().manual_seed(4))
    assert "v" in s and "ws" not in s
    # same faces as the plain generator, exact splits, v roughly standard normal
    plain = tiny_sg.sample_latent(2, torch.Generator().manual_seed(4))
    torch.testing.assert_close(G(s), tiny_sg(plain), atol=1e-4, rtol=1e-4)
    for k in range(G.num_layers + 1):
        assert torch.equal(G.tail(k)(G.head(k)(s)), G(s))
    v = G.sample_latent(200, torch.Generator().manual_seed(5))["v"]
    assert abs(float(v.mean())) < 0.2 and 0.7 < float(v.std()) < 1.3
    cfg = default_config("pulse", G, "superres", total_steps=5, restarts=1)
    assert cfg.keys[0] == "v" and cfg.sphere
    op = Inpainting.random(G.image_shape, 0.5, torch.Generator().manual_seed(0))
    res = solve(op(G(s))[:1], op, G, "ilo", default_config("ilo", G, "cs", total_steps=12, restarts=1))
    assert torch.isfinite(res.image).all()
