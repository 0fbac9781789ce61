"""Our BM3D against the ``bm3d`` package and NL-means on the real tuning faces (docs/CLASSICAL.md).

    python -m ilo.bench.bm3d_free --json bm3d-free.json

Denoising at sigma255 = 10, 25, 50 of the real faces of the ``tuning`` split (64 px; the
operators and noise of :func:`ilo.bench.classical_tuning.make_problem`), each method at its
default: mean PSNR and process seconds per image on one thread (the load average is recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from .. import metrics as M
from .classical_tuning import _run, make_problem

METHODS = ("bm3d", "bm3d-free", "nlmeans")
LEVELS = (10.0, 25.0, 50.0)


def compare(x: torch.Tensor, levels=LEVELS, methods=METHODS, echo=print) -> list[dict]:
    """One row per level and method: ``psnr`` (mean), ``per_image``, ``seconds`` per image (process time)."""
    rows = []
    for level in levels:
        op, y = make_problem("denoise", level, x)
        for method in methods:
            t = time.process_time()
            psnr = M.psnr(_run(method, y, op, None), x)
            secs = (time.process_time() - t) / len(x)
            rows.append({"level": level, "method": method, "psnr": float(psnr.mean()), "per_image": psnr.tolist(),
                         "seconds": secs, "load": os.getloadavg()[0]})
            echo(f"sigma {level:g} {method}: {rows[-1]['psnr']:.2f} dB, {secs:.3f} s per image")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    from ..data.realfaces import real_faces

    torch.set_num_threads(1)
    x, names = real_faces("tuning", size=args.size)
    rows = compare(x)
    if args.json is not None:
        args.json.write_text(json.dumps({"faces": names, "size": args.size, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
