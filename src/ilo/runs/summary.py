"""``summary.csv`` (one row per image and job) and ``index.html`` (per job: the mean metrics and a
table of thumbnails and metrics per image) of a run's store."""

from __future__ import annotations

import csv
import html
import io
import json
from collections import defaultdict
from pathlib import Path

from .store import RunStore, atomic_write

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp")


def _columns(records: list[dict], field: str) -> list[str]:
    """Keys of ``record[field]`` over all records, in order of first appearance."""
    return list(dict.fromkeys(k for r in records for k in r.get(field, {})))


def _mean(values: list) -> float | None:
    xs = [v for v in values if v is not None]
    return sum(xs) / len(xs) if xs else None


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_csv(records: list[dict], jobs: dict[str, dict]) -> str:
    """CSV text: ``job, label, method, item, <metrics>..., <files>..., batch_size, seconds_per_image``."""
    metrics, files = _columns(records, "metrics"), _columns(records, "files")
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["job", "label", "method", "item", *metrics, *files, "batch_size", "seconds_per_image"])
    for r in records:
        spec, b = jobs.get(r["job"], {}), r.get("batch", {})
        per = b["seconds"] / b["size"] if b.get("size") else None
        w.writerow([r["job"][:12], spec.get("label", ""), spec.get("method", ""), r["item"],
                    *(_fmt(r["metrics"].get(m)) for m in metrics), *(r["files"].get(f, "") for f in files),
                    b.get("size", ""), _fmt(per)])
    return buf.getvalue()


def summary_html(records: list[dict], jobs: dict[str, dict], title: str, settings: dict) -> str:
    """A self-contained page; images are referenced by their paths relative to the output folder."""
    e = html.escape
    by_job: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_job[r["job"]].append(r)
    parts = [f"<!doctype html><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:sans-serif;margin:1em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
             "img{width:96px;height:96px;image-rendering:pixelated;display:block}code{font-size:85%}</style>",
             f"<h1>{e(title)}</h1>", f"<p>{len(records)} images in {len(by_job)} jobs; settings: "
             f"<code>{e(json.dumps(settings, sort_keys=True))}</code></p>"]
    for digest, recs in by_job.items():
        spec = jobs.get(digest, {})
        metrics = _columns(recs, "metrics")
        images = [f for f in _columns(recs, "files") if f.lower().endswith(IMAGE_SUFFIXES)]
        spec_json = json.dumps({k: spec.get(k) for k in ("problem", "method", "config")}, sort_keys=True)
        means = ", ".join(f"{m} {_fmt(_mean([r['metrics'].get(m) for r in recs]))}" for m in metrics)
        parts += [f"<h2>{e(spec.get('label', digest[:12]))}</h2>",
                  f"<p><code>{e(spec_json)}</code> (job {digest[:12]})</p>",
                  f"<p>mean over {len(recs)} images: {e(means)}</p>",
                  "<table><tr><th>item</th>" + "".join(f"<th>{e(f)}</th>" for f in images)
                  + "".join(f"<th>{e(m)}</th>" for m in metrics) + "</tr>"]
        for r in recs:
            cells = "".join(f"<td><a href='{e(r['files'][f])}'><img src='{e(r['files'][f])}' alt='{e(f)}'></a></td>"
                            if f in r["files"] else "<td></td>" for f in images)
            cells += "".join(f"<td>{_fmt(r['metrics'].get(m))}</td>" for m in metrics)
            parts.append(f"<tr><th>{e(r['item'])}</th>{cells}</tr>")
        parts.append("</table>")
    return "\n".join(parts) + "\n"


def write_summary(store: RunStore) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``index.html`` of ``store`` (atomically); returns their paths."""

    records = store.records()
    csv_path, html_path = store.out / "summary.csv", store.out / "index.html"
    atomic_write(csv_path, summary_csv(records, store.jobs).encode(), store.tmp)
    page = summary_html(records, store.jobs, f"Run {store.out.resolve().name}", store.settings)
    atomic_write(html_path, page.encode(), store.tmp)
    return csv_path, html_path
