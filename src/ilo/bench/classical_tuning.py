"""Tune the classical baselines' weights, and measure CSGM -> sparse deviation, on tuning images.

    python -m ilo.bench.classical_tuning --json docs/bench/classical-tuning.json
    python -m ilo.bench.classical_tuning --deviation --steps 100 --restarts 2 --json docs/bench/deviation.json

Images (:func:`tuning_images`): the astronaut and Grace Hopper face crops, LFW faces 64-69
(the harness evaluates on LFW 0-63) and four generated faces of the DCGAN (seeds 10000-10003),
all 64x64 RGB in ``[-1, 1]``. Any other ``[N, C, H, W]`` batch can be passed to
:func:`sweep` and :func:`deviation_sweep` (e.g. the real-face tuning set once it exists).
Operators: per-image random masks and noise streams from seed ``seed + i``; the shared
operators (super-resolution, compressed sensing) from ``seed``. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from .. import metrics as M
from ..operators import Inpainting, operator_class
from ..operators.base import Operator
from ..rng import stream, streams
from ..solvers import CLASSICAL_METHODS

#: (task, level) of the operators tuned; BOX hides the central square of ``level`` of the side
BOX = "box"
SPECS = (("inpaint", 0.05), ("inpaint", 0.1), ("inpaint", 0.3), (BOX, 1 / 3), ("superres", 4), ("superres", 8),
         ("superres", 16), ("denoise", 10), ("denoise", 25), ("denoise", 50), ("cs", 0.05), ("cs", 0.1))
GRIDS = {"tv-inpaint": (0.001, 0.003, 0.01, 0.03, 0.1), "tv-superres": (1e-4, 3e-4, 0.001, 0.003, 0.01),
         "nlmeans": (0.4, 0.6, 0.8, 1.0, 1.2), "tv-denoise": (0.3, 0.5, 0.7, 1.0, 1.4),
         "tv-cs": (0.003, 0.01, 0.03, 0.1, 0.3), "wavelet-cs": (0.003, 0.01, 0.03, 0.1, 0.3)}
LFW_TUNING = tuple(range(64, 70))


def operator_for(name: str) -> type[Operator]:
    """The operator class of a spec name (a task key, or :data:`BOX`)."""
    return Inpainting if name == BOX else operator_class(name)


def methods_for(name: str) -> tuple[str, ...]:
    """The classical methods that solve a spec's operator."""
    cls = operator_for(name)
    return tuple(m for m, c in CLASSICAL_METHODS.items() if c is cls)
GENERATED_TUNING = (10000, 10001, 10002, 10003)


def tuning_images(size: int = 64, G=None) -> tuple[torch.Tensor, list[str]]:
    """``[N, 3, size, size]``: the two photos, LFW faces 64-69 and (with ``G``) generated faces."""
    from ..bench.harness import lfw_faces
    from ..images import photo

    ims = [photo("astronaut", size), photo("grace_hopper", size), lfw_faces(size, 3, list(LFW_TUNING))]
    ids = ["astronaut", "grace_hopper"] + [f"lfw{i:03d}" for i in LFW_TUNING]
    if G is not None:
        with torch.no_grad():
            ims += [G(G.sample_latent(1, torch.Generator().manual_seed(s))).cpu() for s in GENERATED_TUNING]
        ids += [f"seed{s}" for s in GENERATED_TUNING]
    return torch.cat(ims), ids


