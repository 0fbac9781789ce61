"""Contact sheet of the real-face set: ``python -m ilo.data.contact_sheet --out docs/realfaces.png``.

One labelled cell per registered face (its crop, resized), tuning faces first, then evaluation
faces; saved as a 256-colour PNG so the committed picture stays small.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

from ..images import grid
from .realfaces import SPLITS, faces, load_face


def contact_sheet(size: int = 64, cols: int = 11) -> Image.Image:
    """All faces, ``cols`` to a row, each ``size`` px, captioned with its registry name."""
    rows, labels, captions = [], [], []
    for split in SPLITS:
        fs = faces(split)
        for i in range(0, len(fs), cols):
            chunk = fs[i:i + cols]
            rows.append([load_face(f, size) for f in chunk])
            captions.append([f.name[:12] for f in chunk])
            labels.append(f"{split} ({len(fs)})" if i == 0 else "")
    return grid(rows, row_labels=labels, cell=size, captions=captions)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ilo.data.contact_sheet", description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="PNG file to write")
    ap.add_argument("--size", type=int, default=64, help="pixels per face")
    args = ap.parse_args(argv)
    contact_sheet(args.size).quantize(256).save(args.out, optimize=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
