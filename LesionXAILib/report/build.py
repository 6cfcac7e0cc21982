"""build_report: one self-contained HTML report (plus PNG/PDF panels) from a run directory.

Two passes keep memory bounded and make the colour scales comparable: first every lesion's three
views are sampled from its maps (full volumes read one lesion at a time, then released), then the
scales shared by all lesions are fixed and the figures drawn.

Over 400 lines on purpose: the two passes share one per-lesion sample record and one scale table;
the drawing itself lives in report/lesion_figure.py, report/panels.py and report/subject_figures.py.
"""

from __future__ import annotations

import datetime
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from LesionXAILib.errors import ParameterError
from LesionXAILib.atomic_write import check_png, commit, discard, temporary_path, write_bytes, write_text
from LesionXAILib.progress import (
    CancelToken,
    ProgressCallback,
    ProgressReporter,
    as_reporter,
)
from LesionXAILib.report import html as H
from LesionXAILib.report.counterfactual_panel import counterfactual_section
from LesionXAILib.report.data import LesionData, RunData, load_run
from LesionXAILib.report.lesion_figure import lesion_figure
from LesionXAILib.report.panels import (
    DEFAULT_HALF_WIDTH_MM,
    SCALE_PERCENTILE,
    LesionSlices,
    SharedScales,
    flair_window,
    lesion_slices,
    shared_scales,
)
from LesionXAILib.report.slices import ORIENTATION_NOTE
from LesionXAILib.report.style import RenderedFigure, downscale, render
from LesionXAILib.report.subject_figures import overview_figure, summary_figure
from LesionXAILib.vocabulary import NONE_TEXT, format_cell, map_key, map_title, method_title, sequence_title

REPORT_NAME = "report.html"
FIGURES_DIR = "figures"
EXPORT_FORMATS = ("png", "pdf", "both", "none")


@dataclass(frozen=True)
class ReportSettings:
    """How the report looks: view half width (mm), shared-scale percentile, resolutions, export format."""

    half_width_mm: float = DEFAULT_HALF_WIDTH_MM
    scale_percentile: float = SCALE_PERCENTILE
    html_dpi: float = 100.0
    export_dpi: float = 150.0
    export: str = "png"
    title: Optional[str] = None

    def __post_init__(self) -> None:
        if self.export not in EXPORT_FORMATS:
            raise ParameterError(f"report export must be one of {EXPORT_FORMATS}, got '{self.export}'")
        if not 4.0 <= self.half_width_mm <= 200.0:
            raise ParameterError(f"report view half width must be in 4..200 mm, got {self.half_width_mm}")
        if not 50.0 <= self.scale_percentile <= 100.0:
            raise ParameterError(f"shared-scale percentile must be in 50..100, got {self.scale_percentile}")
        if self.html_dpi <= 0 or self.export_dpi <= 0:
            raise ParameterError("report resolutions (dpi) must be > 0")


@dataclass
class Report:
    """What build_report wrote: the HTML file, exported figures, lesions shown, notes and time taken."""

    html: Path
    figures: list[Path] = field(default_factory=list)
    lesions: int = 0
    notes: list[str] = field(default_factory=list)
    scales: Optional[SharedScales] = None
    seconds: float = 0.0


