"""The paper's targets checked against finished ``ilo bench`` runs, and one page for all of them.

``ilo bench targets --root DIR`` reads the ``summary.json`` (and ``config.json``) of the runs found
under ``DIR`` in their default folder names (``curves-inpaint``, ``curves-denoise``,
``curves-superres``, ``curves-cs``, ``sna``, ``speed-<task>``) and writes ``DIR/targets.md``,
``DIR/targets.json`` and ``DIR/index.html``: one table with every target of the paper per
evaluation set (value, threshold, verdict) and links to each run's own page. It solves nothing.

Targets (ratios of mean true MSE, other method over ILO; > 1 means ILO is better):

============  ==========================================================  =========
task          value                                                       target
============  ==========================================================  =========
inpaint       min over levels 5%..100% of CSGM (MSE) / ILO                >= 2
denoise       best CSGM variant / ILO at sigma = 25                       >= 1.8
superres      PULSE / ILO at the run's largest factor                     >= 1.65
cs            CSGM / ILO at m/n = 5%                                      >= 2
speed         ILO's time to CSGM's final true MSE / CSGM's time           <= 0.5
============  ==========================================================  =========

A verdict is ``met``, ``missed``, ``incomplete`` (a level or method the target needs has no
result in that set yet) or ``not run`` (no such run under the root). The SNA run is reported
beside the targets (PSNR gain of SNA for CSGM and ILO; the paper: +1.49 and +4.58 dB), and so is
every (task, set, level) where the best classical method beats ILO in mean PSNR.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from . import report as R

CSGM_VARIANTS = ("csgm", "csgm-perceptual", "csgm-mse-perceptual")


@dataclass(frozen=True)
class Target:
    """One of the paper's targets, as data: where its run lives (``folder``; a glob for speed
    runs), the methods compared with ILO (``others``; the best of them counts) and the level
    it is read at: ``level``, the run's largest level (``largest``), or the worst ratio over
    the levels from ``worst_from`` up."""

    task: str
    folder: str
    description: str
    threshold: float
    direction: str
    others: tuple[str, ...] = ()
    level: float | None = None
    largest: bool = False
    worst_from: float | None = None

    def levels_of(self, run_levels: list[float]) -> list[float]:
        """The run's levels this target reads (all must have results)."""
        if self.worst_from is not None:
            return [lv for lv in run_levels if lv >= self.worst_from - 1e-9]
        if self.largest:
            return [max(run_levels)] if run_levels else []
        return [self.level] if self.level in run_levels else []


TARGETS = (
    Target("inpaint", "curves-inpaint", "CSGM / ILO, worst level in 5%-100% observed", 2.0, ">=", ("csgm",), worst_from=0.05),
    Target("denoise", "curves-denoise", "best CSGM variant / ILO at σ = 25", 1.8, ">=", CSGM_VARIANTS, level=25.0),
    Target("superres", "curves-superres", "PULSE / ILO at the largest factor", 1.65, ">=", ("pulse",), largest=True),
    Target("cs", "curves-cs", "CSGM / ILO at 5% measurements", 2.0, ">=", ("csgm",), level=0.05),
    Target("speed", "speed-*", "ILO time to CSGM's final true MSE / CSGM time", 0.5, "<="),
)
#: the paper's Table 1 (PSNR dB at sigma = 30): SNA off, on
PAPER_SNA = {"csgm": (19.89, 21.38), "ilo": (28.34, 32.92)}


@dataclass
class Verdict:
    task: str
    set: str
    target: str
    value: float | None
    threshold: float
    direction: str
    verdict: str
    detail: str = ""


def _ratio(summary: list[dict], set_name: str, level: float, others: tuple[str, ...]) -> tuple[float | None, str]:
    """min over ``others`` of their mean true MSE, over ILO's; None and the missing method when absent."""
    ilo = R.mean_of(summary, set=set_name, method="ilo", level=level)
    vals = {m: R.mean_of(summary, set=set_name, method=m, level=level) for m in others}
    vals = {m: v for m, v in vals.items() if v is not None}
    if ilo is None or not vals:
        return None, "ilo" if ilo is None else "/".join(others)
    m = min(vals, key=vals.get)
    return vals[m] / ilo, m


def _judge(value: float | None, threshold: float, direction: str) -> str:
    if value is None:
        return "incomplete"
    ok = value >= threshold if direction == ">=" else value <= threshold
    return "met" if ok else "missed"


