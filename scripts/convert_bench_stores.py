"""One-off conversion (run once, on 2026-11-30) of the committed ``ilo bench`` stores under
docs/bench/ from the old harness's format (``results.jsonl``: one line per cell of several
images with its measurement rows; ``run.json``: settings and run details) to the run engine's
(:mod:`ilo.runs`: one record per (set, method, level) job and image; ``config.json``: the run
details). The library keeps no reader of the old format; this script is kept as the record of
how the committed stores were made.

Where a store holds two cells of the same images (set, method, level and range; generated
faces solved in two sessions whose pixels differed in the last bits, so their cells' keys did),
the later cell is kept, as the old report did (its ``--report-only`` matched the last one).
The converted records keep every measurement row (``info["rows"]``), the solver config of their
cell (``info["solver"]``) and the cell's size and seconds (``batch``). The settings keep the old
``store_version`` (2): those results were drawn with the random streams of that version, so
resuming such a folder with today's code is refused rather than mixed; ``--report-only``
re-renders them.

    python scripts/convert_bench_stores.py docs/bench/curves-inpaint docs/bench/sna ...
"""

from __future__ import annotations

import json
import shutil
import sys
from collections import defaultdict
from pathlib import Path

from ilo.bench.harness import METRICS, EvalSet, bench_job, generated_set, lfw_set, photo_set
from ilo.runs import RunStore


def old_sets(run: dict, seed: int) -> dict[str, EvalSet]:
    """The evaluation sets of an old run, rebuilt as today's (their item ids must match)."""
    out = {}
    for name, s in run["sets"].items():
        if name == "generated":
            es = generated_set([int(i.removeprefix("seed")) for i in s["images"]], seed=seed)
        elif name == "lfw":
            es = lfw_set(s["n"], seed=seed)
        elif name == "photos":
            es = photo_set(seed=seed)
        else:
            raise SystemExit(f"set {name!r}: its files are not in the repository; cannot convert")
        if list(es.ids) != s["images"]:
            raise SystemExit(f"set {name}: ids differ from the stored ones")
        out[name] = es
    return out


def convert(d: Path) -> None:
    run = json.loads((d / "run.json").read_text())
    old = run["settings"]
    cells = [json.loads(line) for line in (d / "results.jsonl").read_text().splitlines() if line.strip()]
    latest = {(c["set"], c["method"], c["level"], c["start"], c["stop"]): c for c in cells}  # the later of two wins
    dropped = len(cells) - len(latest)
    cells = list(latest.values())
    settings = {k: old[k] for k in ("store_version", "command", "task", "generator", "steps", "restarts", "seed")}
    sets = old_sets(run, old["seed"])
    new = d.with_name(d.name + ".converting")
    shutil.rmtree(new, ignore_errors=True)
    jobs = {}
    with RunStore(new, settings) as store:
        for cell in cells:
            es = sets[cell["set"]]
            job = jobs.setdefault((cell["set"], cell["method"], cell["level"]),
                                  bench_job(old["task"], cell["level"], cell["method"], es, generator=old["generator"],
                                            steps=old["steps"], restarts=old["restarts"], seed=old["seed"]))
            store.register([job])
            by_image = defaultdict(list)
            for row in cell["rows"]:
                by_image[row["image"]].append(row)
            seeds = {it.id: it.data["seed"] for it in es.items}
            results = []
            for image, rows in by_image.items():
                assert all(r["seed"] == seeds[image] for r in rows), (d, cell["key"], image)
                rows.sort(key=lambda r: (r["method"] == "ilo", r.get("point") or 0))  # last: the final (ILO) row
                info = {"rows": rows, "solver": cell["solver_config"]}
                if "reference_steps" in cell:
                    info["reference_steps"] = cell["reference_steps"]
                results.append({"item": image, "metrics": {k: rows[-1][k] for k in METRICS if rows[-1].get(k) is not None},
                                "info": info})
            store.add_batch(job, results, {"size": cell["stop"] - cell["start"], "seconds": cell["cell_seconds"], "cell": cell["key"]})
    config = {"command": old["command"], "settings": settings, "batch": old["batch"], "ray": None, "report_only": False,
              **{k: v for k, v in run.items() if k != "settings"},
              "converted": "from the store of ilo.bench.harness (one line per cell) by scripts/convert_bench_stores.py"}
    (d / "config.json").write_text(json.dumps(config, indent=2, default=str) + "\n")
    for f in ("results.jsonl", "run.json"):
        (new / f).replace(d / f)
    shutil.rmtree(new)
    print(f"{d}: {len(cells)} cells ({dropped} earlier duplicates dropped) -> {len(store.records())} records in {len(jobs)} jobs")


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        convert(Path(arg))
