"""The single-subject report: one self-contained HTML file (plus PNG/PDF panels) from a run directory.

``build_report(run_dir)`` reads what ``lesionxai segment`` / ``explain`` / ``probe`` / ``demo`` wrote
(missing parts are reported, not fatal) and writes ``report.html`` and ``figures/``.
"""

from LesionXAILib.report.build import Report, ReportSettings, build_report
from LesionXAILib.report.data import RunData, load_run

__all__ = ["Report", "ReportSettings", "RunData", "build_report", "load_run"]