def _sets(summary: list[dict]) -> list[str]:
    return list(dict.fromkeys(e["set"] for e in summary))


def curve_verdicts(target: Target, summary: list[dict], levels: list[float], sets: list[str] | None = None) -> list[Verdict]:
    """The verdicts of one curves run (``levels`` and ``sets``: the run's, from its run.json):
    the worst ratio over the levels the target reads."""
    out = []
    need = target.levels_of(levels)
    for s in sets or _sets(summary):
        ratios = {lv: _ratio(summary, s, lv, target.others) for lv in need}
        done = {lv: r for lv, (r, _) in ratios.items() if r is not None}
        value = min(done.values()) if done and len(done) == len(need) else None
        if not need:
            detail = "the target's level is not in this run"
        elif len(need) == 1:
            r, which = ratios[need[0]]
            detail = f"level {need[0]:g}; " + (f"against {which}" if r is not None else f"missing: {which}")
        elif done:
            worst = min(done, key=done.get)
            detail = f"worst at {worst:g} ({len(done)}/{len(need)} levels); " + ", ".join(f"{lv:g}: {r:.2f}" for lv, r in done.items())
        else:
            detail = "no result yet"
        out.append(Verdict(target.task, s, target.description, value, target.threshold, target.direction,
                           _judge(value, target.threshold, target.direction), detail))
    return out


def speed_verdicts(table: list[dict], task: str, description: str, threshold: float) -> list[Verdict]:
    out = []
    for row in table:
        v = row.get("ILO / CSGM time")
        value = float(v) if v not in (None, "–") else None
        detail = f"{task}; CSGM {row.get('CSGM seconds')} s, ILO reached it after {row.get('ILO seconds to reach it')} s"
        verdict = _judge(value, threshold, "<=")
        if value is None:
            verdict, detail = "missed", f"{task}; ILO never reached CSGM's final true MSE"
        out.append(Verdict("speed", row["set"], description, value, threshold, "<=", verdict, detail))
    return out


#: the columns of the classical-wins table
CLASSICAL_HEAD = ["task", "set", "level", "best classical", "its PSNR dB", "ILO PSNR dB", "ILO − classical dB"]


def classical_wins(root: Path, found: list[str]) -> list[list]:
    """Rows (:data:`CLASSICAL_HEAD`) where a classical method beats ILO in a curves run's ratio
    table (ILO's margin below 0 dB), and in the SNA table (ILO+SNA's)."""
    rows = []
    for name in found:
        data = R.read_json(root / name / "summary.json") or {}
        for r in data.get("ratios", []):
            margin = r.get("ILO − classical dB")
            if margin is not None and float(margin) < 0:
                rows.append([data.get("task", name), r["set"], r["level"], r["best classical"], r["its PSNR dB"], r["ILO PSNR dB"],
                             margin])
        for r in data.get("table", []):
            margin = r.get("ILO+SNA − classical dB")
            if margin is not None and float(margin) < 0:
                ilo = r["ILO + SNA PSNR"].split(" ")[0] if r.get("ILO + SNA PSNR") else None
                rows.append(["sna (ILO+SNA)", r["set"], f"σ {data.get('sigma', 30):g}", r["best classical"], r["its PSNR dB"], ilo,
                             margin])
    return rows


def collect(root: str | Path) -> tuple[list[Verdict], list[dict], list[str]]:
    """Verdicts for every target, SNA rows and the run folders found under ``root``."""
    root = Path(root)
    verdicts, sna_rows, found = [], [], []
    for t in TARGETS:
        if not t.others:  # a speed target: one run per task, folders matching the glob
            dirs = sorted(p for p in root.glob(t.folder) if (p / "summary.json").is_file())
            if not dirs:
                verdicts.append(Verdict(t.task, "–", t.description, None, t.threshold, t.direction, "not run"))
            for d in dirs:
                data = R.read_json(d / "summary.json") or {}
                found.append(d.name)
                verdicts += speed_verdicts(data.get("table", []), data.get("task", d.name[6:]), t.description, t.threshold)
            continue
        d = root / t.folder
        data = R.read_json(d / "summary.json")
        if data is None:
            verdicts.append(Verdict(t.task, "–", t.description, None, t.threshold, t.direction, "not run"))
            continue
        found.append(t.folder)
        run = R.read_json(d / "config.json") or {}
        levels = [float(v) for v in run.get("levels", [])] or sorted({float(e["level"]) for e in data["summary"]})
        sets = list(run.get("sets", {})) or None
        verdicts += curve_verdicts(t, data["summary"], levels, sets)
    sna = R.read_json(root / "sna" / "summary.json")
    if sna is not None:
        found.append("sna")
        for e in sna.get("table", []):
            sna_rows.append({k: e.get(k) for k in ("set", "n", "CSGM (MSE) PSNR", "CSGM + SNA PSNR", "ILO PSNR", "ILO + SNA PSNR",
                                                   "CSGM gain dB", "ILO gain dB", "best classical", "its PSNR dB",
                                                   "ILO+SNA − classical dB")})
    return verdicts, sna_rows, found


