"""ilo.bench.prior_fit: the Gaussian prior's fit per procedure, timed, and the prior alone's PSNR."""

from __future__ import annotations

import pytest
import torch

from ilo.bench import prior_fit


def test_variants_parse_and_refuse_what_is_not_one():
    assert prior_fit.parse_variant(" pairs:1") == ("pairs", 1, None)
    assert prior_fit.parse_variant("pairs:1:4") == ("pairs", 1, 4)
    assert prior_fit.parse_variant("flips:3") == ("flips", 3, None)
    for bad in ("pairs", "mirror:1", "plain:x", "flips:-1", "flips:1:2", "pairs:1:0", "pairs:1:2:3"):
        with pytest.raises(ValueError, match="KIND:POWER_ITERATIONS"):
            prior_fit.parse_variant(bad)


def test_each_procedure_fits_and_the_prior_knows_the_generators_images(tiny_dcgan):
    with torch.no_grad():
        own = tiny_dcgan(tiny_dcgan.sample_latent(6, torch.Generator().manual_seed(5)))
    noise = torch.rand(6, *own.shape[1:], generator=torch.Generator().manual_seed(6)) * 2 - 1
    cells = (("inpaint", 0.1), ("box", 1 / 3), ("superres", 4))
    rows = []
    for kind in prior_fit.KINDS:
        prior, secs = prior_fit.fit(tiny_dcgan, kind, 1, seed=0, samples=256, components=16)
        assert secs > 0 and prior.basis.shape == (768, 16)
        q = prior_fit.quality(prior, {"real": noise, "generated": own}, cells)
        assert set(q["generated"]) == {"inpaint 0.1", "box 0.333333", "superres 4"}
        for cell, value in q["generated"].items():  # the generator's own images: far better than noise
            assert value > q["real"][cell] + 3, (kind, cell)
        rows.append({"variant": f"{kind}:1", "seed": 0, "seconds": secs, "load": 0.0, "psnr": q})
    flips_mean = prior_fit.fit(tiny_dcgan, "flips", 1, seed=0, samples=256, components=16)[0].mean
    pairs_mean = prior_fit.fit(tiny_dcgan, "pairs", 1, seed=0, samples=256, components=16)[0].mean
    assert not torch.equal(flips_mean, pairs_mean)  # two procedures, not one under two names
    text = prior_fit.table(rows)
    assert text.count("\n") == 1 + len(rows) and "pairs:1" in text and "box 0.333333 real / gen" in text