def build_report(
    run_dir: str | os.PathLike,
    out: Optional[str | os.PathLike] = None,
    flair: Optional[str | os.PathLike] = None,
    t1: Optional[str | os.PathLike] = None,
    settings: ReportSettings = ReportSettings(),
    progress: Optional[ProgressCallback | ProgressReporter] = None,
    cancel: Optional[CancelToken] = None,
) -> Report:
    """Write ``out`` (default ``<run_dir>/report.html``) and the exported panels; return what was written."""
    start = time.perf_counter()
    reporter = as_reporter(progress, cancel)
    reporter(0.0, "reading the run")
    run = load_run(run_dir, None if flair is None else str(flair), None if t1 is None else str(t1))
    html_path = Path(out) if out is not None else run.run_dir / REPORT_NAME
    for p in (run.flair_path, run.t1_path):
        if p is not None and html_path.resolve() == p.resolve():
            raise ParameterError(f"refusing to overwrite input file '{p}' with the report")
    figures_dir = html_path.parent / FIGURES_DIR
    window = flair_window(run.flair())
    method, cam, sequences = run.gradient_method, run.cam_method, run.sequences
    keys = [map_key(method, s) for s in sequences] + ([cam] if cam else [])

    stacks: list[LesionSlices] = []
    sample_part = reporter.sub(0.02, 0.4)
    for n, lesion in enumerate(run.lesions):
        volumes = {k: v for k in keys if (v := run.load_map(lesion, k)) is not None}
        stacks.append(lesion_slices(run, lesion, volumes, settings.half_width_mm))
        del volumes
        sample_part((n + 1) / max(len(run.lesions), 1), f"lesion {lesion.id}: slices")
    scales = shared_scales(stacks, [k for k in keys if k != cam], window, settings.scale_percentile)

    exports: list[Path] = []
    pdf = _PdfExport(figures_dir / "report_panels.pdf") if settings.export in ("pdf", "both") else None
    want_png = settings.export in ("png", "both")
    sections: dict[str, RenderedFigure] = {}
    for name, make in (("overview", lambda: overview_figure(run, window)), ("summary", lambda: summary_figure(run))):
        fig, axes = make()
        sections[name] = _render(fig, axes, figures_dir / f"{name}.png", settings, want_png, pdf, exports)
    reporter(0.45, "subject figures")

    panels: list[tuple[LesionData, RenderedFigure]] = []
    ring = _ring_mm(run)
    draw_part = reporter.sub(0.45, 0.97)
    for n, stack in enumerate(stacks):
        fig, axes = lesion_figure(stack, scales, method, sequences, cam, ring)
        path = figures_dir / f"lesion_{stack.lesion.id:03d}.png"
        panels.append((stack.lesion, _render(fig, axes, path, settings, want_png, pdf, exports)))
        draw_part((n + 1) / max(len(stacks), 1), f"lesion {stack.lesion.id}: panel")
    if pdf is not None:
        exports.append(pdf.close())

    document = _document(run, settings, scales, sections, panels, method, sequences, cam, ring, exports, html_path)
    write_text(html_path, document)
    reporter(1.0, f"report: {len(run.lesions)} lesions")
    return Report(html_path, exports, len(run.lesions), list(run.notes), scales, time.perf_counter() - start)


class _PdfExport:
    """Multi-page vector PDF of the figures, written under a temporary name until closed."""

    def __init__(self, path: Path) -> None:
        from matplotlib.backends.backend_pdf import PdfPages

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.tmp = temporary_path(path)
        self.pages = PdfPages(str(self.tmp))

    def add(self, fig) -> None:
        self.pages.savefig(fig)

    def close(self) -> Path:
        try:
            self.pages.close()
        except BaseException:
            discard(self.tmp)
            raise
        return commit(self.tmp, self.path)


def _render(fig, axes, path: Path, settings: ReportSettings, png: bool, pdf: Optional[_PdfExport], exports: list) -> RenderedFigure:
    """Return the HTML rendering of ``fig``; write its PNG export / PDF page as asked (drawn once for both)."""
    if pdf is not None:
        pdf.add(fig)
    if not png:
        return render(fig, settings.html_dpi, axes)
    full = render(fig, settings.export_dpi, axes)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes(path, full.png, check_png)
    exports.append(path)
    return downscale(full, settings.html_dpi / settings.export_dpi)


def _ring_mm(run: RunData) -> Optional[tuple[float, float]]:
    ring = ((run.explanations or {}).get("settings") or {}).get("ring_mm")
    return (float(ring[0]), float(ring[1])) if ring else None