HEAD = ["task", "set", "target", "value", "threshold", "verdict", "detail"]


def _rows(verdicts: list[Verdict]) -> list[list]:
    return [[v.task, v.set, v.target, R.dec(v.value), f"{v.direction} {v.threshold:g}", v.verdict, v.detail] for v in verdicts]


def write_targets(root: str | Path) -> Path:
    """Write ``targets.md``, ``targets.json`` and ``index.html`` under ``root``; returns the page."""
    root = Path(root)
    verdicts, sna_rows, found = collect(root)
    rows = _rows(verdicts)
    sna_head = list(sna_rows[0]) if sna_rows else []
    sna_md = (f"\n\n## SNA at σ = 30 (PSNR dB; paper: CSGM {PAPER_SNA['csgm'][0]} → {PAPER_SNA['csgm'][1]}, "
              f"ILO {PAPER_SNA['ilo'][0]} → {PAPER_SNA['ilo'][1]})\n\n"
              + R.markdown_table(sna_head, [list(r.values()) for r in sna_rows])) if sna_rows else ""
    wins = classical_wins(root, found)
    wins_note = ("A classical method beats ILO (mean PSNR) where listed; a generative method that loses to it says so here."
                 if wins else "No classical method beats ILO (mean PSNR) in these runs (runs without classical results "
                              "have no best-classical column).")
    wins_md = f"\n\n## Where a classical method beats ILO\n\n{R.markdown_table(CLASSICAL_HEAD, wins)}\n\n{wins_note}"
    R.write_text(root / "targets.md", "## The paper's targets (ratios of mean true MSE, other method / ILO)\n\n"
                 + R.markdown_table(HEAD, rows) + sna_md + wins_md + "\n")
    R.write_text(root / "targets.json", json.dumps({"targets": [asdict(v) for v in verdicts], "sna": sna_rows,
                                                    "classical_wins": [dict(zip(CLASSICAL_HEAD, r)) for r in wins],
                                                    "runs": found}, indent=1) + "\n")
    settings = []
    for name in found:
        run = R.read_json(root / name / "config.json") or {}
        st = run.get("settings", {})
        settings.append([name, st.get("steps"), st.get("restarts"), run.get("batch"), run.get("device"),
                         ", ".join(f"{k} {v['n']}" for k, v in run.get("sets", {}).items())])
    links = "".join(f"<li><a href='{n}/index.html'>{n}</a></li>" for n in found if (root / n / "index.html").is_file())
    sections = [("Targets", R.html_table(HEAD, rows))]
    if sna_rows:
        sections.append(("SNA at σ = 30 (PSNR dB)", R.html_table(sna_head, [list(r.values()) for r in sna_rows])
                         + f"<p class='note'>Paper: CSGM {PAPER_SNA['csgm'][0]} → {PAPER_SNA['csgm'][1]} dB, "
                           f"ILO {PAPER_SNA['ilo'][0]} → {PAPER_SNA['ilo'][1]} dB.</p>"))
    sections.append(("Where a classical method beats ILO", R.html_table(CLASSICAL_HEAD, wins) + f"<p class='note'>{wins_note}</p>"))
    sections += [("Runs", f"<ul>{links}</ul>" + R.html_table(["run", "steps", "restarts", "batch", "device", "sets (n)"], settings)),
                 ("Files", R.files_html(["targets.md", "targets.json"]))]
    intro = ("<p>The paper's targets checked against the runs in this folder (generated faces are in the generator's range; "
             "the paper's claims are about real faces: the <b>lfw</b> and <b>photos</b> sets). Ratios &gt; 1 mean ILO is better.</p>")
    return R.write_index(root, "ilo bench: the paper's targets", sections, intro=intro)
