"""The cohort report: statistics.json and a self-contained HTML page (figures embedded, no network access).

Sections: summary, failures, group statistics (overview table, then per variable a violin/box plot,
descriptive table, Kruskal-Wallis and corrected pairwise Mann-Whitney tests), context needed,
explanation quality (metric medians, mean deletion/insertion curves), cost per lesion, subjects,
and the settings of the run.
"""

from __future__ import annotations

import datetime
import html
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from LesionXAILib.cohort.bids_output import subject_link_html
from LesionXAILib.cohort.plots import curves_png, group_distribution_png, png_data_uri
from LesionXAILib.cohort.settings import CohortSettings
from LesionXAILib.cohort.statistics import CONTEXT_COLUMN, finite_values, group_statistics
from LesionXAILib.cohort.store import METRICS_FILE, CohortStore
from LesionXAILib.atomic_write import write_json, write_text
from LesionXAILib.vocabulary import NONE_TEXT, STATUSES, format_number

if TYPE_CHECKING:
    from LesionXAILib.cohort.runner import CohortResult

STATISTICS_FILE = "statistics.json"
REPORT_FILE = "report.html"

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1100px;color:#212529;padding:0 1em}
h1{font-size:1.6em}h2{border-bottom:1px solid #dee2e6;padding-bottom:.2em;margin-top:2em}h3{font-size:1.05em;margin-top:1.6em}
table{border-collapse:collapse;margin:.6em 0;font-size:.88em}th,td{border:1px solid #dee2e6;padding:.25em .55em;text-align:right}
th{background:#f1f3f5}td.l,th.l{text-align:left}.sig{font-weight:bold;color:#c92a2a}.muted{color:#868e96}
.fig{display:flex;flex-wrap:wrap;gap:1em;align-items:flex-start}img{max-width:100%;border:1px solid #e9ecef}
pre{background:#f8f9fa;padding:.8em;overflow-x:auto;font-size:.8em}
"""


def _fmt(v: Any) -> str:
    """Return a table cell: the vocabulary's number format, HTML-escaped ('' counts as missing)."""
    return html.escape(format_number(None if isinstance(v, str) and v == "" else v))


def _p(v: Optional[float]) -> str:
    if v is None:
        return NONE_TEXT
    text = "&lt;0.001" if v < 0.001 else f"{v:.3f}"
    return f'<span class="sig">{text}</span>' if v < 0.05 else text


def _table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    th = "".join(f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(header))
    body = "".join(
        "<tr>" + "".join(f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _median_iqr(d: dict[str, Any]) -> str:
    if not d or d.get("n", 0) == 0:
        return NONE_TEXT
    return f"{_fmt(d['median'])} [{_fmt(d['q1'])}, {_fmt(d['q3'])}]"


def _variable_section(v: dict[str, Any], rows: list[dict[str, Any]], groups: list[str]) -> str:
    name = v["variable"]
    samples = {g: finite_values((r for r in rows if str(r.get("status")) == g), name) for g in groups}
    unit = "mm" if name == CONTEXT_COLUMN else "attribution"
    img = png_data_uri(group_distribution_png(samples, name, unit))
    desc = _table(
        ["group", "n", "median [Q1, Q3]", "mean", "SD", "min", "max"],
        [[g, _fmt(d["n"]), _median_iqr(d), _fmt(d["mean"]), _fmt(d["sd"]), _fmt(d["min"]), _fmt(d["max"])]
         for g, d in v["groups"].items()],
    )  # fmt: skip
    kw = v["kruskal"]
    kw_text = (f"Kruskal&ndash;Wallis H = {_fmt(kw['H'])}, p = {_p(kw['p'])}, adjusted p = {_p(kw.get('p_adjusted'))}"
               if kw["p"] is not None else f"Kruskal&ndash;Wallis not run: {html.escape(kw['reason'] or '')}")  # fmt: skip
    pairs = _table(
        ["pair", "U", "rank-biserial r", "p", "adjusted p", "note"],
        [[f"{p['a']} vs {p['b']}", _fmt(p["U"]), _fmt(p["effect"]), _p(p["p"]), _p(p.get("p_adjusted")),
          html.escape(p["reason"] or "")] for p in v["pairwise"]],
    )  # fmt: skip
    return (f'<h3 id="{html.escape(name)}">{html.escape(name)}</h3><div class="fig"><img alt="{html.escape(name)}" '
            f'src="{img}"><div>{desc}<p>{kw_text}</p>{pairs}</div></div>')  # fmt: skip


def _mean_curves(store: CohortStore, subject_ids: list[str]) -> dict[str, dict[str, tuple]]:
    """Return {curve kind: {method: (x, mean, sd)}} of the deletion/insertion curves over every lesion."""
    acc: dict[str, dict[str, list[np.ndarray]]] = {"deletion": {}, "insertion": {}}
    fractions: dict[str, np.ndarray] = {}
    for sid in subject_ids:
        p = store.subject_dir(sid) / METRICS_FILE
        if not p.exists():
            continue
        for inst in json.loads(p.read_text()).get("instances", []):
            for method, curve in inst.get("details", {}).get("deletion_insertion", {}).items():
                if "fractions" not in curve:
                    continue
                x = np.asarray(curve["fractions"], dtype=np.float64)
                grid = np.linspace(0.0, 1.0, len(x))
                for kind in ("deletion", "insertion"):
                    y = np.asarray([np.nan if v is None else v for v in curve[kind]], dtype=np.float64)
                    if np.all(np.isfinite(y)):
                        acc[kind].setdefault(method, []).append(np.interp(grid, x, y))
                        fractions[method] = grid
    out: dict[str, dict[str, tuple]] = {}
    for kind, per in acc.items():
        out[kind] = {}
        for method, ys in per.items():
            if len({y.size for y in ys}) == 1:
                arr = np.stack(ys)
                out[kind][method] = (fractions[method], arr.mean(0), arr.std(0))
    return out


def _cost_rows(rows: list[dict[str, Any]]) -> list[list[str]]:
    metrics = sorted({k[: -len("_seconds")] for r in rows for k in r if k.endswith("_seconds") and k != "seconds"})
    out = []
    for m in metrics:
        sec = finite_values(rows, f"{m}_seconds")
        fwd = finite_values(rows, f"{m}_forward_passes")
        bwd = finite_values(rows, f"{m}_backward_passes")
        out.append([m, _fmt(sec.size), _fmt(sec.mean() if sec.size else None), _fmt(fwd.mean() if fwd.size else None),
                    _fmt(bwd.mean() if bwd.size else None)])  # fmt: skip
    base = finite_values(rows, "seconds")
    if base.size:
        out.insert(0, ["explanations + context probe", _fmt(base.size), _fmt(base.mean()), NONE_TEXT, NONE_TEXT])
    return out


def render_report(result: "CohortResult", stats: dict[str, Any], settings: CohortSettings, model: dict[str, Any]) -> str:
    """Return the HTML text of the cohort report."""
    from LesionXAILib import __version__

    rows = result.rows
    groups = list(stats["groups"])
    store = CohortStore(result.out)
    ids = [s.id for s in result.subjects]
    parts = [f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>LesionXAI cohort report</title>"
             f"<style>{CSS}</style></head><body><h1>LesionXAI cohort report</h1>"]  # fmt: skip
    now = datetime.datetime.now().isoformat(timespec="seconds")
    model_name = Path(model.get("path") or model.get("model", {}).get("source") or "in-memory model").name
    sha = (model.get("sha256") or model.get("weights_sha256") or "")[:12]
    n_state = {s: result.count(s) for s in ("finished", "skipped", "failed", "pending")}
    parts.append(
        f'<p class="muted">Generated {now} by LesionXAI {html.escape(__version__)} &middot; model {html.escape(model_name)} '
        f"(sha256 {html.escape(sha)}) &middot; output {html.escape(str(result.out))} &middot; fingerprint {result.fingerprint}</p>"
    )
    parts.append("<h2>Summary</h2>")
    parts.append(_table(
        ["subjects", "finished now", "finished earlier", "failed", "not run", "instances", *groups, "wall time this run (s)"],
        [[_fmt(len(ids)), _fmt(n_state["finished"]), _fmt(n_state["skipped"]), _fmt(n_state["failed"]),
          _fmt(n_state["pending"]), _fmt(len(rows)), *[_fmt(stats["groups"][g]) for g in groups], _fmt(result.seconds)]],
        left=0,
    ))  # fmt: skip
    if result.failures:
        parts.append("<h2>Failed subjects</h2><p>These subjects were skipped; fix the cause and run again to add them.</p>")
        parts.append(_table(["subject", "error"], [[html.escape(o.subject), html.escape(o.error or "")] for o in result.failures], left=2))

    parts.append("<h2>Group statistics</h2>")
    corr = "Holm" if stats["correction"] == "holm" else "Benjamini&ndash;Hochberg"
    parts.append(
        "<p>Per instance status (TP, FP, FN; &lsquo;predicted&rsquo; without ground truth): peak (largest value) and mean "
        "attribution inside the lesion, mean attribution in the perilesional ring, per map, and the context needed. "
        f"Kruskal&ndash;Wallis across groups; pairwise two-sided Mann&ndash;Whitney U with the rank-biserial effect size. "
        f"{corr} correction: pairwise p-values within each variable, Kruskal&ndash;Wallis p-values across variables. "
        "Bold red: adjusted p &lt; 0.05.</p>"
    )
    pair_names = [f"{p['a']}&ndash;{p['b']}" for p in (stats["variables"][0]["pairwise"] if stats["variables"] else [])]
    overview = []
    for v in stats["variables"]:
        overview.append([f'<a href="#{html.escape(v["variable"])}">{html.escape(v["variable"])}</a>',
                         *[_median_iqr(v["groups"][g]) for g in groups], _p(v["kruskal"].get("p_adjusted")),
                         *[_p(p.get("p_adjusted")) for p in v["pairwise"]]])  # fmt: skip
    parts.append(_table(["variable", *[f"{g} median [IQR]" for g in groups], "KW adj. p", *[f"{n} adj. p" for n in pair_names]], overview))
    for v in stats["variables"]:
        parts.append(_variable_section(v, rows, groups))

    parts.append("<h2>Context needed</h2><p>Smallest kept radius (mm) from which the lesion is detected at every larger radius. "
                 "Lesions needing more than the largest radius, or not detected even with full context, have no finite value.</p>")  # fmt: skip
    parts.append(_table(["group", "probed", "finite", "beyond largest radius", "not detected"],
                        [[g, *[_fmt(c[k]) for k in ("probed", "finite", "beyond_max_radius", "not_detected")]]
                         for g, c in stats["context"].items()]))  # fmt: skip

    if stats["metrics"]:
        parts.append("<h2>Explanation quality</h2><p>Median [IQR] per lesion. Lower is better for infidelity, "
                     "max-sensitivity, deletion AUC and randomisation Spearman (a map that explains the model changes when its "
                     "weights are randomised); higher is better for insertion AUC and activation precision (ap). "
                     "&lsquo;random&rsquo; is a random feature ranking (control).</p>")  # fmt: skip
        parts.append(_table(["metric", "all lesions", *groups],
                            [[html.escape(m["variable"]), _median_iqr(m["all"]), *[_median_iqr(m["groups"][g]) for g in groups]]
                             for m in stats["metrics"]]))  # fmt: skip
        curves = _mean_curves(store, ids)
        figs = [f'<img alt="{k} curves" src="{png_data_uri(curves_png(c, f"mean {k} curve (+-1 SD)", "normalised S"))}">'
                for k, c in curves.items() if c]  # fmt: skip
        if figs:
            parts.append('<div class="fig">' + "".join(figs) + "</div>")
    cost = _cost_rows(rows)
    if cost:
        parts.append("<h2>Cost per lesion</h2><p>Mean over lesions; passes are images through the network (forward) and "
                     "vector-Jacobian products (backward).</p>")  # fmt: skip
        parts.append(_table(["part", "lesions", "seconds", "forward passes", "backward passes"], cost))
    parts.append("<h2>Subjects</h2>")
    subject_rows = []
    by_id = {s.id: s for s in result.subjects}
    for sid in ids:
        o = result.outcomes[sid]
        subject_rows.append([subject_link_html(by_id[sid], result.out) or html.escape(sid), o.state, *[_fmt(o.counts.get(g, 0) if o.counts else None) for g in STATUSES],
                             _fmt(o.seconds), html.escape(o.error or "")])  # fmt: skip
    parts.append(_table(["subject", "state", *STATUSES, "seconds", "error"], subject_rows))
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps({"settings": settings.to_dict(), "model": model}, indent=2)) + "</pre>")
    parts.append("</body></html>\n")
    return "".join(parts)


def write_cohort_report(
    result: "CohortResult", settings: CohortSettings, model: dict[str, Any], correction: str = "holm"
) -> tuple[dict[str, Any], dict[str, Path]]:
    """Compute the group statistics, write statistics.json and report.html; return (statistics, paths)."""
    stats = group_statistics(result.rows, correction=correction)
    paths = {"statistics": write_json(result.out / STATISTICS_FILE, _strict(stats))}
    text = render_report(result, stats, settings, model)
    target = result.out / REPORT_FILE
    write_text(target, text)
    paths["report"] = target
    return stats, paths


def _strict(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