def axis_directions(run: RunData) -> str:
    """Return where each voxel index points in patient space, e.g. 'i → L, j → P, k → S'."""
    m = run.geometry.ijk_to_ras()[:3, :3]
    out = []
    for axis, name in enumerate("ijk"):
        col = m[:, axis]
        a = int(np.argmax(np.abs(col)))
        letter = ("R", "A", "S")[a] if col[a] > 0 else ("L", "P", "I")[a]
        oblique = "" if abs(col[a]) / np.linalg.norm(col) > 0.999 else " (oblique)"
        out.append(f"{name} → {letter}{oblique}")
    return ", ".join(out)


def _median_context(run: RunData) -> Optional[float]:
    values = sorted(v for lesion in run.lesions if (v := lesion.context_needed_mm) is not None and math.isfinite(v))
    return float(np.median(values)) if values else None


def subject_cards(run: RunData) -> list[tuple[str, str]]:
    """Return the headline numbers: lesions, TP/FP/FN, lesion F1, Dice, median context needed."""
    predicted = sum(1 for lesion in run.lesions if lesion.row.get("source", "prediction") == "prediction")
    items = [("lesions found", str(predicted))]
    m = run.metrics
    if m:
        items += [("TP", str(m["tp"])), ("FP", str(m["fp"])), ("FN", str(m["fn"])),
                  ("lesion F1", H.fmt(m.get("f1"))), ("voxel Dice", H.fmt(m.get("dice")))]  # fmt: skip
    median = _median_context(run)
    items.append(("median context needed", NONE_TEXT if median is None else f"{median:g} mm"))
    explained = sum(1 for lesion in run.lesions if lesion.explanation is not None)
    items.append(("lesions explained", f"{explained}/{len(run.lesions)}"))
    return items


def _settings_items(run: RunData, method, sequences, cam) -> list[tuple[str, str]]:
    s = run.summary
    g = run.geometry
    model = s.get("model") or {}
    items = [
        ("FLAIR", H.esc(run.flair_path or (s.get("inputs") or {}).get("flair") or NONE_TEXT)),
        ("MPRAGE", H.esc(run.t1_path or (s.get("inputs") or {}).get("t1") or NONE_TEXT)),
        ("grid", H.esc(f"{g.size[0]} × {g.size[1]} × {g.size[2]} voxels (i, j, k), spacing "
                       f"{' × '.join(f'{v:g}' for v in g.spacing)} mm; {axis_directions(run)}")),  # fmt: skip
        ("model", H.esc(_model_text(model))),
        ("threshold / min size", H.esc(f"{s.get('threshold')} / {s.get('min_size_voxels')} voxels")),
    ]
    if run.demo:
        items.insert(0, ("subject", H.esc(f"synthetic phantom, seed {run.demo.get('seed')} ({run.demo.get('phantom', '')})")))
    es = (run.explanations or {}).get("settings")
    if es:
        items.append(("explanations", H.esc(
            f"{', '.join(method_title(m) for m in es.get('methods', []))}; {es.get('aggregation')} aggregation; "
            f"{es.get('samples')} samples, noise {es.get('noise_level')} × FLAIR range, seed {es.get('seed')}; "
            f"crop margin {es.get('roi_margin_mm')} mm"
            + (" around each lesion voxel" if es.get("aggregation") == "max" else " around the lesion")
            + (f" ({run.explanations['margin_source']})" if run.explanations.get("margin_source") else "")
        )))  # fmt: skip
        fids = [r.get("fidelity") for r in run.explanations.get("instances", [])]
        if fids:
            items.append(("fidelity", H.esc(fidelity_summary(fids))))
    ps = (run.probe or {}).get("settings")
    if ps:
        radii = ps.get("radii_mm", [])
        items.append(("context probe", H.esc(
            f"radii {radii[0]:g}–{radii[-1]:g} mm ({len(radii)} steps), fill '{ps.get('fill')}'" if radii else NONE_TEXT
        )))  # fmt: skip
    items.append(("panels", H.esc(
        f"{method_title(method) if method else 'no attribution map'} per sequence ({', '.join(sequence_title(q) for q in sequences)}), "
        f"{method_title(cam) if cam else 'no CAM'}"
    )))  # fmt: skip
    return items