def central_box(height: int, width: int, level: float = 1 / 3) -> list[int]:
    """``[x0, y0, x1, y1]`` of the central square of ``level`` of each side: the :data:`BOX` spec's mask.

    >>> central_box(64, 64)
    [21, 21, 42, 42]
    """
    sh, sw = round(height * level), round(width * level)
    return [(width - sw) // 2, (height - sh) // 2, (width - sw) // 2 + sw, (height - sh) // 2 + sh]


def problem_spec(name: str, shape: tuple[int, ...], level: float | None = None):
    """The :class:`~ilo.pipeline.ProblemSpec` of spec ``name`` (a task key or :data:`BOX`) for
    images of ``shape [C, H, W]``, at its default level or ``level`` (the box: of the side)."""
    from ..pipeline import ProblemSpec

    if name == BOX:
        return ProblemSpec(Inpainting.task, box=central_box(shape[-2], shape[-1], *(() if level is None else (level,))))
    return ProblemSpec(name) if level is None else ProblemSpec.at_level(name, level)


def make_problem(name: str, level: float, x: torch.Tensor, seed: int = 0) -> tuple[Operator, torch.Tensor]:
    """The operator of spec ``name`` at ``level`` for images ``x [N, C, H, W]`` (image ``i``'s random
    parts and noise from the streams of seed ``seed + i``) and its observation."""
    shape = tuple(x.shape[1:])
    _, h, w = shape
    cls = operator_for(name)
    if name == BOX:
        options = {"box": central_box(h, w, level)}
    else:
        options = cls.level_options(level)
    seeds = [seed + i for i in range(len(x))]
    op = cls.stack([cls.from_options(shape, stream(s, "operator"), **options) for s in seeds])
    return op, op(x, streams(seeds, "noise"))


def _run(method: str, y: torch.Tensor, op: Operator, weight: float | None) -> torch.Tensor:
    from ..solvers.classical import ClassicalConfig, classical

    if method == "bm3d":
        from ..solvers import bm3d_denoise

        return bm3d_denoise(y, op).image
    return classical(y, op, method, ClassicalConfig(weight=weight)).image


def sweep(x: torch.Tensor, specs=SPECS, methods: dict | None = None, grids: dict = GRIDS, echo=print) -> list[dict]:
    """Mean PSNR of every method (``methods[name]``; default: every classical method of the
    spec's operator) and every weight of its grid, at every spec: one row each."""
    rows = []
    for task, level in specs:
        op, y = make_problem(task, level, x)
        for method in (methods or {}).get(task, methods_for(task)):
            for weight in grids.get(method, (None,)):
                t = time.time()
                psnr = M.psnr(_run(method, y, op, weight), x)
                rows.append({"task": task, "level": level, "method": method, "weight": weight,
                             "psnr": float(psnr.mean()), "per_image": psnr.tolist(), "seconds": time.time() - t})
                echo(f"{task} {level:g} {method} weight={weight}: {rows[-1]['psnr']:.2f} dB ({rows[-1]['seconds']:.1f} s)")
    return rows


def deviation_sweep(G, x: torch.Tensor, specs=SPECS, priors=("wavelet", "tv"), weights=(0.003, 0.01, 0.03, 0.1, 0.3),
                    steps: int = 100, restarts: int = 2, deviation_steps: int = 100, echo=print) -> list[dict]:
    """CSGM alone, then CSGM -> :func:`~ilo.solvers.deviation.deviate` with each prior and
    weight, at every spec: mean PSNR rows (``method`` = ``csgm`` or ``csgm+<prior>``)."""
    from ..solvers import preset_for, solve
    from ..solvers.deviation import deviate

    rows = []
    for task, level in specs:
        op, y = make_problem(task, level, x)
        cfg = preset_for("csgm", G, op, total_steps=steps, restarts=restarts)
        t = time.time()
        x0 = solve(y, op, G, "csgm", cfg, seeds=0).image
        psnr = M.psnr(x0, x)
        rows.append({"task": task, "level": level, "method": "csgm", "weight": None, "psnr": float(psnr.mean()),
                     "per_image": psnr.tolist(), "seconds": time.time() - t})
        echo(f"{task} {level:g} csgm: {rows[-1]['psnr']:.2f} dB")
        for prior in priors:
            for w in weights:
                t = time.time()
                psnr = M.psnr(deviate(y, op, x0, prior, w, deviation_steps).image, x)
                rows.append({"task": task, "level": level, "method": f"csgm+{prior}", "weight": w,
                             "psnr": float(psnr.mean()), "per_image": psnr.tolist(), "seconds": time.time() - t})
                echo(f"{task} {level:g} csgm+{prior} weight={w}: {rows[-1]['psnr']:.2f} dB")
    return rows


def iagan_sweep(G, x: torch.Tensor, specs=SPECS, lrs=(1e-4, 3e-4, 1e-3), steps: int = 100, restarts: int = 2,
                iagan_steps: int = 100, echo=print) -> list[dict]:
    """An experiment, DCGAN only: CSGM, then Image-Adaptive GAN fine-tuning (Hussein, Tirer &
    Giryes 2020) of the generator's last layer, one copy per image, at CSGM's latent (kept
    fixed), Adam on the measurement loss at each learning rate (``method`` = ``csgm+iagan``)."""
    import torch.nn.functional as F

    from ..solvers import preset_for, solve

    last = G.main[-2]  # the final ConvTranspose2d, [cin, C, 4, 4]
    rows = []
    for task, level in specs:
        op, y = make_problem(task, level, x)
        cfg = preset_for("csgm", G, op, total_steps=steps, restarts=restarts)
        res = solve(y, op, G, "csgm", cfg, seeds=0)
        with torch.no_grad():
            h = G.run(res.latents, res.layer, G.num_layers - 1)["h"]  # [B, cin, H/2, W/2]
        b, cin = h.shape[:2]
        psnr = M.psnr(res.image, x)
        rows.append({"task": task, "level": level, "method": "csgm", "weight": None, "psnr": float(psnr.mean()),
                     "per_image": psnr.tolist(), "seconds": 0.0})
        echo(f"{task} {level:g} csgm: {rows[-1]['psnr']:.2f} dB")
        for lr in lrs:
            t = time.time()
            w = last.weight.detach().repeat(b, 1, 1, 1).requires_grad_(True)  # [B * cin, C, 4, 4]
            opt = torch.optim.Adam([w], lr=lr)

            def render():
                out = F.conv_transpose2d(h.reshape(1, b * cin, *h.shape[2:]), w, stride=2, padding=1, groups=b)
                return torch.tanh(out.view(b, -1, *out.shape[2:]))

            for _ in range(iagan_steps):
                opt.zero_grad()
                op.measurement_loss(render(), y).sum().backward()
                opt.step()
            with torch.no_grad():
                psnr = M.psnr(render(), x)
            rows.append({"task": task, "level": level, "method": "csgm+iagan", "weight": lr,
                         "psnr": float(psnr.mean()), "per_image": psnr.tolist(), "seconds": time.time() - t})
            echo(f"{task} {level:g} csgm+iagan lr={lr:g}: {rows[-1]['psnr']:.2f} dB")
    return rows


def best_table(rows: list[dict]) -> str:
    """Markdown: per spec and method, the best weight and its mean PSNR."""
    best: dict[tuple, dict] = {}
    for r in rows:
        k = (r["task"], r["level"], r["method"])
        if k not in best or r["psnr"] > best[k]["psnr"]:
            best[k] = r
    lines = ["| task | level | method | best weight | mean PSNR (dB) |", "|---|---|---|---|---|"]
    for (task, level, method), r in best.items():
        w = "-" if r["weight"] is None else f"{r['weight']:g}"
        lines.append(f"| {task} | {level:.3g} | {method} | {w} | {r['psnr']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--deviation", action="store_true", help="measure CSGM -> deviation instead of the classical sweep")
    p.add_argument("--iagan", action="store_true", help="measure CSGM -> last-layer fine-tuning (DCGAN only)")
    p.add_argument("--steps", type=int, default=100, help="CSGM steps (with --deviation)")
    p.add_argument("--restarts", type=int, default=2, help="CSGM restarts (with --deviation)")
    p.add_argument("--generator", default="digiface-dcgan")
    p.add_argument("--tasks", default=None, help="comma-separated tasks to keep (inpaint, box, superres, denoise, cs)")
    p.add_argument("--weights", default="0.003,0.01,0.03,0.1,0.3", help="deviation weights (with --deviation)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    from ..generators import load_generator

    torch.set_num_threads(a.threads)
    G = load_generator(a.generator)
    x, ids = tuning_images(G.image_shape[-1], G)
    specs = [s for s in SPECS if a.tasks is None or s[0] in a.tasks.split(",")]
    weights = tuple(float(w) for w in a.weights.split(","))
    if a.iagan:
        rows = iagan_sweep(G, x, specs, steps=a.steps, restarts=a.restarts)
    elif a.deviation:
        rows = deviation_sweep(G, x, specs, weights=weights, steps=a.steps, restarts=a.restarts)
    else:
        rows = sweep(x, specs)
    print(best_table(rows))
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps({"argv": argv, "images": ids, "rows": rows}, indent=1) + "\n")
    return rows


if __name__ == "__main__":
    main()
