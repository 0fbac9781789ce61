"""Outputs of ``ilo bench``: measurement tables (CSV, JSON), summaries, plots, grids, ``index.html``.

Every file is written to a temporary name and renamed into place. Plots use matplotlib's Agg
backend (no display needed); ``index.html`` is static, links only to files beside it by
relative paths and loads nothing from the network, so the output folder can be opened
offline, zipped or committed as is.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
from pathlib import Path
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from .harness import COLUMNS, METRICS

#: display names and fixed colours, so that a method looks the same in every plot (classical
#: methods in greys and olives)
LABELS = {"csgm": "CSGM (MSE)", "csgm-perceptual": "CSGM (perceptual)", "csgm-mse-perceptual": "CSGM (MSE+perceptual)",
          "pulse": "PULSE", "ilo": "ILO", "bm3d": "BM3D", "csgm+sna": "CSGM + SNA", "ilo+sna": "ILO + SNA",
          "biharmonic": "biharmonic", "harmonic": "harmonic", "tv-inpaint": "TV inpainting", "bicubic": "bicubic", "tv-superres": "TV super-res.",
          "bm3d-free": "BM3D (ours)", "nlmeans": "non-local means", "tv-denoise": "TV denoising", "adjoint": "scaled adjoint", "tv-cs": "TV least squares",
          "wavelet-cs": "wavelet least squares"}
COLORS = {"csgm": "#1f77b4", "csgm-perceptual": "#17becf", "csgm-mse-perceptual": "#9467bd", "pulse": "#ff7f0e",
          "ilo": "#d62728", "bm3d": "#7f7f7f", "csgm+sna": "#2ca02c", "ilo+sna": "#8c564b",
          "biharmonic": "#7f7f7f", "harmonic": "#5a5a2a", "tv-inpaint": "#bcbd22", "bicubic": "#7f7f7f", "tv-superres": "#bcbd22",
          "bm3d-free": "#4d4d4d", "nlmeans": "#bcbd22", "tv-denoise": "#5a5a2a", "adjoint": "#7f7f7f", "tv-cs": "#bcbd22", "wavelet-cs": "#5a5a2a"}


#: short names for the columns of example grids
SHORT = {"csgm": "CSGM", "csgm-perceptual": "CSGM perc.", "csgm-mse-perceptual": "CSGM mse+p", "pulse": "PULSE",
         "ilo": "ILO", "bm3d": "BM3D", "csgm+sna": "CSGM+SNA", "ilo+sna": "ILO+SNA", "biharmonic": "biharm.", "harmonic": "harmonic",
         "tv-inpaint": "TV", "bicubic": "bicubic", "tv-superres": "TV", "bm3d-free": "BM3D-free", "nlmeans": "NL-means", "tv-denoise": "TV",
         "adjoint": "adjoint", "tv-cs": "TV", "wavelet-cs": "wavelet"}


def label(method: str) -> str:
    return LABELS.get(method, method)


def short(method: str) -> str:
    return SHORT.get(method, method)


def _tmp(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}{path.suffix}")


def read_json(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    tmp.write_text(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------------
# tables


def write_measurements(out: Path, rows: list[dict], stem: str = "measurements") -> None:
    """``<stem>.csv`` (the columns of :data:`~ilo.bench.harness.COLUMNS`) and ``<stem>.json``."""
    path = out / f"{stem}.csv"
    tmp = _tmp(path)
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(COLUMNS), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    os.replace(tmp, path)
    write_text(out / f"{stem}.json", json.dumps({"columns": list(COLUMNS), "rows": rows}, indent=1) + "\n")


def _finite(values: Iterable) -> np.ndarray:
    a = np.array([v for v in values if v is not None], dtype=float)
    return a[np.isfinite(a)]


def summarize(rows: list[dict], keys: Sequence[str] = ("set", "method", "level")) -> list[dict]:
    """Per group of ``keys``: ``n`` and, per metric, ``mean``, ``std``, ``q25``, ``median``,
    ``q75`` over images, plus mean ``seconds`` per image (the batch's time / batch size)."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r.get(k) for k in keys), []).append(r)
    out = []
    for k, rs in groups.items():
        s = dict(zip(keys, k))
        s["n"] = len(rs)
        for m in METRICS:
            a = _finite(r.get(m) for r in rs)
            if len(a):
                q25, med, q75 = np.percentile(a, [25, 50, 75])
                s[m] = {"mean": float(a.mean()), "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
                        "q25": float(q25), "median": float(med), "q75": float(q75)}
        s["seconds"] = float(np.mean([r["seconds"] for r in rs]))
        s["seconds_per_image"] = float(np.mean([r["seconds"] / max(r.get("batch") or 1, 1) for r in rs]))
        s["steps"] = int(max(r["steps"] for r in rs))
        out.append(s)
    return out


def stat_of(summary: list[dict], metric: str = "true_mse", stat: str = "mean", **where) -> float | None:
    """``stat`` (mean, std, q25, median, q75) of ``metric`` in the summary entry matching ``where``."""
    for s in summary:
        if all(s.get(k) == v for k, v in where.items()) and metric in s:
            return s[metric][stat]
    return None


def mean_of(summary: list[dict], metric: str = "true_mse", **where) -> float | None:
    """The mean of ``metric`` in the summary entry matching ``where`` (None if absent)."""
    return stat_of(summary, metric, "mean", **where)


def fmt(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}" if abs(v) < 1e-2 or abs(v) >= 1e4 else f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return str(v)


def wins_text(wins: int, rows: int, name: str = "ILO") -> str:
    """The sentence under a table with a best-classical column.

    >>> wins_text(0, 4), wins_text(1, 4)
    ('No classical method beats ILO (mean PSNR) in these 4 rows.', 'A classical method beats ILO (mean PSNR) in 1 of 4 rows.')
    """
    if wins == 0:
        return f"No classical method beats {name} (mean PSNR) in these {rows} rows."
    return f"A classical method beats {name} (mean PSNR) in {wins} of {rows} rows."


def dec(v, digits: int = 2) -> str | None:
    """``v`` with a fixed number of decimals (for dB, ratios, seconds); None stays None."""
    return None if v is None else f"{v:.{digits}f}"


def markdown_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def html_table(headers: Sequence[str], rows: Iterable[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------------------------------------
# plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    os.replace(tmp, path)
    _pyplot().close(fig)


def plot_curves(summary: list[dict], set_name: str, methods: Sequence[str], levels: Sequence[float], path: Path, *,
                xlabel: str, title: str, metrics: Sequence[str] = ("true_mse", "perceptual"), log_x: bool = True,
                x_of=lambda level: level) -> None:
    """One panel per metric: the mean over images against the level (one line per method) and
    a band from the 25th to the 75th percentile."""
    plt = _pyplot()
    metrics = [m for m in metrics if any(m in s for s in summary if s["set"] == set_name)]
    fig, axes = plt.subplots(1, len(metrics), figsize=(5.2 * len(metrics), 3.8), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for method in methods:
            pts = sorted((x_of(s["level"]), s[metric]) for s in summary
                         if s["set"] == set_name and s["method"] == method and metric in s)
            if not pts:
                continue
            x = [p[0] for p in pts]
            ax.plot(x, [p[1]["mean"] for p in pts], "o-", color=COLORS.get(method), label=label(method), lw=1.6, ms=4)
            ax.fill_between(x, [p[1]["q25"] for p in pts], [p[1]["q75"] for p in pts], color=COLORS.get(method), alpha=0.12)
        if log_x:
            ax.set_xscale("log")
        xs = sorted({x_of(v) for v in levels})
        ax.set_xticks(xs)
        ax.set_xticklabels([fmt(float(v), 3) for v in xs])
        ax.minorticks_off()
        if metric in ("true_mse", "measurement_mse"):
            ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric.replace("_", " ") + " (mean; band: 25-75%)")
        ax.grid(True, which="major", alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    save_figure(fig, path)


def plot_bars(summary: list[dict], sets: Sequence[str], methods: Sequence[str], path: Path, *, metric: str = "psnr",
              title: str = "") -> None:
    """Grouped bars: mean ``metric`` per set (groups) and method (bars), whiskers = std over images."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(sets) * max(len(methods), 1) / 3, 3.8))
    width = 0.8 / max(len(methods), 1)
    for j, method in enumerate(methods):
        xs, ys, es = [], [], []
        for i, s in enumerate(sets):
            e = [v for v in summary if v["set"] == s and v["method"] == method and metric in v]
            if e:
                xs.append(i + (j - (len(methods) - 1) / 2) * width)
                ys.append(e[0][metric]["mean"])
                es.append(e[0][metric]["std"])
        ax.bar(xs, ys, width, yerr=es, capsize=3, color=COLORS.get(method), label=label(method))
        for x, y in zip(xs, ys):
            ax.text(x, y / 2, f"{y:.1f}", ha="center", va="center", rotation=90, fontsize=7, color="white")
    ax.set_xticks(range(len(sets)))
    ax.set_xticklabels(sets)
    ax.set_ylabel(f"{metric} (mean ± std over images)")
    ax.legend(fontsize=8)
    ax.grid(True, axis="y", alpha=0.3)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


def plot_speed(curves: dict[str, list[tuple[float, float]]], path: Path, *, ylabel: str, title: str,
               markers: dict[str, str] | None = None, labels: dict[str, str] | None = None,
               reference: float | None = None) -> None:
    """Metric against elapsed seconds: one line per method (``curves[method] = [(s, value), ...]``)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.4, 3.8))
    for method, pts in curves.items():
        if pts:
            style = (markers or {}).get(method, "o-")
            name = (labels or {}).get(method, label(method))
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, color=COLORS.get(method), label=name, ms=5)
    if reference is not None:
        ax.axhline(reference, color=COLORS["csgm"], ls=":", lw=1, label="CSGM final")
    ax.set_xlabel("elapsed seconds (batch)")
    ax.set_ylabel(ylabel)
    if "mse" in ylabel:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title, fontsize=10)
    save_figure(fig, path)