def fidelity_summary(fidelities: Sequence[Optional[dict]]) -> str:
    """Return one line over a run's lesions: how each crop's fidelity was obtained, worst figures, flagged lesions."""
    known = [f for f in fidelities if f]
    counts: dict[str, int] = {}
    for f in known:
        counts[f.get("obtained", "?")] = counts.get(f.get("obtained", "?"), 0) + 1
    parts = [f"{n} {k}" for k, n in sorted(counts.items())]
    captured = [f["captured"] for f in known if f.get("captured") is not None]
    rs = [f["pearson_r"] for f in known if f.get("pearson_r") is not None]
    if captured:
        parts.append(f"worst captured {min(captured):.4f}")
    if rs:
        parts.append(f"worst r {min(rs):.4f}")
    flagged = len(fidelities) - len([f for f in known if not f.get("flag")])
    parts.append(f"{flagged} flagged" if flagged else "none flagged")
    return "; ".join(parts) + " (rule: captured ≥ 0.98 and r ≥ 0.995 of the whole-volume attribution)"


def _model_text(model: dict) -> str:
    cfg = model.get("config") or {}
    name = cfg.get("name") or model.get("name") or "unnamed network"
    source = model.get("source")
    params = model.get("parameters")
    return f"{name}" + (f", {params:,} parameters" if params else "") + (f" — {source}" if source else "")


def _max_radius(run: RunData) -> Optional[float]:
    radii = ((run.probe or {}).get("settings") or {}).get("radii_mm") or []
    return float(max(radii)) if radii else None


def instance_rows(run: RunData, method: Optional[str]) -> tuple[list[str], list[list[str]], list[str]]:
    """Return (headers, rows, row attributes) of the instance table."""
    key = map_key(method, "flair") if method else None
    headers = ["lesion", "status", "voxels", "volume (mm³)", "centroid R, A, S (mm)", "mean prob.", "max prob."]
    if method:
        label = method_title(method)
        headers += [f"{label} FLAIR peak inside", f"{label} FLAIR ring mean", "FLAIR share"]
    headers += ["context needed (mm)", "context probe"]
    rows, attrs = [], []
    max_radius = _max_radius(run)
    for lesion in run.lesions:
        r = lesion.row
        c = lesion.centroid_ras
        cells = [
            f'<a href="#lesion-{lesion.id}">{lesion.id}</a>',
            H.status_badge(lesion.status),
            H.fmt(int(r["voxels"])),
            H.esc(format_cell("volume_mm3", r.get("volume_mm3", 0.0))),
            H.esc(f"{c[0]:.1f}, {c[1]:.1f}, {c[2]:.1f}"),
            H.esc(format_cell("mean_probability", r.get("mean_probability"))),
            H.esc(format_cell("max_probability", r.get("max_probability"))),
        ]
        if method:
            cells += [H.fmt(lesion.statistic(key, "inside_peak")), H.fmt(lesion.statistic(key, "ring_mean")),
                      H.esc(format_cell("flair_share", lesion.flair_share(method)))]  # fmt: skip
        needed = H.esc(format_cell("context_needed_mm", lesion.context_needed_mm, max_radius))
        cells += [needed, H.esc(lesion.curve.get("description", "")) if lesion.curve else "not probed"]
        rows.append(cells)
        attrs.append(f'data-lesion-id="{lesion.id}" data-status="{H.esc(lesion.status)}"')
    return headers, rows, attrs


