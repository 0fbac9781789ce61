"""Reading, writing, cropping and tiling images; the bundled real test photographs.

Tensors are ``[B, C, H, W]`` float in ``[-1, 1]``. Files are read as a careful user expects
(:func:`read_image`): EXIF orientation applied, 16-bit images scaled to 8 bits (not clipped),
palette images read by colour (not by index), images with transparent pixels refused unless the
caller asks to keep the alpha channel. Saving writes 8-bit PNG and clips to the valid range
(never min-max stretches, which would misrepresent the reconstruction).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, ImageOps


class ImageError(ValueError):
    """An input image is missing, unreadable or of the wrong shape (message says which)."""


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB image -> ``[1, 3, H, W]`` in ``[-1, 1]``."""
    a = np.asarray(im.convert("RGB"), dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(a).permute(2, 0, 1)[None].contiguous()


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """``[C, H, W]`` or ``[1, C, H, W]`` in ``[-1, 1]`` -> 8-bit RGB (or L) PIL image, clipped."""
    if x.ndim == 4:
        if x.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {x.shape[0]}")
        x = x[0]
    a = ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(a[..., 0] if a.shape[2] == 1 else a)


def read_image(path: str | os.PathLike, *, alpha: str = "refuse") -> Image.Image:
    """Open an image file fully as 8-bit ``L``, ``RGB`` (or ``RGBA``), as it is meant to look.

    * EXIF orientation is applied (a phone photo is upright, its size the displayed one);
    * 16-bit (and 32-bit integer) grey images are scaled by 255/65535, not clipped at 255;
    * palette images are converted by colour (the palette's entries, not the indices);
    * alpha: with ``alpha="refuse"`` (default) an image with any transparent pixel raises
      :class:`ImageError` and a fully opaque one is read without its alpha channel; with
      ``alpha="keep"`` images with transparency come back as ``RGBA``.

    Raises :class:`ImageError` (a ValueError) naming the file on any failure.
    """
    if alpha not in ("refuse", "keep"):
        raise ValueError(f"alpha must be 'refuse' or 'keep', got {alpha!r}")
    p = Path(path)
    if not p.is_file():
        raise ImageError(f"image not found: {p}")
    try:
        im: Image.Image = Image.open(p)
        im.load()
        im = ImageOps.exif_transpose(im)
    except Exception as e:
        raise ImageError(f"cannot read image {p}: {e}") from None
    im = _to_8bit(im, p)
    if im.mode == "RGBA":
        if im.getchannel("A").getextrema()[0] == 255:
            im = im.convert("RGB")
        elif alpha == "refuse":
            raise ImageError(f"image {p} has transparent pixels; flatten it onto a background first")
    return im


def _to_8bit(im: Image.Image, p: Path) -> Image.Image:
    """``im`` as 8-bit ``L``, ``RGB`` or ``RGBA`` (the latter only when it has an alpha channel)."""
    mode = im.mode
    if mode in ("L", "RGB", "RGBA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if mode in ("LA", "La", "PA", "RGBa"):
        return im.convert("RGBA")
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N, I: 16-bit grey
        a = np.asarray(im).astype(np.float64)
        return Image.fromarray(np.clip(np.round(a * (255.0 / 65535.0)), 0, 255).astype(np.uint8), "L")
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    raise ImageError(f"image {p} has pixel mode {mode}, which is not supported (use 8- or 16-bit grey or RGB)")


def fit_to_size(im: Image.Image, size: int, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """Crop to ``box`` (x0, y0, x1, y1) or the central square, then resize to ``size`` x ``size``
    with an antialiased Lanczos filter."""
    im = im.convert("RGB")
    if box is None:
        w, h = im.size
        s = min(w, h)
        box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return im.crop(box).resize((size, size), Image.LANCZOS)


def load_image(path: str | os.PathLike, size: int | None = None) -> torch.Tensor:
    """Read an image as ``[1, 3, H, W]`` in ``[-1, 1]``; with ``size``, centre-cropped and resized."""
    im = read_image(path)
    if size is not None:
        im = fit_to_size(im, size)
    return pil_to_tensor(im)


def save_image(x: torch.Tensor, path: str | os.PathLike) -> None:
    tensor_to_pil(x).save(path)


# ---------------------------------------------------------------------------------------------
# real photographs that install offline (outside the generator's range)
#: fixed face boxes (x0, y0, x1, y1) on the original photographs, chosen once by eye
PHOTO_BOXES = {
    "astronaut": (160, 60, 290, 190),  # skimage.data.astronaut(), 512x512
    "grace_hopper": (150, 110, 380, 340),  # matplotlib sample data grace_hopper.jpg, 600x512
}


def photo(name: str, size: int = 64) -> torch.Tensor:
    """A real face photograph cropped with its fixed box and resized: ``[1, 3, size, size]``.

    Needs scikit-image (astronaut) or matplotlib (grace_hopper): the ``data`` extra.
    """
    if name == "astronaut":
        try:
            from skimage import data
        except ImportError:
            raise ImageError("the astronaut photo needs scikit-image: pip install 'ilo-inverse[data]'") from None
        im = Image.fromarray(data.astronaut())
    elif name == "grace_hopper":
        try:
            from matplotlib import cbook
        except ImportError:
            raise ImageError("the grace_hopper photo needs matplotlib: pip install 'ilo-inverse[data]'") from None
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            im = Image.open(f)
            im.load()
    else:
        raise ImageError(f"unknown photo {name!r}; known: {', '.join(PHOTO_BOXES)}")
    return pil_to_tensor(fit_to_size(im, size, PHOTO_BOXES[name]))


# ---------------------------------------------------------------------------------------------
def grid(
    rows: list[list[torch.Tensor]],
    col_labels: list[str] | None = None,
    row_labels: list[str] | None = None,
    cell: int = 128,
    captions: list[list[str]] | None = None,
) -> Image.Image:
    """Tile images (each ``[C, h, w]`` or ``[1, C, h, w]`` in ``[-1, 1]``) into a labelled grid.

    Every image is scaled to ``cell`` pixels with nearest-neighbour (pixels stay visible).
    ``captions[r][c]`` is printed under cell ``(r, c)``.
    """
    font = ImageFont.load_default()
    top = 16 if col_labels else 0
    left = 90 if row_labels else 0
    cap = 14 if captions else 0
    n_cols = max(len(r) for r in rows)
    W = left + n_cols * (cell + 4)
    H = top + len(rows) * (cell + cap + 4)
    canvas = Image.new("RGB", (W, H), "white")
    draw = ImageDraw.Draw(canvas)
    for c, lab in enumerate(col_labels or []):
        draw.text((left + c * (cell + 4) + 2, 2), lab, fill="black", font=font)
    for r, row in enumerate(rows):
        y0 = top + r * (cell + cap + 4)
        if row_labels:
            draw.text((2, y0 + cell // 2 - 6), row_labels[r], fill="black", font=font)
        for c, x in enumerate(row):
            im = tensor_to_pil(x).convert("RGB").resize((cell, cell), Image.NEAREST)
            canvas.paste(im, (left + c * (cell + 4), y0))
            if captions and captions[r][c]:
                draw.text((left + c * (cell + 4) + 2, y0 + cell + 1), captions[r][c], fill="black", font=font)
    return canvas