# ---------------------------------------------------------------------------------------------
# example grids


def example_grid(pictures: Mapping[tuple[str, str, str], Path], set_name: str, image_ids: Sequence[str],
                 columns: Sequence[tuple[str, str]], path: Path, *,
                 rows_per_image: Sequence[tuple[str, dict[str, str]]] = (("", {}),), cell: int = 96) -> bool:
    """A grid of stored example images (``pictures[(set, image, name)]``: a PNG file).

    ``columns``: ``(header, name)`` pairs, ``name`` a format string of the example file stem
    filled with a row's variables (e.g. ``"{method}_{level}"``). ``rows_per_image``: for every
    image, the rows to draw, each ``(row suffix, variables)`` (e.g. one row per level).
    Missing examples are left blank. Returns False when there is nothing to draw and no earlier
    grid at ``path`` (a run whose example files were deleted to save space keeps its grids).
    """
    import torch
    from PIL import Image

    from ..images import grid, pil_to_tensor

    blank = None
    rows, labels = [], []
    for image_id in image_ids:
        for suffix, var in rows_per_image:
            row = []
            for _, name in columns:
                p = pictures.get((set_name, image_id, name.format(**var)))
                if p is not None and p.is_file():
                    t = pil_to_tensor(Image.open(p))[0]
                    blank = torch.ones_like(t) if blank is None else blank
                    row.append(t)
                else:
                    row.append(None)
            rows.append(row)
            labels.append(f"{image_id[:14]} {suffix}".strip())
    if blank is None:
        return path.is_file()
    rows = [[blank if t is None else t for t in r] for r in rows]
    im = grid(rows, col_labels=[c[0] for c in columns], row_labels=labels, cell=cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp(path)
    im.save(tmp, format="PNG")
    os.replace(tmp, path)
    return True


# ---------------------------------------------------------------------------------------------
# index.html

_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;padding:0 1em;color:#222}
table{border-collapse:collapse;margin:.6em 0;font-size:.85em}td,th{border:1px solid #ccc;padding:2px 7px;text-align:right}
th{background:#f2f2f2}td:first-child,th:first-child{text-align:left}img{max-width:100%;border:1px solid #eee}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.8em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em}
.note{color:#555;font-size:.9em}"""


def write_index(out: Path, title: str, sections: Sequence[tuple[str, str]], *, intro: str = "") -> Path:
    """``index.html``: a title, an introduction (HTML) and ``(heading, html)`` sections."""
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>", intro]
    for heading, body in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>\n{body}")
    parts.append("</body></html>\n")
    path = out / "index.html"
    write_text(path, "\n".join(parts))
    return path


def img_tag(rel: str, caption: str = "") -> str:
    cap = f"<p class='note'>{html.escape(caption)}</p>" if caption else ""
    return f"<figure><a href='{html.escape(rel)}'><img src='{html.escape(rel)}' alt='{html.escape(caption or rel)}'></a>{cap}</figure>"


def files_html(names: Sequence[str]) -> str:
    return "<p>" + " · ".join(f"<a href='{html.escape(n)}'>{html.escape(n)}</a>" for n in names) + "</p>"


def settings_html(run: dict) -> str:
    return f"<pre>{html.escape(json.dumps(run, indent=2, default=str))}</pre>"