def statistics_table(lesion: LesionData, method: Optional[str], sequences: Sequence[str], cam: Optional[str]) -> str:
    """Return the per-map statistics of one lesion (inside / ring / outside) as an HTML table."""
    if lesion.explanation is None:
        return ""
    keys = [(map_key(method, s), map_title(map_key(method, s))) for s in sequences] if method else []
    if cam:
        keys.append((cam, method_title(cam)))
    names = [("inside_sum", "inside sum"), ("inside_mean", "inside mean"), ("inside_peak", "inside peak"),
             ("ring_sum", "ring sum"), ("ring_mean", "ring mean"), ("ring_trough", "ring trough"),
             ("outside_sum", "outside sum")]  # fmt: skip
    rows = [[H.esc(label)] + [H.fmt(lesion.statistic(key, n)) for n, _ in names] for key, label in keys]
    share = lesion.flair_share(method) if method else None
    caption = f"<p>FLAIR share of total |{H.esc(method_title(method))}|: <b>{H.fmt(share)}</b></p>" if method else ""
    caption += fidelity_line(lesion.explanation.get("fidelity"))
    return H.table(["map"] + [h for _, h in names], rows, text_columns=(0,), element_id=f"stats-{lesion.id}") + caption


def fidelity_text(fidelity: Optional[dict]) -> str:
    """Return one line saying how much of the whole-volume attribution a lesion's crop holds (and if it is flagged)."""
    if not fidelity:
        return "fidelity not recorded (run made before the fidelity guard)"
    obtained = fidelity.get("obtained", "?")
    if obtained == "whole-volume":
        text = "whole volume (exact)"
    else:
        figures = [f"{name} {fidelity[key]:.4f}" for key, name in (("captured", "captured"), ("pearson_r", "r"), ("cam_captured", "CAM captured"))
                   if fidelity.get(key) is not None]  # fmt: skip
        text = f"crop margin {fidelity.get('margin_mm')} mm, {obtained}" + (f" ({fidelity.get('measured')} vs {fidelity.get('reference')})"
                                                                            if fidelity.get("reference") else "")  # fmt: skip
        text += (": " + ", ".join(figures)) if figures else ""
    if fidelity.get("note"):
        text += f"; {fidelity['note']}"
    if fidelity.get("flag"):
        text += f" — FLAGGED: {fidelity['flag']}"
    return text


def fidelity_line(fidelity: Optional[dict]) -> str:
    """Return the fidelity line of a lesion panel as HTML (flagged lines are marked as a note)."""
    text = H.esc(fidelity_text(fidelity))
    flagged = not fidelity or bool(fidelity.get("flag"))
    return f'<p class="{"note" if flagged else "fidelity"}" data-fidelity="{"flagged" if flagged else "ok"}">Fidelity: {text}</p>'


def _document(run, settings, scales, sections, panels, method, sequences, cam, ring, exports, html_path) -> str:
    default = f"phantom seed {run.demo.get('seed')}" if run.demo else run.run_dir.resolve().name
    title = settings.title or f"LesionXAI report — {default}"
    now = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    version = run.summary.get("lesionxai_version", "")
    body = [f"<h1>{H.esc(title)}</h1>",
            f'<div class="subtitle">Instance-level explanations of the lesion segmentation, one lesion at a time. '
            f"Generated {H.esc(now)} by LesionXAI {H.esc(version)} from <code>{H.esc(run.run_dir)}</code>.</div>"]  # fmt: skip
    body.append(H.notes(run.notes))
    body.append('<section id="subject-summary"><h2>Subject summary</h2>')
    body.append(H.cards(subject_cards(run)))
    body.append(H.definition_list(_settings_items(run, method, sequences, cam)))
    body.append("</section>")
    body.append('<section id="overview"><h2>Lesions in the brain</h2><figure>')
    body.append(H.image(sections["overview"], "axial FLAIR slices with every lesion instance outlined", "overview-plot"))
    body.append("<figcaption>Axial FLAIR slices through lesion centroids; outlines coloured by status "
                "(TP green, FP orange, FN purple), numbers are instance ids. " + H.esc(ORIENTATION_NOTE) + "</figcaption></figure></section>")  # fmt: skip
    body.append('<section id="summary"><h2>Across this subject’s lesions</h2><figure>')
    body.append(H.image(sections["summary"], "per-lesion quantities grouped by TP, FP and FN", "summary-plot"))
    body.append("<figcaption>One dot per lesion, black bar = median. The anchor study found FLAIR saliency positive "
                "inside lesions and negative around them, peak saliency differing between TP, FP and FN groups, and "
                "about 7 mm of context needed; a single subject only hints at such group differences. "
                "Triangles: more context than the largest probed radius.</figcaption></figure></section>")  # fmt: skip
    headers, rows, attrs = instance_rows(run, method)
    body.append('<section id="instances"><h2>Instance table</h2>')
    body.append(H.table(headers, rows, "instance-table", attrs, text_columns=(4, len(headers) - 1)))
    body.append("</section>")
    from LesionXAILib.report.similar_panel import similar_section  # issue 21: "" without similar_lesions.json

    body.append(similar_section(run.run_dir, run.summary.get("segmentation_id")))
    body.append('<section id="lesions"><h2>Lesion panels</h2>')
    body.append(_reading_guide(scales, method, cam, ring))
    for lesion, fig in panels:
        body.append(
            f'<section class="lesion-panel" id="lesion-{lesion.id}" data-lesion-id="{lesion.id}" '
            f'data-status="{H.esc(lesion.status)}" data-centre-ras="{" ".join(f"{v:.4f}" for v in lesion.centroid_ras)}">'
        )
        body.append(f"<h3>Lesion {lesion.id} — {H.status_badge(lesion.status)}</h3>")
        body.append(H.notes(lesion.notes))
        body.append(H.image(fig, f"lesion {lesion.id} panel: slices, attribution maps, context curve, statistics",
                            f"panel-{lesion.id}", "panel-image"))  # fmt: skip
        body.append(statistics_table(lesion, method, sequences, cam))
        body.append("</section>")
    body.append("</section>")
    body.append(counterfactual_section(run.run_dir))  # empty unless the run holds counterfactuals.json
    from LesionXAILib.report.atoms_panel import atoms_section  # issue 22: "" without atoms.json/atoms.npz

    body.append(atoms_section(run.run_dir, settings.html_dpi))
    if exports:
        rel = sorted({os.path.relpath(p, html_path.parent) for p in exports})
        body.append(f"<footer>Figures for papers: {H.esc(', '.join(rel[:6]))}{' …' if len(rel) > 6 else ''} "
                    f"({len(rel)} files, {settings.export_dpi:g} dpi PNG / vector PDF).</footer>")  # fmt: skip
    return H.page(title, "\n".join(body))


def _reading_guide(scales: SharedScales, method, cam, ring) -> str:
    parts = [ORIENTATION_NOTE,
             "Each panel shows axial, coronal and sagittal slices through the lesion's centroid, resampled on square "
             "pixels in patient space (physical aspect ratio, any voxel spacing). Cyan/black line: the lesion outline."]  # fmt: skip
    if method and scales.gradient:
        parts.append(
            f"{method_title(method)}: signed attribution (red = evidence for the lesion, blue = against), colour scale "
            f"±{H.fmt(scales.gradient)} shared by every lesion and both sequences ({scales.percentile:g}th percentile "
            "of |value| over all shown slices; brighter values saturate)."
        )
    if cam:
        parts.append(
            f"{method_title(cam)}: 0 up to each lesion's own {scales.percentile:g}th percentile (CAM magnitudes follow the "
            "lesion-sum target, so they are not comparable across lesions)."
        )
    if ring:
        parts.append(f"Statistics regions: inside the lesion, a ring {ring[0]:g}–{ring[1]:g} mm around it, and beyond.")
    parts.append("Context curve: mean probability inside the lesion (red) and Dice (blue) when only the tissue within r mm "
                 "of the lesion is kept; dashed line = context needed (smallest r from which it is detected at every larger r).")  # fmt: skip
    return "<p>" + "</p><p>".join(H.esc(p) for p in parts) + "</p>"

